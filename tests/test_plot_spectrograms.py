"""Tests for plot_spectrograms.py: the PCA, the figures and which ones are written."""

import csv
import json
import shutil

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf

import preprocess
from soundkit.errors import PipelineError
from soundkit.latent_space import latent_grid_points, latent_pca
from plot_spectrograms import (
    main,
    plot_comparison,
    plot_generated,
    plot_latent_map,
    plot_training_curves,
    save_figure,
)

SAMPLE_RATE = 8000
FRAME_SIZE = 64
HOP_LENGTH = 32
N_BINS = FRAME_SIZE // 2
N_FRAMES = 16
NUM_SAMPLES = (N_FRAMES - 1) * HOP_LENGTH  # 1 + NUM_SAMPLES // HOP_LENGTH == N_FRAMES
LABELS = ["kick", "snare"]
CLIPS_PER_LABEL = 4
SMALL_DPI = 40
FIGURE_NAMES = ["comparison.png", "generated.png", "training_curves.png", "latent_map.png", "latent_grid.png"]

PARAMS = {
    "format_version": preprocess.FORMAT_VERSION,
    "sample_rate": SAMPLE_RATE,
    "duration": NUM_SAMPLES / SAMPLE_RATE,
    "num_samples": NUM_SAMPLES,
    "frame_size": FRAME_SIZE,
    "hop_length": HOP_LENGTH,
    "window": "hann",
    "n_bins": N_BINS,
    "n_frames": N_FRAMES,
    "amin": 1e-5,
    "top_db": 80.0,
    "labels": "auto",
}


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_history(path, epochs=4, columns=None):
    rng = np.random.default_rng(0)
    columns = columns or ["epoch", "loss", "reconstruction_loss", "kl_loss",
                          "val_loss", "val_reconstruction_loss", "val_kl_loss"]
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for epoch in range(1, epochs + 1):
            writer.writerow([epoch if name == "epoch" else float(rng.uniform(1, 2)) / epoch for name in columns])


def _tone(frequency, seed):
    """A decaying tone with a little noise: a spectrogram with visible structure."""
    time = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    noise = np.random.default_rng(seed).standard_normal(NUM_SAMPLES)
    return (0.5 * np.sin(2 * np.pi * frequency * time) * np.exp(-8 * time) + 0.01 * noise).astype(np.float32)


def _write_wavs(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(names):
        path = folder / f"{name}.wav"
        sf.write(path, _tone(300 + 400 * index, index), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A complete tiny pipeline output: spectrograms, a saved model, its files and generated WAVs."""
    from autoencoder import VAE

    root = tmp_path_factory.mktemp("project")
    model_dir, spectrograms_dir, output_dir = root / "model", root / "spectrograms", root / "samples"

    clips = [{"id": f"{label}/{label}_{index:03d}.wav", "file": f"{label}/{label}_{index:03d}.wav",
              "label": label, "min": -60.0, "max": 10.0}
             for label in LABELS for index in range(CLIPS_PER_LABEL)]
    spectrograms = np.random.default_rng(1).uniform(size=(len(clips), N_BINS, N_FRAMES)).astype(np.float32)
    spectrograms_dir.mkdir()
    np.save(spectrograms_dir / "spectrograms.npy", spectrograms)
    _write_json(spectrograms_dir / "clips.json", clips)
    _write_json(spectrograms_dir / "params.json", PARAMS)

    vae = VAE((N_BINS, N_FRAMES, 1), [4, 8], [3, 3], [2, 2], latent_space_dim=3, seed=0)
    model_dir.mkdir(parents=True, exist_ok=True)
    vae.save(model_dir / "model.keras")
    _write_json(model_dir / "params.json", PARAMS)
    _write_json(model_dir / "training.json", {
        "format_version": 1, "label_names": [], "generation_level_db": {"min": -60.0, "max": 10.0},
        "validation_ids": [clips[0]["id"], clips[-1]["id"]]})
    _write_history(model_dir / "history.csv")

    names = ["kick_kick_000", "snare_snare_003"]
    generated = _write_wavs(output_dir / "generated", ["generated_000", "generated_001", "generated_002"])
    originals = _write_wavs(output_dir / "original", names)
    reconstructed = _write_wavs(output_dir / "reconstructed", names)
    _write_json(output_dir / "generation.json", {
        "sample_rate": SAMPLE_RATE,
        "files": {kind: [str(path.relative_to(output_dir)) for path in paths] for kind, paths in
                  (("generated", generated), ("original", originals), ("reconstructed", reconstructed))}})
    return {"root": root, "model_dir": model_dir, "spectrograms_dir": spectrograms_dir,
            "output_dir": output_dir, "generated": generated, "originals": originals,
            "reconstructed": reconstructed}


def _arguments(project, plots_dir, model_dir=None):
    return [f"--model_dir={model_dir or project['model_dir']}", f"--spectrograms_dir={project['spectrograms_dir']}",
            f"--output_dir={project['output_dir']}", f"--plots_dir={plots_dir}", f"--dpi={SMALL_DPI}"]


def _assert_picture(path, figure=None, dpi=SMALL_DPI):
    """The PNG has the figure's size in pixels and is not a blank page."""
    image = matplotlib.image.imread(path)
    if figure is not None:
        width, height = figure.get_size_inches()
        assert image.shape[:2] == (round(height * dpi), round(width * dpi))
    assert image[..., :3].std() > 0.05


# --- PCA and the latent grid -----------------------------------------------------------

def test_latent_pca_finds_the_dominant_direction_and_keeps_the_order_along_it():
    rng = np.random.default_rng(0)
    direction = np.array([0.6, 0.0, 0.8, 0.0])
    position = np.linspace(-3, 3, 40)
    means = 5.0 + position[:, None] * direction + 0.05 * rng.standard_normal((40, 4))

    projected, components, ratio = latent_pca(means)

    assert projected.shape == (40, 2) and components.shape == (2, 4) and ratio.shape == (2,)
    assert ratio[0] > 0.9
    assert abs(components[0] @ direction) == pytest.approx(1.0, abs=0.01)
    assert np.all(np.diff(projected[:, 0]) > 0)  # sign chosen so the largest coefficient is positive
    assert np.allclose(np.linalg.norm(components, axis=1), 1.0)


def test_latent_pca_of_identical_points_has_zero_explained_variance():
    _, _, ratio = latent_pca(np.ones((5, 3)))
    assert np.all(ratio == 0)


def test_latent_grid_is_centred_on_the_mean_and_spans_two_standard_deviations():
    rng = np.random.default_rng(1)
    means = rng.standard_normal((200, 3)) * [3.0, 1.0, 0.1] + [1.0, 2.0, 3.0]

    latents, offsets = latent_grid_points(means, grid_size=5, span=2.0)

    assert latents.shape == (5, 5, 3)
    assert offsets.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert np.allclose(latents[2, 2], means.mean(axis=0))
    projected, components, _ = latent_pca(means)
    along_first = (latents[2, 4] - latents[2, 2]) @ components[0]
    assert along_first == pytest.approx(2.0 * projected[:, 0].std())
    along_second = (latents[0, 2] - latents[2, 2]) @ components[1]  # top row: positive second direction
    assert along_second == pytest.approx(2.0 * projected[:, 1].std())


# --- single figures --------------------------------------------------------------------

def test_training_curves_have_three_panels_with_training_and_dashed_validation_lines(tmp_path):
    _write_history(tmp_path / "history.csv", epochs=5)

    figure = plot_training_curves(tmp_path / "history.csv", tmp_path / "curves.png", dpi=SMALL_DPI)

    assert len(figure.axes) == 3
    for axes in figure.axes:
        lines = axes.get_lines()
        assert len(lines) == 2
        assert [line.get_linestyle() for line in lines] == ["-", "--"]
        assert lines[0].get_xdata().tolist() == [1, 2, 3, 4, 5]
        assert axes.get_yscale() == "log"
    assert [axes.get_title() for axes in figure.axes] == [
        "total loss", "reconstruction loss (MSE)", "KL divergence"]
    _assert_picture(tmp_path / "curves.png", figure)


def test_training_curves_leave_out_missing_columns(tmp_path):
    _write_history(tmp_path / "history.csv", columns=["epoch", "loss", "kl_loss"])

    figure = plot_training_curves(tmp_path / "history.csv")

    assert [axes.get_title() for axes in figure.axes] == ["total loss", "KL divergence"]
    assert all(len(axes.get_lines()) == 1 for axes in figure.axes)


def test_training_curves_use_a_linear_axis_when_values_are_not_positive(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,kl_loss\n1,2.0,0.0\n2,1.0,-0.1\n")
    figure = plot_training_curves(tmp_path / "history.csv")
    assert [axes.get_yscale() for axes in figure.axes] == ["log", "linear"]


def test_comparison_has_one_row_per_clip_titled_with_the_clip_names(project, tmp_path):
    figure = plot_comparison(project["originals"], project["reconstructed"], PARAMS)
    save_figure(figure, tmp_path / "comparison.png", dpi=SMALL_DPI)

    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles == ["original: kick_kick_000", "reconstructed: kick_kick_000",
                      "original: snare_snare_003", "reconstructed: snare_snare_003"]
    spectrogram_axes = [axes for axes in figure.axes if axes.get_title()]
    assert spectrogram_axes[-1].get_xlabel() == "time (s)"
    assert spectrogram_axes[0].get_ylabel() == "frequency (Hz)"
    assert len(figure.axes) == 5  # four spectrograms and one shared colour bar
    _assert_picture(tmp_path / "comparison.png", figure)


def test_generated_figure_shows_every_file_with_its_name(project, tmp_path):
    figure = plot_generated(project["generated"], PARAMS)
    save_figure(figure, tmp_path / "generated.png", dpi=SMALL_DPI)

    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles == ["generated_000", "generated_001", "generated_002"]
    _assert_picture(tmp_path / "generated.png", figure)


def test_latent_map_marks_held_out_clips_and_names_labels_and_variance():
    projected = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 1.0], [3.0, 0.0]])
    figure = plot_latent_map(projected, [0.7, 0.2], ["kick", "kick", "snare", "snare"],
                             np.array([False, True, False, True]))

    axes = figure.axes[0]
    assert "70.0%" in axes.get_xlabel() and "20.0%" in axes.get_ylabel()
    legend_texts = [text.get_text() for legend in axes.findobj(matplotlib.legend.Legend)
                    for text in legend.get_texts()]
    assert {"kick", "snare", "training clip", "held-out clip"} <= set(legend_texts)
    held_out_points = [collection for collection in axes.collections if len(collection.get_offsets())
                       and collection.get_offsets()[0].tolist() in ([1.0, 0.5], [3.0, 0.0])]
    assert len(held_out_points) == 2


# --- the script ------------------------------------------------------------------------

def test_main_writes_all_five_pictures(project, tmp_path, capsys):
    written = main(_arguments(project, tmp_path / "plots"))

    assert sorted(path.name for path in written) == sorted(FIGURE_NAMES)
    for name in FIGURE_NAMES:
        _assert_picture(tmp_path / "plots" / name)
    output = capsys.readouterr().out
    assert all(name in output for name in FIGURE_NAMES)


def test_missing_history_skips_only_the_training_curves(project, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(project["model_dir"], model_dir)
    (model_dir / "history.csv").unlink()

    written = main(_arguments(project, tmp_path / "plots", model_dir))

    assert "training_curves.png" not in [path.name for path in written]
    assert len(written) == 4
    skip_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipping")]
    assert len(skip_lines) == 1
    assert "training_curves.png" in skip_lines[0] and "history.csv" in skip_lines[0]


def test_nothing_to_plot_raises_a_pipeline_error_naming_train_py(tmp_path):
    arguments = [f"--model_dir={tmp_path / 'model'}", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
                 f"--output_dir={tmp_path / 'samples'}", f"--plots_dir={tmp_path / 'plots'}"]
    with pytest.raises(PipelineError, match="train.py"):
        main(arguments)
    assert not (tmp_path / "plots").exists()


def test_discriminant_directions_separate_classes_that_pca_mixes():
    from soundkit.latent_space import latent_discriminants, latent_pca

    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b", "c"], 100)
    means = rng.normal(0.0, 0.1, (300, 4))
    means[:, 0] += rng.normal(0.0, 5.0, 300)                 # a loud nuisance, like the speaker
    means[:, 2] += np.repeat([-1.0, 0.0, 1.0], 100)          # the classes, along a quiet direction
    pca, _, _ = latent_pca(means)
    lda, separation = latent_discriminants(means, list(groups))
    assert lda.shape == (300, 2) and separation[0] > 20 >= separation[1] * 20
    # Along LD 1 the three classes sit apart in order (either sign); along PC 1 they overlap.
    centres = np.array([lda[groups == g, 0].mean() for g in "abc"])
    spread = max(lda[groups == g, 0].std() for g in "abc")
    assert np.all(np.abs(np.diff(centres)) > 5 * spread)
    pca_centres = np.array([pca[groups == g, 0].mean() for g in "abc"])
    assert np.all(np.abs(np.diff(pca_centres)) < pca[:, 0].std())
    with pytest.raises(ValueError, match="at least 3 groups"):
        latent_discriminants(means[:200], list(groups[:200]))
