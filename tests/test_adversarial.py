"""The decoder's second stage (soundkit/adversarial.py): what it changes, what it keeps, and that it keeps
nothing worse than the first stage's decoder, however the discriminator behaves."""

import csv
import os

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from conftest import TINY_MODEL, tiny_project
from soundkit.adversarial import (MAX_GAIN, MAX_MSE_GROWTH, MAX_SHIFT_FRAMES, MAX_TILT, augment, fine_tune_decoder,
                                  texture_gap)

import keras  # after soundkit, whose autoencoder import settles the backend
import tensorflow as tf
from autoencoder import VAE


def test_augment_moves_each_pair_alike_by_one_shift_and_a_bounded_level_change():
    real = np.random.default_rng(0).random((4, 16, 40, 1)).astype("float32")
    moved_real, moved_fake = (np.asarray(x) for x in augment(real, real.copy(), keras.random.SeedGenerator(3)))
    np.testing.assert_array_equal(moved_real, moved_fake)
    assert not np.allclose(moved_real, real)
    inner = slice(MAX_SHIFT_FRAMES, 40 - MAX_SHIFT_FRAMES)   # frames every shift keeps
    fits = []
    for shift in range(-MAX_SHIFT_FRAMES, MAX_SHIFT_FRAMES + 1):
        offset = moved_real[:, :, inner] - np.roll(real, shift, axis=2)[:, :, inner]
        fits.append((np.abs(offset - offset.mean(axis=2, keepdims=True)).max(), shift, offset))
    spread, shift, offset = min(fits, key=lambda fit: fit[0])
    assert spread < 1e-5      # one shift for the whole batch, then a level per clip and bin
    assert np.abs(offset).max() <= MAX_GAIN + MAX_TILT / 2 + 1e-5


def test_the_ripple_penalty_sees_a_ripple_of_2_or_4_bins_and_not_grain():
    from soundkit.adversarial import periodic_excess, periodic_waves

    waves = periodic_waves(128)
    rng = np.random.default_rng(0)
    grain = rng.random((4, 128, 20, 1)).astype("float32") * 0.2          # white: no period stands out
    bins = np.arange(128)[None, :, None, None]
    excess = {name: float(periodic_excess(x.astype("float32"), waves)) for name, x in {
        "grain": grain, "2 bins": grain + 0.02 * np.cos(np.pi * bins), "4 bins": grain + 0.02 * np.sin(np.pi * bins / 2),
        "8 bins": grain + 0.02 * np.cos(np.pi * bins / 4)}.items()}
    assert excess["grain"] < 1e-3
    assert excess["2 bins"] > 0.01 and excess["4 bins"] > 0.005     # a ripple of amplitude 0.02 (1.6 dB at 80 dB)
    assert excess["8 bins"] < 1e-3                                    # other periods are the texture's business
    assert excess["2 bins"] > 2 * float(periodic_excess(grain + 0.01 * np.cos(np.pi * bins).astype("float32"), waves))
    # against real clips with the same ripple, nothing is penalised; against plain grain, all of it
    rippled = (grain + 0.02 * np.cos(np.pi * bins)).astype("float32")
    assert float(periodic_excess(rippled, waves, reference=rippled)) == 0.0
    assert float(periodic_excess(rippled, waves, reference=grain)) == pytest.approx(
        excess["2 bins"] - excess["grain"], rel=0.05, abs=1e-4)


def test_texture_gap_is_zero_for_the_same_texture_and_grows_with_blur():
    spectrograms = np.random.default_rng(1).random((3, 64, 50))
    assert texture_gap(spectrograms, spectrograms) == 0.0
    gaps = [texture_gap(spectrograms, uniform_filter(spectrograms, (1, size, size))) for size in (2, 3, 5)]
    assert 0.3 < gaps[0] < gaps[1] < gaps[2]


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
    """A tiny model trained by the first stage only, with its data."""
    root = tmp_path_factory.mktemp("first_stage")
    tiny_project(root, 12, "--learning_rate=0.005")
    spectrograms = np.load(root / "spectrograms" / "spectrograms.npy")[..., np.newaxis].astype("float32")
    return root, spectrograms


def run_second_stage(root, spectrograms, tmp_path, **settings):
    vae = VAE.load(root / "model" / "model.keras")
    saved = tmp_path / "model.keras"
    vae.save(saved)
    before = saved.stat().st_mtime_ns
    keras.utils.set_random_seed(0)
    batches = tf.data.Dataset.from_tensor_slices(spectrograms[:16]).batch(8)
    check, rows = fine_tune_decoder(vae, batches, (spectrograms[16:], None), save=lambda model: model.save(saved),
                                    verbose=0, seed=0, **settings)
    return vae, check, rows, saved, before


def test_the_second_stage_changes_only_the_decoder_and_saves_each_better_epoch(first_stage, tmp_path):
    root, spectrograms = first_stage
    start = VAE.load(root / "model" / "model.keras")
    vae, check, rows, saved, before = run_second_stage(root, spectrograms, tmp_path, epochs=6, patience=6)
    assert len(rows) == 6 and all(np.isfinite(row["discriminator_loss"]) for row in rows)
    for name in ("texture_gap", "mse", "adversarial_loss", "feature_loss", "real_logit", "fake_logit"):
        assert all(np.isfinite(row[name]) for row in rows), name
    for old, new in zip(start.encoder.get_weights(), vae.encoder.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(old, new) for old, new in zip(start.decoder.get_weights(), vae.decoder.get_weights()))
    kept = [row for row in rows if row["kept"]]
    best = min([check.start["texture_gap"], *(row["texture_gap"] for row in rows if check.eligible(row))])
    assert check.best == pytest.approx(best)
    if kept:   # the file holds the last kept epoch's decoder: it measures as that epoch did
        assert kept[-1]["epoch"] == check.best_epoch
        check.vae = VAE.load(saved)
        assert check.measure()["texture_gap"] == pytest.approx(check.best, rel=1e-4)
    else:
        assert saved.stat().st_mtime_ns == before


def test_a_second_stage_that_blows_up_keeps_nothing_worse_than_the_first(first_stage, tmp_path):
    """A GAN on a few clips can collapse to noise: here it is forced to, and no collapsed epoch is kept."""
    root, spectrograms = first_stage
    vae, check, rows, saved, before = run_second_stage(root, spectrograms, tmp_path, epochs=4, patience=4,
                                                       weight=1e5, learning_rate=0.05)
    collapsed = [row for row in rows if row["mse"] > MAX_MSE_GROWTH * check.start["mse"]]
    assert collapsed, "the forced blow-up did not happen: this test no longer tests the guard"
    assert not any(row["kept"] for row in collapsed)
    kept = VAE.load(saved)
    check.vae = kept
    assert check.measure()["mse"] <= MAX_MSE_GROWTH * check.start["mse"] + 1e-9


def test_the_check_refuses_epochs_whose_decoded_clips_lose_their_class_or_drift(first_stage):
    """A texture that changes what a sound is (a spoken digit heard as another) is not kept: decoded clips,
    encoded again, must keep their class (labels) or stay near their latent means (no labels)."""
    from soundkit.adversarial import MAX_CLASS_LOSS, MAX_DRIFT_GROWTH, RIPPLES, TextureCheck

    root, spectrograms = first_stage
    vae = VAE.load(root / "model" / "model.keras")
    heard = np.argmax(vae.classify(spectrograms), axis=1)
    assert len(set(heard.tolist())) >= 3, "the tiny model's classifier tells too few classes apart to test this"
    check = TextureCheck(vae, spectrograms, heard.reshape(-1, 1), save=lambda model: None)
    assert check.by_class
    kept, drift = check.content(spectrograms)            # decoded exactly as given: all kept, no drift
    assert kept == 1.0 and drift == pytest.approx(0.0, abs=1e-6)
    others = np.roll(spectrograms, 4, axis=0)             # each clip replaced by one of the next class folder's
    kept, drift = check.content(others)
    assert kept == pytest.approx(np.mean(np.roll(heard, 4) == heard)) and kept < 0.7
    assert drift > 1.0                                    # other clips: further off than the clips are spread
    start = check.start
    assert check.eligible(dict(start))
    assert not check.eligible({**start, "class_kept": start["class_kept"] - MAX_CLASS_LOSS - 0.01})
    assert check.eligible({**start, "latent_drift": 100.0})    # labels known: the class decides
    check.start = {**start, **{name: 1.0 for name in RIPPLES if name.startswith("attack_")}}   # (no attack head:
    assert {"ripple_8", "attack_ripple_8"} <= set(RIPPLES)                                    # NaN here)
    for ripple in RIPPLES:                                     # a comb, over all frames or in the attack only
        assert not check.eligible({**check.start, ripple: 1.6 * max(check.start[ripple], 1.0)})
    check.start = start
    blind = TextureCheck(vae, spectrograms, None, save=lambda model: None)
    assert not blind.by_class and np.isnan(blind.start["class_kept"])
    assert blind.eligible({**blind.start, "latent_drift": MAX_DRIFT_GROWTH * blind.start["latent_drift"]})
    assert not blind.eligible({**blind.start, "latent_drift": MAX_DRIFT_GROWTH * blind.start["latent_drift"] * 1.01})


def test_the_watched_clips_spread_over_every_class():
    from soundkit.adversarial import watched_clips

    by_class = np.repeat(np.arange(10), 30)                  # 300 clips sorted class by class, as FSDD's digits
    shuffled = np.random.default_rng(0).permutation(300)
    watched = watched_clips(shuffled, 64)
    assert len(watched) == 64 and len(set(watched.tolist())) == 64 and watched[0] == 0 and watched[-1] == 299
    assert np.bincount(by_class[watched], minlength=10).min() >= 6
    np.testing.assert_array_equal(watched_clips([5, 1, 3], 64), [1, 3, 5])   # fewer than 64: all of them


def test_train_runs_the_second_stage_on_the_first_stages_encoder(tmp_path):
    """Same seed, with and without the second stage: the same encoder; its rows in history_adversarial.csv.
    With the attack head, as train.py's defaults have it."""
    plain = tmp_path / "plain"
    tiny_project(plain, 6, "--learning_rate=0.005", "--attack_frames=4")
    sharpened = tmp_path / "sharpened"
    tiny_project(sharpened, 6, "--learning_rate=0.005", "--attack_frames=4", "--adversarial_epochs=3",
                 "--adversarial_patience=3")
    assert TINY_MODEL.count("--adversarial_epochs=0") == TINY_MODEL.count("--attack_frames=0") == 1  # (later wins)
    assert not (plain / "model" / "history_adversarial.csv").exists()
    with open(sharpened / "model" / "history_adversarial.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert {"texture_gap", "mse", "kept", "discriminator_loss", "reconstruction_loss"} <= set(rows[0])
    a, b = (VAE.load(folder / "model" / "model.keras") for folder in (plain, sharpened))
    for old, new in zip(a.encoder.get_weights(), b.encoder.get_weights()):
        np.testing.assert_array_equal(old, new)
    decoders_differ = any(not np.array_equal(x, y) for x, y in zip(a.decoder.get_weights(), b.decoder.get_weights()))
    assert decoders_differ == any(row["kept"] == "True" for row in rows)
    assert os.path.exists(sharpened / "model" / "latent_prior.json")
    assert a.attack_frames == b.attack_frames == 4 and a.decoder.get_layer("attack_output").get_weights()[0].any()
    assert {"attack_ripple_2", "attack_ripple_4", "ripple_8", "attack_ripple_8", "class_kept", "latent_drift"} <= set(rows[0])
    assert all(np.isfinite(float(row["attack_ripple_2"])) for row in rows)   # the attack frames are loud enough


def test_a_negative_ripple_weight_is_refused_before_anything_is_read(tmp_path):
    import train
    from soundkit.errors import PipelineError

    with pytest.raises(PipelineError, match="ADVERSARIAL_RIPPLE_WEIGHT must be 0 \\(off\\) or more, got -1.0"):
        train.main([f"--spectrograms_dir={tmp_path / 'none'}", f"--model_dir={tmp_path / 'model'}",
                    "--adversarial_ripple_weight=-1"])
    assert not (tmp_path / "model").exists()
