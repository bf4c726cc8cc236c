"""Beyond the tutorial: generation by class, morphing between two sounds, the listening page's HTML."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundkit import folders
from soundkit import listening_page, sounds
import generate
from soundkit.errors import PipelineError
from conftest import DURATION, SAMPLE_RATE, copy_project, tiny_project
from data.synthesize_drums import DRUM_CLASSES
from soundkit.latent_space import interpolate_latents
from soundkit.spectrogram import spectrogram_of_file, wav_spectrogram_db

CLASSES = sorted(DRUM_CLASSES)  # train.py sorts the labels: clap, hihat, kick, snare, tom


@pytest.fixture(scope="module")
def conditional(conditional_project):
    """The session's tiny class-conditional model (20 drum clips, 5 class folders x 4), loaded."""
    root = conditional_project
    model = folders.load_model_folder(root / "model")
    vae, params, training = model.vae, model.params, model.training
    return root, vae, params, training, model


def run_generate(root, output, *extra):
    return generate.main([f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                          f"--output_dir={output}", "--num_generated=0", "--num_reconstructed=0",
                          "--griffin_lim_iterations=4", *extra])


def spectrograms_db(result):
    """The decoded steps of a morph in dB."""
    span = (result.max_db - result.min_db)[:, None, None]
    return result.spectrograms[..., 0] * span + result.min_db[:, None, None]


# --- generation by class ------------------------------------------------------------------

@pytest.mark.slow
def test_a_requested_label_names_and_conditions_every_generated_file(conditional, tmp_path):
    root, *_ = conditional
    written = run_generate(root, tmp_path / "out", "--num_generated=3", "--label=snare")
    assert [path.name for path in written["generated"]] == [
        "generated_snare_000.wav", "generated_snare_001.wav", "generated_snare_002.wav"]
    for path in written["generated"]:
        audio, rate = sf.read(path)
        assert rate == SAMPLE_RATE and np.sqrt(np.mean(audio ** 2)) > 1e-3


@pytest.mark.slow
def test_without_a_label_every_class_is_generated_in_turn(conditional, tmp_path):
    root, *_ = conditional
    written = run_generate(root, tmp_path / "out", "--num_generated=6")
    assert [path.stem for path in written["generated"]] == [
        "generated_clap_000", "generated_hihat_001", "generated_kick_002",
        "generated_snare_003", "generated_tom_004", "generated_clap_005"]


@pytest.mark.slow
def test_an_unknown_label_is_refused_with_the_labels_the_model_knows(conditional, tmp_path):
    root, *_ = conditional
    known = "clap, hihat, kick, snare, tom"
    with pytest.raises(PipelineError, match=f"unknown label 'cowbell'; this model knows: {known}$"):
        run_generate(root, tmp_path / "out", "--num_generated=2", "--label=cowbell")
    assert not (tmp_path / "out" / "generated").exists()


# --- latent interpolation (no model) ---------------------------------------------------------

def test_linear_interpolation_is_evenly_spaced_on_the_straight_line():
    points = interpolate_latents([0.0, 2.0], [4.0, 6.0], 5, "linear")
    np.testing.assert_allclose(points, [[0, 2], [1, 3], [2, 4], [3, 5], [4, 6]])


def test_slerp_keeps_the_length_and_is_evenly_spaced_in_angle():
    start, end = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0])
    points = interpolate_latents(start, end, 7, "slerp")
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 3.0, rtol=1e-6)
    angles = np.degrees(np.arctan2(points[:, 2], points[:, 0]))
    np.testing.assert_allclose(angles, np.linspace(0, 90, 7), atol=1e-4)


def test_slerp_interpolates_the_length_between_ends_of_different_lengths():
    points = interpolate_latents([1.0, 0.0], [0.0, 3.0], 9, "slerp")
    lengths = np.linalg.norm(points, axis=1)
    assert lengths[0] == pytest.approx(1.0) and lengths[-1] == pytest.approx(3.0)
    assert np.all(np.diff(lengths) > 0)


def test_both_ends_are_returned_exactly():
    start = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    end = np.random.default_rng(2).standard_normal(16).astype(np.float32)
    for method in ("linear", "slerp"):
        points = interpolate_latents(start, end, 8, method)
        assert points.shape == (8, 16)
        np.testing.assert_array_equal(points[0], start)
        np.testing.assert_array_equal(points[-1], end)


def test_slerp_falls_back_to_linear_when_the_direction_is_undefined():
    np.testing.assert_allclose(interpolate_latents([0.0, 0.0], [2.0, 2.0], 3, "slerp"),
                               [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_allclose(interpolate_latents([1.0, 0.0], [-1.0, 0.0], 3, "slerp"),
                               [[1, 0], [0, 0], [-1, 0]])


def test_interpolation_refuses_bad_arguments():
    with pytest.raises(ValueError, match="same length, got 2 and 3"):
        interpolate_latents([0.0, 1.0], [0.0, 1.0, 2.0], 4)
    with pytest.raises(ValueError, match="steps must be at least 2, got 1"):
        interpolate_latents([0.0], [1.0], 1)
    with pytest.raises(ValueError, match="'linear' or 'slerp', got 'cubic'"):
        interpolate_latents([0.0], [1.0], 3, "cubic")


# --- morphing with a model --------------------------------------------------------------------

@pytest.mark.slow
def test_an_audio_file_becomes_the_same_spectrogram_preprocess_made(conditional):
    root, _, params, _, model = conditional
    data, clips, _ = folders.load_spectrograms(root / "spectrograms")
    index = next(i for i, clip in enumerate(clips) if clip["id"] == "kick/kick_002.wav")
    spectrogram, min_db, max_db = spectrogram_of_file(root / "audio" / "kick" / "kick_002.wav", params)
    np.testing.assert_allclose(spectrogram, data[index], atol=1e-6)
    assert (round(min_db, 4), round(max_db, 4)) == (clips[index]["min"], clips[index]["max"])


@pytest.mark.slow
def test_a_file_end_is_the_latent_mean_of_the_file_with_its_folder_class(conditional):
    root, vae, params, training, model = conditional
    path = root / "audio" / "kick" / "kick_002.wav"
    end = sounds.morph_end(str(path), "MORPH_FROM", model, root / "spectrograms")
    spectrogram, min_db, max_db = spectrogram_of_file(path, params)
    expected, _ = vae.encode(spectrogram[np.newaxis], [CLASSES.index("kick")])
    assert (end.name, end.label, end.min_db, end.max_db) == ("kick_002.wav", CLASSES.index("kick"), min_db, max_db)
    np.testing.assert_allclose(end.latent, expected[0], rtol=1e-5)


@pytest.mark.slow
def test_a_class_end_is_the_mean_latent_of_that_class_clips(conditional):
    root, vae, params, training, model = conditional
    data, clips, _ = folders.load_spectrograms(root / "spectrograms")
    snares = [i for i, clip in enumerate(clips) if clip["label"] == "snare"]
    means, _ = vae.encode(np.asarray(data[snares]), np.full(len(snares), CLASSES.index("snare")))
    end = sounds.morph_end("snare", "MORPH_TO", model, root / "spectrograms")
    assert end.label == CLASSES.index("snare") and len(snares) == 4
    np.testing.assert_allclose(end.latent, means.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert end.max_db == pytest.approx(np.mean([clips[i]["max"] for i in snares]))


@pytest.mark.slow
def test_a_class_without_clips_starts_from_the_prior_mean_at_the_typical_level(conditional, tmp_path):
    _, vae, params, training, model = conditional
    end = sounds.morph_end("tom", "MORPH_TO", model, tmp_path / "no_spectrograms")
    np.testing.assert_array_equal(end.latent, np.zeros(4))
    level = training["generation_level_db"]
    assert (end.label, end.min_db, end.max_db) == (CLASSES.index("tom"), level["min"], level["max"])


@pytest.mark.slow
@pytest.mark.parametrize("interpolation", ["linear", "slerp"])
def test_a_morph_moves_steadily_away_from_its_start(conditional, interpolation):
    root, vae, params, training, model = conditional
    start = sounds.morph_end(str(root / "audio" / "kick" / "kick_000.wav"), "MORPH_FROM", model,
                               root / "spectrograms")
    end = sounds.morph_end(str(root / "audio" / "hihat" / "hihat_000.wav"), "MORPH_TO", model,
                             root / "spectrograms")
    result = sounds.morph(vae, start, end, 8, interpolation)
    steps_db = spectrograms_db(result)
    distances = np.sqrt(np.mean((steps_db - steps_db[0]) ** 2, axis=(1, 2)))  # RMS dB difference to step 0
    assert distances[-1] > 5.0, f"the morph hardly moves: {distances.round(2)}"
    tolerance = 0.02 * distances[-1]
    assert np.all(np.diff(distances) >= -tolerance), f"not steadily away from the start: {distances.round(2)}"
    assert np.all(distances[1:] > 0)


@pytest.mark.parametrize("interpolation", ["linear", "slerp"])
def test_the_decoded_shape_changes_in_even_steps_along_the_latent_path(interpolation):
    """Ends at the same level, so only the path through the latent space moves the spectrogram."""
    import keras

    from autoencoder import VAE

    keras.utils.set_random_seed(0)  # the weights come from Keras' global generator: the same whatever ran before
    vae = VAE(input_shape=(64, 76, 1), conv_filters=[4, 8], conv_kernels=[3, 3], conv_strides=[2, 2],
              latent_space_dim=4, seed=0)  # untrained: a smooth decoder that depends on every latent
    rng = np.random.default_rng(2)
    start = sounds.MorphEnd("a", 2 * rng.standard_normal(4), None, -80.0, 0.0)
    end = sounds.MorphEnd("b", 2 * rng.standard_normal(4), None, -80.0, 0.0)
    steps_db = spectrograms_db(sounds.morph(vae, start, end, 8, interpolation))
    distances = np.sqrt(np.mean((steps_db - steps_db[0]) ** 2, axis=(1, 2)))
    increments = np.diff(distances)
    assert distances[-1] > 0.5, f"the decoder hardly moves: {distances.round(3)}"
    assert np.all(increments > 0), f"not steadily away from the start: {distances.round(3)}"
    assert increments.max() < 2 * increments.mean(), f"a jump along the way: {distances.round(3)}"


@pytest.mark.slow
def test_the_ends_of_a_morph_decode_the_ends_latents_with_their_classes(conditional):
    root, vae, params, training, model = conditional
    start = sounds.morph_end(str(root / "audio" / "kick" / "kick_000.wav"), "MORPH_FROM", model,
                               root / "spectrograms")
    end = sounds.morph_end("snare", "MORPH_TO", model, root / "spectrograms")
    result = sounds.morph(vae, start, end, 5, "slerp")
    assert result.labels.tolist() == [CLASSES.index("kick")] * 2 + [CLASSES.index("snare")] * 3
    np.testing.assert_array_equal(result.latents[[0, -1]], [start.latent, end.latent])
    np.testing.assert_allclose(result.spectrograms[0], vae.decode(start.latent, [start.label])[0], atol=1e-6)
    np.testing.assert_allclose(result.spectrograms[-1], vae.decode(end.latent, [end.label])[0], atol=1e-6)
    assert (result.min_db[0], result.max_db[-1]) == (start.min_db, end.max_db)
    assert result.max_db[2] == pytest.approx((start.max_db + end.max_db) / 2)


@pytest.mark.slow
def test_generate_writes_the_numbered_morph_steps_and_their_strip(conditional, tmp_path):
    root, *_ = conditional
    output = tmp_path / "out"
    (output / "morph").mkdir(parents=True)
    sf.write(output / "morph" / "morph_11.wav", np.zeros(100), SAMPLE_RATE)  # from an earlier, longer morph
    written = run_generate(root, output, f"--morph_from={root / 'audio' / 'kick' / 'kick_000.wav'}",
                           "--morph_to=snare", "--morph_steps=6")
    names = [f"morph_{index:02d}.wav" for index in range(6)]
    assert [path.name for path in written["morph"]] == names
    assert sorted(path.name for path in (output / "morph").glob("*.wav")) == names
    for path in written["morph"]:
        audio, rate = sf.read(path)
        assert rate == SAMPLE_RATE and len(audio) == int(DURATION * SAMPLE_RATE)
    assert (output / "morph" / "morph_strip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = json.loads((output / "generation.json").read_text())["files"]["morph"]
    assert listed == [f"morph/{name}" for name in names]


@pytest.mark.slow
def test_a_morph_end_that_is_neither_a_file_nor_a_class_is_refused(conditional, tmp_path):
    root, *_ = conditional
    with pytest.raises(PipelineError, match=r"MORPH_TO 'cowbell' is neither an audio file nor a class of the model "
                                            r"\(this model's classes: clap, hihat, kick, snare, tom\)"):
        run_generate(root, tmp_path / "out", "--morph_from=kick", "--morph_to=cowbell", "--num_generated=2")
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.slow
def test_an_audio_file_whose_class_cannot_be_told_is_refused(conditional, tmp_path):
    root, *_ = conditional
    loose = tmp_path / "loose.wav"
    sf.write(loose, np.sin(np.arange(4000) * 0.3) * 0.5, SAMPLE_RATE)
    with pytest.raises(PipelineError, match=r"cannot tell the class of .*loose.wav.*folder named after its class"):
        run_generate(root, tmp_path / "out", f"--morph_from={loose}", "--morph_to=snare")


def test_an_unreadable_audio_file_is_refused_with_its_reason(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    with pytest.raises(PipelineError, match=r"cannot use .*broken.wav: unreadable audio"):
        spectrogram_of_file(broken, {"sample_rate": 8000, "num_samples": 2400, "frame_size": 128,
                                              "hop_length": 32, "top_db": 80.0})


@pytest.mark.parametrize("arguments, message", [
    (["--morph_from=kick"], "a morph needs both MORPH_FROM and MORPH_TO"),
    (["--morph_from=kick", "--morph_to=snare", "--morph_steps=1"], "MORPH_STEPS must be at least 2"),
    (["--morph_from=kick", "--morph_to=snare", "--morph_interpolation=cubic"], "'linear' or 'slerp', got 'cubic'"),
    (["--page_image_size=[320]"], r"PAGE_IMAGE_SIZE must be \[width, height\]"),
    (["--kernel_width=-1"], r"KERNEL_WIDTH must be 0 \(the Gaussians\) or more, got -1"),
    (["--spread_cap=-0.5"], r"SPREAD_CAP must be 0 \(no cap\) or more, got -0.5"),
])
def test_impossible_morph_and_page_settings_are_refused_before_loading_a_model(tmp_path, arguments, message):
    with pytest.raises(PipelineError, match=message):
        generate.main([f"--model_dir={tmp_path / 'nothing'}", *arguments])


# --- the listening page (no model) ------------------------------------------------------

def test_the_pictures_of_a_sound_show_librosas_decibels_relative_to_its_peak(tmp_path):
    import librosa

    params = {"sample_rate": 8000, "frame_size": 128, "hop_length": 32}
    time = np.arange(2400) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 440 * time) * np.exp(-8 * time)
    sf.write(tmp_path / "tone.wav", tone, 8000, subtype="FLOAT")
    sf.write(tmp_path / "silence.wav", np.zeros(2400), 8000)
    expected = librosa.amplitude_to_db(np.abs(librosa.stft(tone.astype(np.float32), n_fft=128, hop_length=32)),
                                       ref=np.max)
    np.testing.assert_allclose(wav_spectrogram_db(tmp_path / "tone.wav", params), expected, atol=0.01)
    assert wav_spectrogram_db(tmp_path / "tone.wav", params).min() == pytest.approx(-80.0)
    assert np.all(wav_spectrogram_db(tmp_path / "silence.wav", params) == -80.0)  # an even floor
    # A file at another rate is resampled to the model's first: same frequency axis, same length in time.
    sf.write(tmp_path / "tone_16k.wav", librosa.resample(tone, orig_sr=8000, target_sr=16000), 16000, subtype="FLOAT")
    resampled = wav_spectrogram_db(tmp_path / "tone_16k.wav", params)
    assert resampled.shape == expected.shape
    assert np.argmax(resampled.mean(axis=1)) == np.argmax(expected.mean(axis=1))  # the tone's 440 Hz bin


def test_every_sound_gets_a_png_of_the_requested_size(tmp_path):
    params = {"sample_rate": 8000, "frame_size": 128, "hop_length": 32}
    for index, length in enumerate((2400, 2400, 4000)):  # the third, longer, needs a figure of its own
        sf.write(tmp_path / f"{index}.wav", np.random.default_rng(index).standard_normal(length) * 0.1, 8000)
    pictures = listening_page.write_spectrogram_pngs([tmp_path / f"{index}.wav" for index in range(3)],
                                               [tmp_path / "png" / f"{index}.png" for index in range(3)],
                                               params, size=(300, 150))
    import matplotlib.image

    images = [matplotlib.image.imread(path) for path in pictures]
    assert [image.shape[:2] for image in images] == [(150, 300)] * 3
    assert not np.array_equal(images[0], images[1])  # each picture shows its own sound

def test_every_text_on_the_listening_page_is_html_escaped():
    hostile = '<script>alert("x")</script>&'
    sounds = [{"kind": "generated", "name": hostile, "label": hostile,
               "wav": Path("generated") / f"{hostile}.wav", "png": Path("spectrograms") / "a b#c.png"}]
    page = listening_page.listening_page_html(sounds, {"MODEL_DIR": hostile, "LABEL": hostile}, {"sample_rate": 8000},
                                        label_names=[hostile])
    assert "<script" not in page and 'alert("x")' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page  # the name, label and title
    assert 'src="spectrograms/a%20b%23c.png"' in page  # a path is a URL: spaces and # encoded
    assert 'src="generated/%3Cscript%3Ealert%28%22x%22%29%3C/script%3E%26.wav"' in page


def test_the_listening_page_groups_sounds_by_class_and_pairs_originals_with_reconstructions():
    def sound(kind, name, label):
        return {"kind": kind, "name": name, "label": label, "wav": f"{kind}/{name}.wav",
                "png": f"spectrograms/{kind}/{name}.png"}

    sounds = [sound("generated", "generated_kick_000", "kick"), sound("generated", "generated_snare_001", "snare"),
              sound("generated", "generated_kick_002", "kick"),
              sound("original", "tom_1", "tom"), sound("reconstructed", "tom_1", "tom")]
    page = listening_page.listening_page_html(sounds, {}, {"sample_rate": 8000})
    order = [page.index(text) for text in ("<h3>kick</h3>", "generated/generated_kick_000.wav",
                                           "generated/generated_kick_002.wav", "<h3>snare</h3>",
                                           "generated/generated_snare_001.wav", "<h3>tom</h3>",
                                           "original/tom_1.wav", "reconstructed/tom_1.wav")]
    assert order == sorted(order)
    pair = page[page.index('<div class="pair">'):page.index("reconstructed/tom_1.wav")]
    assert "original/tom_1.wav" in pair


# --- a latent classifier (unconditional model organised by class) --------------------------

@pytest.mark.slow
def test_a_latent_classifier_is_trained_on_the_folder_labels_and_saved_with_them(labelled_project):
    import csv

    root, history = labelled_project
    training = json.loads((root / "model" / "training.json").read_text())
    assert training["classes"] == CLASSES  # one list of classes, whatever learnt them
    assert not {"class_names", "label_names", "latent_label_names"} & set(training)
    with open(root / "model" / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 8 == len(history)
    assert float(rows[0]["label_loss"]) > 0 and "val_label_loss" in rows[0]
    vae = folders.load_model_folder(root / "model").vae
    assert vae.latent_classes == len(CLASSES) and vae.num_classes == 0  # unconditional
    spectrograms, clips, _ = folders.load_spectrograms(root / "spectrograms")
    assert vae.classify(spectrograms).shape == (len(clips), len(CLASSES))


@pytest.mark.slow
def test_an_unconditional_model_generates_a_requested_class_from_its_fitted_prior(labelled_project, tmp_path):
    root, _ = labelled_project
    # A Gaussian per class was fitted to the best model's latent means, for generation by class.
    prior_file = json.loads((root / "model" / "latent_prior.json").read_text())
    assert prior_file["classes"] == CLASSES and len(prior_file["means"]) == len(CLASSES)
    written = run_generate(root, tmp_path / "out", "--num_generated=2", "--label=snare")
    assert [path.name for path in written["generated"]] == ["generated_snare_000.wav", "generated_snare_001.wav"]
    with pytest.raises(PipelineError, match=f"unknown label 'cowbell'; this model knows: {', '.join(CLASSES)}$"):
        run_generate(root, tmp_path / "out", "--num_generated=2", "--label=cowbell")


@pytest.mark.slow
def test_class_names_are_morph_ends_of_an_unconditional_model(labelled_project, tmp_path):
    root, _ = labelled_project
    # The mean latent of each class's clips.
    written = run_generate(root, tmp_path / "morph", "--morph_from=kick", "--morph_to=snare", "--morph_steps=3")
    assert [path.name for path in written["morph"]] == ["morph_00.wav", "morph_01.wav", "morph_02.wav"]


@pytest.mark.slow
def test_a_prior_fitted_for_another_model_is_fitted_again_for_this_one(labelled_project, tmp_path):
    root = copy_project(labelled_project[0], tmp_path / "project")  # this test replaces the latent prior
    prior_file = json.loads((root / "model" / "latent_prior.json").read_text())
    stale = {**prior_file, "model_sha256": "0" * 64, "means": (np.array(prior_file["means"]) + 100).tolist()}
    (root / "model" / "latent_prior.json").write_text(json.dumps(stale))
    written = run_generate(root, tmp_path / "out", "--num_generated=2", "--label=snare")
    assert [path.name for path in written["generated"]] == ["generated_snare_000.wav", "generated_snare_001.wav"]
    refitted = json.loads((root / "model" / "latent_prior.json").read_text())
    assert refitted["model_sha256"] == prior_file["model_sha256"]
    np.testing.assert_allclose(refitted["means"], prior_file["means"], atol=1e-5)


@pytest.mark.slow
def test_without_the_training_clips_a_stale_prior_gives_way_to_the_standard_normal(labelled_project, tmp_path):
    root = copy_project(labelled_project[0], tmp_path / "project")
    prior_file = json.loads((root / "model" / "latent_prior.json").read_text())
    (root / "model" / "latent_prior.json").write_text(json.dumps({**prior_file, "model_sha256": "0" * 64}))
    missing = [f"--spectrograms_dir={tmp_path / 'nothing'}", "--num_reconstructed=0"]
    with pytest.raises(PipelineError, match="--label=snare: this model draws the sounds of one class from its "
                                            "fitted latent prior, which cannot be used here"):
        run_generate(root, tmp_path / "out", "--num_generated=2", "--label=snare", *missing)
    written = run_generate(root, tmp_path / "out2", "--num_generated=2", *missing)
    assert [path.name for path in written["generated"]] == ["generated_000.wav", "generated_001.wav"]


@pytest.mark.slow
def test_without_the_latent_classifier_labelled_clips_still_give_classes_for_label_and_morph(tmp_path):
    tiny_project(tmp_path, 2, "--latent_classifier_weight=0")
    training = json.loads((tmp_path / "model" / "training.json").read_text())
    assert training["classes"] == CLASSES
    vae = folders.load_model_folder(tmp_path / "model").vae
    assert vae.latent_classes == 0 and vae.num_classes == 0  # only the prior knows the classes
    assert json.loads((tmp_path / "model" / "latent_prior.json").read_text())["classes"] == CLASSES
    written = run_generate(tmp_path, tmp_path / "out", "--num_generated=2", "--label=snare")
    assert [path.name for path in written["generated"]] == ["generated_snare_000.wav", "generated_snare_001.wav"]
    written = run_generate(tmp_path, tmp_path / "morph", "--morph_from=kick", "--morph_to=snare", "--morph_steps=3")
    assert len(written["morph"]) == 3
    with pytest.raises(PipelineError, match=r"--label=snare: .*\(PRIOR=standard\)\. Use --prior=fitted"):
        run_generate(tmp_path, tmp_path / "out", "--num_generated=2", "--label=snare", "--prior=standard")
    with pytest.raises(PipelineError, match="neither an audio file nor a class of the model "
                                            r"\(this model's classes: clap, hihat, kick, snare, tom\)"):
        run_generate(tmp_path, tmp_path / "morph", "--morph_from=cowbell", "--morph_to=snare")


# --- variations of one sound, and the sample pack -----------------------------------------

@pytest.mark.slow
def test_variations_stray_further_from_their_sound_as_the_spread_grows(labelled_project):
    root, _ = labelled_project
    model = folders.load_model_folder(root / "model")
    vae, params = model.vae, model.params
    source = root / "audio" / "snare" / "snare_001.wav"
    reconstruction, _ = vae.reconstruct(spectrogram_of_file(source, params)[0][np.newaxis])
    distances = []
    for spread in (0.0, 0.5, 2.0):
        decoded, min_db, max_db, class_name = sounds.variations_of(source, model, 12, spread)
        assert decoded.shape == (12, params["n_bins"], params["n_frames"], 1) and class_name == "snare"
        assert (min_db, max_db) == spectrogram_of_file(source, params)[1:]  # the sound's own level
        distances.append(float(np.mean(np.sqrt(np.mean((decoded - reconstruction) ** 2, axis=(1, 2, 3))))))
        if spread == 0:  # every variation is the reconstruction itself
            np.testing.assert_allclose(decoded, np.repeat(reconstruction, 12, axis=0), atol=1e-6)
    assert distances[0] < 1e-5 < distances[1] < distances[2]


@pytest.mark.slow
def test_variations_of_a_file_are_written_packed_and_shown_on_the_page(labelled_project, tmp_path):
    root, _ = labelled_project
    source = root / "audio" / "snare" / "snare_001.wav"
    written = run_generate(root, tmp_path / "out", "--num_generated=3", f"--variations_of={source}")
    assert [path.name for path in written["variations"]] == [f"snare_001_variation_{i:03d}.wav" for i in range(3)]
    assert written["generated"] == []  # instead of sounds from the prior
    pack = tmp_path / "out" / "pack"
    assert sorted(path.name for path in (pack / "samples").iterdir()) == ["snare_01.wav", "snare_02.wav", "snare_03.wav"]
    for packed, variation in zip(sorted((pack / "samples").iterdir()), written["variations"]):
        assert packed.read_bytes() == variation.read_bytes()
    assert "key=38" in (pack / "generated_kit.sfz").read_text()
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Variations of snare_001.wav" in page and "variations/snare_001_variation_000.wav" in page
    assert 'href="pack/generated_kit.sfz"' in page and 'href="pack/generated_kit.dspreset"' in page


@pytest.mark.slow
def test_generated_sounds_become_a_pack_with_a_key_per_class_unless_turned_off(labelled_project, tmp_path):
    root, _ = labelled_project
    run_generate(root, tmp_path / "out", "--num_generated=10", "--pack_name=demo kit")
    sfz = (tmp_path / "out" / "pack" / "demo_kit.sfz").read_text()
    for key in (36, 38, 39, 42, 45):  # kick, snare, clap, hihat, tom
        assert sfz.count(f"<group> key={key} ") == 1
    assert sfz.count("<region>") == 10
    run_generate(root, tmp_path / "nopack", "--num_generated=2", "--pack=false")
    assert not (tmp_path / "nopack" / "pack").exists()


def test_bad_variation_settings_are_refused_before_the_model_loads(tmp_path):
    with pytest.raises(PipelineError, match="VARIATIONS_OF: no audio file at"):
        generate.main([f"--model_dir={tmp_path / 'nothing'}", f"--variations_of={tmp_path / 'none.wav'}"])
    with pytest.raises(PipelineError, match="VARIATION_SPREAD must be 0 or more"):
        generate.main([f"--model_dir={tmp_path / 'nothing'}", "--variation_spread=-1"])
