"""evaluate.py: the figures it reports, on known inputs and on a tiny trained model."""

import json

import numpy as np
import pytest

from soundkit import folders
import evaluate


def test_log_spectral_distance_uses_each_clips_own_db_range():
    a = np.zeros((2, 4, 3))
    b = np.full((2, 4, 3), 0.1)
    lsd = evaluate.log_spectral_distance(a, b, minima=[-80.0, -40.0], maxima=[0.0, 0.0])
    np.testing.assert_allclose(lsd, [8.0, 4.0])  # 0.1 of an 80 dB and of a 40 dB range


def test_pairwise_rms_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 3, 2)), rng.random((4, 3, 2))
    expected = np.sqrt(((a.reshape(5, 1, -1) - b.reshape(1, 4, -1)) ** 2).mean(axis=2))
    np.testing.assert_allclose(evaluate.pairwise_rms(a, b, chunk=2), expected, atol=1e-9)
    assert np.allclose(np.diag(evaluate.pairwise_rms(a)), 0.0, atol=1e-6)


def test_nearest_neighbour_accuracy_is_one_for_separated_classes_and_low_for_shuffled_labels():
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (20, 3))])
    labels = ["a"] * 20 + ["b"] * 20
    assert evaluate.nearest_neighbour_accuracy(latents, labels) == 1.0
    shuffled = list(rng.permutation(labels))
    assert evaluate.nearest_neighbour_accuracy(latents, shuffled) < 0.8


@pytest.mark.slow
def test_evaluate_reports_every_figure_for_a_trained_model(tmp_path, labelled_project):
    root, _ = labelled_project
    results = evaluate.main([f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                             "--num_prior_samples=6", "--griffin_lim_iterations=16",
                             f"--evaluation_json={tmp_path / 'evaluation.json'}"])
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["held_out_clips"] == results["held_out_clips"] >= 1
    reconstruction = saved["reconstruction"]
    # Better than knowing nothing of the clip: the training clips' mean spectrogram in its place.
    spectrograms, clips, _ = folders.load_spectrograms(root / "spectrograms")
    held_out = set(json.loads((root / "model" / "training.json").read_text())["validation_ids"])
    rows = [i for i, clip in enumerate(clips) if clip["id"] in held_out]
    train = [i for i, clip in enumerate(clips) if clip["id"] not in held_out]
    held, mean = np.asarray(spectrograms[rows]), np.asarray(spectrograms[train]).mean(axis=0)
    guess_mse = float(np.mean((held - mean) ** 2))
    guess_lsd = float(np.mean(evaluate.log_spectral_distance(
        held, np.repeat(mean[None], len(held), axis=0), [clips[i]["min"] for i in rows], [clips[i]["max"] for i in rows])))
    assert 0 < reconstruction["normalised_mse"] < guess_mse
    assert 0 < reconstruction["log_spectral_distance_db"] < guess_lsd
    # Inverting the true spectrograms: far better than zero phase's ~-2 dB.
    assert saved["phase_reconstruction"]["spectral_convergence_db"] < -12
    # Labelled drums: the fitted per-class prior generate.py uses comes first, N(0, I) beside it.
    for key, name in (("prior_samples", "fitted"), ("standard_prior_samples", "standard")):
        prior = saved[key]
        assert prior["prior"] == name
        # Six different sounds, none an exact copy of a training clip.
        assert prior["count"] == 6 and prior["diversity_db"] > 0.5 and prior["nearest_training_clip_db_min"] > 0.5
    assert set(saved["seconds"]) >= {"reconstruct_held_out", "invert_true_spectrograms", "sample_fitted_prior",
                                     "sample_standard_prior"}


@pytest.mark.slow
def test_evaluate_scores_latent_labels_on_a_held_out_audio_folder(tmp_path, labelled_project):
    root, _ = labelled_project
    results = evaluate.main([f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                             f"--audio_dir={root / 'audio'}", "--num_prior_samples=4",
                             "--griffin_lim_iterations=4", f"--evaluation_json={tmp_path / 'evaluation.json'}"])
    assert results["held_out_clips"] == 20  # every file of the folder, preprocessed with the model's parameters
    assert results["label_classes"] == 5
    from autoencoder import VAE

    spectrograms, clips, _ = folders.load_spectrograms(root / "spectrograms")  # the same 20 files
    means, _ = VAE.load(root / "model" / "model.keras").encode(spectrograms)
    expected = evaluate.nearest_neighbour_accuracy(means, [clip["label"] for clip in clips])
    assert results["latent_1nn_label_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert results["chance_accuracy"] == pytest.approx(0.2)
