"""End to end on a tiny synthesized drum set: preprocess -> train -> generate, plus refusals."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundkit import folders
import generate
import preprocess
import train
from soundkit import training
from soundkit.errors import PipelineError
from soundkit.fileio import file_sha256
from conftest import (DURATION, FRAME_SIZE, HOP_LENGTH, SAMPLE_RATE, TINY_MODEL, preprocess_args,
                      tiny_project)
from data.synthesize_drums import write_demo_drums

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def trained(labelled_project):
    """The session's tiny model trained on 20 drum clips (5 classes x 4): (root, history)."""
    return labelled_project


def run_generate(root, output, *extra):
    return generate.main([f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                          f"--output_dir={output}", "--num_generated=3", "--num_reconstructed=2",
                          "--griffin_lim_iterations=8", *extra])


@pytest.mark.slow
def test_training_writes_everything_generation_needs(trained):
    root, history = trained
    model_dir = root / "model"
    assert {"model.keras", "params.json", "training.json", "history.csv", "latent_prior.json"} <= {
        p.name for p in model_dir.iterdir()}
    assert not (model_dir / "checkpoint").exists()  # finished runs leave nothing to resume
    params = json.loads((model_dir / "params.json").read_text())
    assert (params["sample_rate"], params["hop_length"], params["frame_size"]) == (SAMPLE_RATE, HOP_LENGTH, FRAME_SIZE)
    rows = (model_dir / "history.csv").read_text().splitlines()
    # Labelled drum folders: the latent classifier's label loss is trained and logged too.
    assert rows[0].split(",")[:5] == ["epoch", "kl_loss", "label_loss", "loss", "reconstruction_loss"]
    assert len(rows) == 1 + 8 and [entry["epoch"] for entry in history] == list(range(1, 9))
    assert history[-1]["loss"] < history[0]["loss"]
    training = json.loads((model_dir / "training.json").read_text())
    assert training["train_clips"] + training["validation_clips"] == 20
    assert training["validation_clips"] >= 1
    level = training["generation_level_db"]
    assert level["max"] - level["min"] == pytest.approx(80.0, abs=0.1)


@pytest.mark.slow
def test_generate_writes_24_bit_wavs_at_the_model_rate_normalised_trimmed_and_faded(trained, tmp_path):
    root, _ = trained
    written = run_generate(root, tmp_path / "out")
    assert [len(written[kind]) for kind in ("generated", "original", "reconstructed")] == [3, 2, 2]
    longest = (1 + int(DURATION * SAMPLE_RATE) // HOP_LENGTH - 1) * HOP_LENGTH
    for path in sum(written.values(), []):
        audio, rate = sf.read(path)
        assert rate == SAMPLE_RATE and sf.info(path).subtype == "PCM_24"
        assert longest // 4 < len(audio) <= longest  # trailing silence trimmed
        assert np.sqrt(np.mean(audio ** 2)) > 1e-3, f"{path.name} is silent"
        assert 20 * np.log10(np.max(np.abs(audio))) == pytest.approx(-1.0, abs=0.01), f"{path.name} is not at -1 dBFS"
        assert abs(np.mean(audio)) < 0.01 and abs(audio[-1]) < 1e-3  # no DC offset, a faded end
    originals = sorted(p.name for p in written["original"])
    assert originals == sorted(p.name for p in written["reconstructed"])
    assert json.loads((tmp_path / "out" / "generation.json").read_text())["sample_rate"] == SAMPLE_RATE


@pytest.mark.slow
def test_generate_is_deterministic_for_a_seed(trained, tmp_path):
    root, _ = trained
    first = run_generate(root, tmp_path / "a", "--seed=3")
    second = run_generate(root, tmp_path / "b", "--seed=3")
    other = run_generate(root, tmp_path / "c", "--seed=4")
    def read(path):
        return sf.read(path)[0]

    for a, b in zip(first["generated"], second["generated"]):
        np.testing.assert_array_equal(read(a), read(b))
    assert not np.allclose(read(first["generated"][0]), read(other["generated"][0]))


@pytest.mark.slow
def test_generate_refuses_spectrograms_made_with_other_parameters(trained, tmp_path):
    root, _ = trained
    other = tmp_path / "other_spectrograms"
    preprocess.main(preprocess_args(root / "audio", other)[:-2] + ["--hop_length=64", "--num_workers=1"])
    with pytest.raises(PipelineError, match=r"other parameters than the model \(hop_length: model 32, data 64"):
        generate.main([f"--model_dir={root / 'model'}", f"--spectrograms_dir={other}",
                       f"--output_dir={tmp_path / 'out'}", "--num_generated=0"])


@pytest.mark.slow
def test_generate_refuses_a_label_when_sampling_the_standard_normal_prior(trained, tmp_path):
    root, _ = trained
    with pytest.raises(PipelineError, match=r"--label=snare: this model draws the sounds of one class from its "
                                            r"fitted latent prior, which cannot be used here \(PRIOR=standard\)"):
        run_generate(root, tmp_path / "out", "--label=snare", "--prior=standard")
    assert not (tmp_path / "out" / "generated").exists()


def test_generate_without_a_model_says_to_train_first(tmp_path):
    with pytest.raises(PipelineError, match=r"has no model.keras.*train a model with train.py first"):
        generate.main([f"--model_dir={tmp_path / 'nothing'}", f"--output_dir={tmp_path / 'out'}"])


def test_train_without_spectrograms_says_to_preprocess_first(tmp_path):
    with pytest.raises(PipelineError, match="run preprocess.py first"):
        train.main([f"--spectrograms_dir={tmp_path / 'nothing'}", f"--model_dir={tmp_path / 'model'}"])


def test_fsdd_names_use_the_official_split_and_others_a_stable_hash():
    fsdd = [{"file": f"{digit}_jackson_{take}.wav"} for digit in range(2) for take in range(10)]
    train_indices, validation = training.split_clips(fsdd, 0.1, seed=0)
    assert [fsdd[i]["file"] for i in validation] == [f"{d}_jackson_{t}.wav" for d in range(2) for t in range(5)]
    clips = [{"file": f"kick/kick_{i:03d}.wav"} for i in range(200)]
    _, held_out = training.split_clips(clips, 0.1, seed=0)
    _, held_out_again = training.split_clips(clips + [{"file": "new/extra.wav"}], 0.1, seed=0)
    assert 10 <= len(held_out) <= 30
    assert set(held_out) <= set(held_out_again)  # adding a file does not reshuffle the others


def test_spectrogram_reader_returns_exactly_the_requested_rows(tmp_path):
    array = np.random.default_rng(0).random((7, 4, 3)).astype(np.float32)
    np.save(tmp_path / "spectrograms.npy", array)
    reader = training.SpectrogramReader(tmp_path / "spectrograms.npy")
    assert len(reader) == 7
    np.testing.assert_array_equal(reader.read([1, 4, 6]), array[[1, 4, 6]])


def test_a_small_folder_gets_min_steps_full_batches_an_epoch_drawn_from_whole_passes(tmp_path):
    array = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 2, 3), dtype=np.float32)
    np.save(tmp_path / "spectrograms.npy", array)
    reader = training.SpectrogramReader(tmp_path / "spectrograms.npy")
    indices = np.array([0, 2, 3, 5, 6, 8, 9])  # 7 training clips, batches of 4, at least 6 steps
    epochs = []
    dataset = training.make_dataset(reader, indices, None, 4, shuffle=True, seed=1, min_steps=6)
    for _ in range(2):
        batches = [batch.numpy()[:, 0, 0, 0].astype(int) for batch in dataset]
        assert [len(batch) for batch in batches] == [4] * 6
        seen = np.concatenate(batches)
        # 24 clips from four shuffled passes over the 7: every clip 3 or 4 times, and nothing else.
        assert set(seen) == set(indices) and min(np.bincount(seen)[indices]) >= 3
        epochs.append(seen)
    assert not np.array_equal(epochs[0], epochs[1])  # each epoch its own order ...
    resumed = training.make_dataset(reader, indices, None, 4, shuffle=True, seed=1, min_steps=6, first_epoch=1)
    np.testing.assert_array_equal(np.concatenate([b.numpy()[:, 0, 0, 0] for b in resumed]).astype(int), epochs[1])
    # ... and a folder with enough clips, or the validation data, is passed over once as before.
    once = training.make_dataset(reader, indices, None, 4, shuffle=False, seed=0, min_steps=6)
    assert [len(batch) for batch in once] == [4, 3]


@pytest.mark.slow
def test_a_nan_loss_stops_training_and_keeps_the_last_good_model(trained, tmp_path, capsys):
    root, _ = trained
    model_dir = tmp_path / "model"
    spectrograms = tmp_path / "spectrograms"
    preprocess.main(preprocess_args(root / "audio", spectrograms))
    args = [f"--spectrograms_dir={spectrograms}", f"--model_dir={model_dir}", "--epochs=1", *TINY_MODEL]
    train.main(args)
    good_model = (model_dir / "model.keras").read_bytes()
    array = np.load(spectrograms / "spectrograms.npy", mmap_mode="r+")
    array[:] = np.nan
    array.flush()
    with pytest.raises(SystemExit) as stopped:
        train.main(args + ["--epochs=2", "--resume=false"])
    assert stopped.value.code == 3
    assert "loss became NaN" in capsys.readouterr().out
    assert (model_dir / "model.keras").read_bytes() == good_model


def wait_for_epoch(state, epoch, process, seconds=120):
    """Wait until the run writing ``state`` (checkpoint/state.json) has saved ``epoch``; return the epoch saved.

    The runs stopped this way are started with far more epochs than they can train before the signal,
    so they are always stopped mid-training; EPOCHS is not a setting a resumed run must share.
    """
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        try:
            if json.loads(state.read_text())["epoch"] >= epoch:
                break
        except (OSError, ValueError, KeyError):
            pass  # not written yet, or caught half-replaced
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be stopped"
    return json.loads(state.read_text())["epoch"]


@pytest.mark.slow
def test_a_killed_training_run_resumes_where_it_stopped(tmp_path):
    """kill -9 after epoch 2 or so; the same command then finishes from the last saved epoch."""
    write_demo_drums(tmp_path / "audio", clips_per_class=4, sample_rate=SAMPLE_RATE, duration=DURATION)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms"))
    command = [sys.executable, str(ROOT / "train.py"), f"--spectrograms_dir={tmp_path / 'spectrograms'}",
               f"--model_dir={tmp_path / 'model'}", *TINY_MODEL]
    state = tmp_path / "model" / "checkpoint" / "state.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command + ["--epochs=10000"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    wait_for_epoch(state, 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_epoch = json.loads(state.read_text())["epoch"]
    last = saved_epoch + 3
    finished = subprocess.run(command + [f"--epochs={last}"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"resuming the interrupted run in {tmp_path / 'model'} after epoch {saved_epoch}" in finished.stdout
    epochs = [int(line.split(",")[0]) for line in (tmp_path / "model" / "history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, last + 1))  # nothing lost, nothing repeated
    assert not state.exists()


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl_c", "kill_9"])
def test_a_model_whose_training_was_interrupted_still_generates_by_class_from_its_fitted_prior(tmp_path, stop):
    write_demo_drums(tmp_path / "audio", clips_per_class=4, sample_rate=SAMPLE_RATE, duration=DURATION)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms"))
    model_dir = tmp_path / "model"
    command = [sys.executable, str(ROOT / "train.py"), f"--spectrograms_dir={tmp_path / 'spectrograms'}",
               f"--model_dir={model_dir}", "--epochs=10000", *TINY_MODEL]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_epoch(model_dir / "checkpoint" / "state.json", 2, process)
    process.send_signal(stop)
    process.wait(timeout=60)
    assert not (model_dir / "latent_prior.json").exists(), "training was not interrupted before it ended"
    written = generate.main([f"--model_dir={model_dir}", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
                             f"--output_dir={tmp_path / 'out'}", "--num_generated=2", "--num_reconstructed=0",
                             "--label=snare", "--griffin_lim_iterations=4"])
    assert [path.name for path in written["generated"]] == ["generated_snare_000.wav", "generated_snare_001.wav"]
    prior = json.loads((model_dir / "latent_prior.json").read_text())   # fitted by generate.py, for this model
    assert prior["classes"] == ["clap", "hihat", "kick", "snare", "tom"]
    assert prior["model_sha256"] == file_sha256(model_dir / "model.keras")
    assert sum(prior["counts"]) == json.loads((model_dir / "training.json").read_text())["train_clips"]


def inference_and_training_mse(root, *train_args):
    """(inference-mode MSE on the training clips, training-mode reconstruction loss at the best epoch)."""
    from autoencoder import VAE

    # 16 training clips in batches of 8: two batches a pass, as with a small real folder (an epoch is
    # MIN_STEPS_PER_EPOCH of them).
    history = tiny_project(root, 20, "--learning_rate=0.005", *train_args)
    vae = VAE.load(root / "model" / "model.keras")
    spectrograms, clips, _ = folders.load_spectrograms(root / "spectrograms")
    held_out = set(json.loads((root / "model" / "training.json").read_text())["validation_ids"])
    rows = [i for i, clip in enumerate(clips) if clip["id"] not in held_out]
    reconstructions, _ = vae.reconstruct(np.asarray(spectrograms[rows]))
    inference_mse = float(np.mean((reconstructions[..., 0] - spectrograms[rows]) ** 2))
    mean_only_mse = float(np.mean((spectrograms[rows] - np.mean(spectrograms[rows], axis=0)) ** 2))
    return inference_mse, min(history, key=lambda row: row["val_loss"])["reconstruction_loss"], mean_only_mse


@pytest.mark.slow
def test_inference_mode_reconstructions_are_as_good_as_the_training_loss_says(tmp_path):
    """The collapse seen on real kits: a model whose inference-mode output is far worse than its training loss."""
    inference_mse, training_mse, mean_only_mse = inference_and_training_mse(tmp_path)
    assert inference_mse <= 1.25 * training_mse
    assert inference_mse < 0.3 * mean_only_mse  # far better than the average spectrogram


@pytest.mark.slow
def test_with_batch_normalisation_a_small_folder_collapses_to_the_average_in_inference_mode(tmp_path):
    """The cause of that collapse, kept as a check: batch statistics lag behind with two steps an epoch."""
    # With the tutorial's transposed decoder, where the collapse was seen (a bilinear one barely learns here).
    inference_mse, training_mse, mean_only_mse = inference_and_training_mse(tmp_path, "--normalization=batch",
                                                                             "--decoder_upsampling=transpose")
    assert inference_mse > 2 * training_mse and inference_mse > 0.8 * mean_only_mse


@pytest.mark.slow
def test_a_killed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """Optimiser, learning-rate plateau and early-stopping counters and the data order all survive kill -9."""
    from autoencoder import VAE

    write_demo_drums(tmp_path / "audio", clips_per_class=4, sample_rate=SAMPLE_RATE, duration=DURATION)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def command(model_dir):
        # A patience of 1 makes the plateau schedule act within these few epochs (with the transposed
        # decoder, whose validation loss stalls early here). Each epoch is 4 full batches from two shuffled
        # passes over the training clips (3 batches would be one pass): the order of a small folder's
        # passes survives too.
        return [sys.executable, str(ROOT / "train.py"), f"--spectrograms_dir={tmp_path / 'spectrograms'}",
                f"--model_dir={model_dir}", "--learning_rate_patience=1", "--min_steps_per_epoch=4",
                "--decoder_upsampling=transpose", *TINY_MODEL]

    process = subprocess.Popen(command(tmp_path / "resumed") + ["--epochs=10000"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved_epoch = wait_for_epoch(tmp_path / "resumed" / "checkpoint" / "state.json", 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    last = max(6, saved_epoch + 2)  # the run is resumed, not restarted, and trains a few epochs more
    subprocess.run(command(tmp_path / "whole") + [f"--epochs={last}"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(command(tmp_path / "resumed") + [f"--epochs={last}"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)

    def history(model_dir):
        with open(model_dir / "history.csv") as file:
            rows = list(csv.DictReader(file))
        return np.array([[float(row[name]) for name in ("loss", "val_loss", "learning_rate")] for row in rows])

    whole, resumed = history(tmp_path / "whole"), history(tmp_path / "resumed")
    assert whole.shape == resumed.shape == (last, 3)
    assert len(set(whole[:, 2])) > 1, "the learning rate was never halved: the schedule was not exercised"
    # TensorFlow's CPU kernels are deterministic here; a small tolerance allows for thread scheduling.
    np.testing.assert_allclose(resumed, whole, rtol=1e-4)
    for a, b in zip(VAE.load(tmp_path / "whole" / "model.keras").get_weights(),
                    VAE.load(tmp_path / "resumed" / "model.keras").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
