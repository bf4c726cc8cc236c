"""One run per model folder: a new run never leaves the folder pairing one run's model with another's files."""

import json

import pytest

import generate
import preprocess
import train
from conftest import TINY_MODEL, preprocess_args
from data.synthesize_drums import write_demo_drums
from soundkit import folders
from soundkit.fileio import file_sha256


def train_args(root, *extra):
    return [f"--spectrograms_dir={root / 'spectrograms'}", f"--model_dir={root / 'model'}", "--epochs=2",
            "--validation_fraction=0.2", *TINY_MODEL, *extra]


@pytest.mark.slow
def test_a_new_run_stopped_before_its_first_model_leaves_the_old_model_with_its_own_parameters(tmp_path, monkeypatch):
    write_demo_drums(tmp_path / "audio", clips_per_class=4, sample_rate=8000, duration=0.3)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms"))
    train.main(train_args(tmp_path))
    model = tmp_path / "model"
    before = {name: (model / name).read_bytes() for name in ("model.keras", "params.json", "training.json",
                                                               "latent_prior.json")}

    def stopped(*args, **kwargs):  # Ctrl-C or a kill during the first epoch of the new run
        raise KeyboardInterrupt

    monkeypatch.setattr(train.keras.Model, "fit", stopped)
    with pytest.raises(KeyboardInterrupt):
        train.main(train_args(tmp_path, "--latent_space_dim=3", "--resume=false"))
    assert {name: (model / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    # Finished, the new run replaces all of them together: its settings beside its model.
    train.main(train_args(tmp_path, "--latent_space_dim=3", "--resume=false"))
    loaded = folders.load_model_folder(model)
    assert loaded.vae.latent_space_dim == 3 == loaded.training["settings"]["LATENT_SPACE_DIM"]
    assert json.loads((model / "latent_prior.json").read_text())["model_sha256"] == file_sha256(model / "model.keras")


@pytest.mark.slow
def test_groups_of_an_earlier_unlabelled_run_do_not_outlive_it(tmp_path):
    write_demo_drums(tmp_path / "audio", clips_per_class=4, sample_rate=8000, duration=0.3)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "unlabelled") + ["--labels=none"])
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms"))
    model = tmp_path / "model"
    train.main([f"--spectrograms_dir={tmp_path / 'unlabelled'}", f"--model_dir={model}", "--epochs=2",
                "--groups=2", *TINY_MODEL])
    groups = json.loads((model / "groups.json").read_text())
    assert groups["model_sha256"] == file_sha256(model / "model.keras")  # the groups name their model
    train.main(train_args(tmp_path))  # the labelled folder, into the same model folder
    assert not (model / "groups.json").exists()
    _, clips, _ = folders.load_spectrograms(tmp_path / "spectrograms")
    assert {clip["label"] for clip in folders.with_model_groups(clips, model)} == {
        "clap", "hihat", "kick", "snare", "tom"}
    written = generate.main([f"--model_dir={model}", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
                             f"--output_dir={tmp_path / 'out'}", "--num_generated=0", "--num_reconstructed=0",
                             "--morph_from=kick", "--morph_to=snare", "--morph_steps=3",
                             "--griffin_lim_iterations=4"])
    assert len(written["morph"]) == 3


def test_groups_sorted_by_another_model_are_ignored(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.keras").write_bytes(b"this run's model")
    clips = [{"id": "a.wav", "label": "kick"}, {"id": "b.wav", "label": None}]
    folders.save_groups(model, {"a.wav": "dark-short", "b.wav": "bright-long"}, {}, {2: 0.5})
    assert [clip["label"] for clip in folders.with_model_groups(clips, model)] == ["dark-short", "bright-long"]
    (model / "model.keras").write_bytes(b"a later run's model")
    assert folders.with_model_groups(clips, model) == clips
