"""The Keras 3 VAE: shapes, losses, training, saving and loading."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from autoencoder import VAE

TINY = dict(conv_filters=[4, 8], conv_kernels=[3, 3], conv_strides=[2, 2], latent_space_dim=3)


def tiny_vae(input_shape=(32, 16, 1), **overrides):
    vae = VAE(input_shape, **{**TINY, **overrides}, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    return vae


def blobs(count=16, shape=(32, 16), seed=0):
    """Spectrogram-like images: one bright horizontal band whose row varies."""
    rng = np.random.default_rng(seed)
    images = np.full((count, *shape, 1), 0.1, dtype=np.float32)
    for image, row in zip(images, rng.integers(2, shape[0] - 2, count)):
        image[row - 1:row + 2, :, 0] = 0.9
    return images


def test_encoder_and_decoder_have_the_tutorial_shapes():
    vae = tiny_vae()
    mean, log_variance = vae.encode(np.zeros((2, 32, 16)))
    assert mean.shape == log_variance.shape == (2, 3)
    decoded = vae.decode(np.zeros((2, 3)))
    assert decoded.shape == (2, 32, 16, 1)
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0  # sigmoid output, like the normalised data


def test_shapes_that_strides_do_not_divide_are_padded_and_cropped_back():
    vae = tiny_vae(input_shape=(33, 15, 1))
    assert vae.padded_shape == (36, 16)
    assert vae.predict(np.zeros((1, 33, 15, 1)), verbose=0).shape == (1, 33, 15, 1)


def test_tutorial_architecture_has_its_known_parameter_count():
    vae = VAE((256, 64, 1), [512, 256, 128, 64, 32], [3] * 5, [2, 2, 2, 2, (2, 1)], 128,
              decoder_filters=[32, 64, 128, 256])
    transposes = [layer for layer in vae.decoder.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [layer.filters for layer in transposes] == [32, 64, 128, 256, 1]
    assert vae.encoder.output_shape[0] == (None, 128)
    assert vae.encoder.count_params() + vae.decoder.count_params() == 2_371_777  # the tutorial's ~2.37 M


def test_default_decoder_mirrors_the_encoder_resolution_by_resolution():
    vae = VAE((64, 32, 1), [8, 16, 32], [3] * 3, [2] * 3, 4)
    transposes = [layer for layer in vae.decoder.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [layer.filters for layer in transposes] == [16, 8, 1]
    assert [tuple(layer.output.shape[1:3]) for layer in transposes] == [(16, 8), (32, 16), (64, 32)]


def test_loss_is_weighted_mse_plus_kl():
    vae = tiny_vae(reconstruction_loss_weight=1000.0, kl_weight=0.5)
    x = blobs(4)
    total, reconstruction, kl = (float(v) for v in vae.compute_losses(x, None, training=False))
    assert reconstruction > 0 and kl >= 0
    assert total == pytest.approx(1000.0 * reconstruction + 0.5 * kl, rel=1e-5)


def test_training_lowers_the_reconstruction_loss():
    vae = tiny_vae()
    x = blobs(32)
    history = vae.fit(x, epochs=25, batch_size=8, verbose=0).history
    assert set(history) == {"loss", "reconstruction_loss", "kl_loss"}
    assert history["reconstruction_loss"][-1] < 0.5 * history["reconstruction_loss"][0]


def test_saved_model_loads_and_predicts_identically(tmp_path):
    vae = tiny_vae()
    vae.fit(blobs(16), epochs=2, batch_size=8, verbose=0)
    vae.save(tmp_path / "model.keras")
    loaded = VAE.load(tmp_path / "model.keras")
    x = blobs(4, seed=3)
    np.testing.assert_array_equal(vae.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.get_config()["latent_space_dim"] == 3


def test_keras_builds_the_vae_and_compile_builds_its_optimizer():
    vae = tiny_vae(latent_classes=2, latent_classifier_weight=1.0)
    assert vae.built and vae.get_build_config() == {"input_shape": (None, 32, 16, 1)}
    assert vae.latent_classifier.built
    assert vae.optimizer.built and len(vae.optimizer.variables) > 2 * len(vae.trainable_variables)  # Adam's two each
    with pytest.raises(ValueError, match="computes its own loss"):
        vae.compile(optimizer="adam", loss="mse")


def test_fit_under_a_strategy_reads_no_batch_to_build_the_model():
    # Keras' symbolic build would start one more pass over the data (and under MultiWorkerMirroredStrategy
    # fail to average its batch, keras-team/keras#20585): a pass here is a start of the generator.
    import tensorflow as tf

    passes = []

    def batches():
        passes.append(len(passes))
        yield from (blobs(8, seed=seed) for seed in range(2))

    dataset = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec((None, 32, 16, 1), tf.float32))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(2))
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        vae = tiny_vae()
    vae.fit(dataset, epochs=2, verbose=0, shuffle=False)
    assert passes == [0, 1]


def test_prior_samples_are_deterministic_for_a_seed():
    vae = tiny_vae()
    first, latents = vae.sample(3, seed=7)
    second, _ = vae.sample(3, seed=7)
    third, _ = vae.sample(3, seed=8)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, third)
    assert latents.shape == (3, 3)


def test_conditional_vae_needs_labels_and_uses_them():
    vae = tiny_vae(num_classes=2)
    with pytest.raises(ValueError, match="conditional"):
        vae.decode(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"labels must be in 0..1"):
        vae.decode(np.zeros((1, 3)), labels=[5])
    x, labels = blobs(16), np.array([[i % 2] for i in range(16)])
    vae.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    as_zero = vae.decode(np.zeros((1, 3)), labels=[0])
    as_one = vae.decode(np.zeros((1, 3)), labels=[1])
    assert not np.allclose(as_zero, as_one)


def test_mismatched_layer_lists_are_refused():
    with pytest.raises(ValueError, match="equal length"):
        VAE((32, 16, 1), [4, 8], [3], [2, 2], 3)


def test_a_huge_log_variance_cannot_overflow_the_loss():
    vae = tiny_vae()
    log_variance_layer = vae.encoder.get_layer("log_variance")
    kernel, bias = log_variance_layer.get_weights()
    log_variance_layer.set_weights([kernel * 0, bias * 0 + 500.0])  # exp(500) overflows float32
    losses = [float(value) for value in vae.compute_losses(blobs(4), None, training=True)]
    assert all(np.isfinite(losses)), losses


def test_latent_classifier_adds_its_weighted_cross_entropy():
    vae = tiny_vae(reconstruction_loss_weight=1000.0, kl_weight=0.5, latent_classes=2, latent_classifier_weight=3.0)
    x, labels = blobs(4), np.array([[0], [1], [0], [1]])
    total, reconstruction, kl, label = (float(v) for v in vae.compute_losses(x, labels, training=False))
    assert 0.0 < label < 5.0  # a cross-entropy over two classes, from an untrained classifier
    assert total == pytest.approx(1000.0 * reconstruction + 0.5 * kl + 3.0 * label, rel=1e-5)
    assert [m.name for m in vae.metrics] == ["loss", "reconstruction_loss", "kl_loss", "label_loss"]
    with pytest.raises(ValueError, match="latent classifier: pass"):
        vae.fit(x, epochs=1, verbose=0)


def test_latent_classifier_learns_the_labels_and_survives_saving(tmp_path):
    keras.utils.set_random_seed(0)  # weights start the same whatever ran before
    vae = tiny_vae(latent_classes=2, latent_classifier_weight=10.0)
    x = blobs(32)
    bright_row = x[:, :, 0, 0].argmax(axis=1)
    labels = (bright_row >= 16).astype("int32").reshape(-1, 1)  # band in the lower or upper half
    # Enough steps for batch normalisation's moving statistics to catch up (classify uses them).
    history = vae.fit(x, labels, epochs=40, batch_size=4, verbose=0).history
    assert history["label_loss"][-1] < 0.5 * history["label_loss"][0]
    probabilities = vae.classify(x)
    assert probabilities.shape == (32, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(probabilities.argmax(axis=1) == labels[:, 0]) >= 0.9
    means, _ = vae.encode(x)
    np.testing.assert_allclose(vae.classify_latents(means), probabilities, rtol=1e-5, atol=1e-6)
    vae.save(tmp_path / "model.keras")
    loaded = VAE.load(tmp_path / "model.keras")
    assert loaded.latent_classes == 2 and loaded.latent_classifier_weight == 10.0
    np.testing.assert_allclose(loaded.classify(x), probabilities, rtol=1e-5, atol=1e-6)
    # Unconditional: the decoder needs no label.
    assert loaded.decode(np.zeros((1, 3))).shape == (1, 32, 16, 1)


def test_a_vae_without_a_latent_classifier_cannot_classify_and_conditional_cannot_have_one():
    with pytest.raises(ValueError, match="no latent classifier"):
        tiny_vae().classify(blobs(2))
    with pytest.raises(ValueError, match="conditional VAE .* cannot also have a latent classifier"):
        tiny_vae(num_classes=2, latent_classes=2)


# --- the fitted latent prior ----------------------------------------------------------------

def two_clusters(count=400, seed=0):
    rng = np.random.default_rng(seed)
    latents = np.concatenate([rng.normal([3.0, 0.0], [0.5, 0.1], (count, 2)),
                              rng.normal([-3.0, 1.0], [0.1, 0.5], (count, 2))])
    return latents, np.repeat([0, 1], count)


def test_latent_prior_fits_one_gaussian_per_class_and_samples_the_requested_one():
    from soundkit.latent_space import LatentPrior

    latents, labels = two_clusters()
    prior = LatentPrior.fit(latents, labels, ["kick", "snare"])
    assert prior.classes == ["kick", "snare"] and prior.counts == [400, 400]
    np.testing.assert_allclose(prior.means, [[3.0, 0.0], [-3.0, 1.0]], atol=0.1)
    snares = prior.sample(4000, labels=[1], rng=np.random.default_rng(1))
    assert snares.dtype == np.float32 and snares.shape == (4000, 2)
    np.testing.assert_allclose(snares.mean(axis=0), [-3.0, 1.0], atol=0.1)
    # Its own spread, slightly shrunk towards that of all clips (2 dims / (2 + 400 clips)).
    assert 0.09 < snares[:, 0].std() < 0.25 and 0.45 < snares[:, 1].std() < 0.6
    either = prior.sample(10, rng=np.random.default_rng(1))
    assert np.all((either[::2, 0] > 0) & (either[1::2, 0] < 0))  # every class in turn
    with pytest.raises(ValueError, match=r"labels must be in 0..1"):
        prior.sample(1, labels=[2])


def test_a_class_with_one_clip_is_not_copied_and_json_round_trips():
    from soundkit.latent_space import KERNEL_WIDTH, LatentPrior

    latents, labels = two_clusters()
    latents, labels = np.concatenate([latents, [[0.0, 9.0]]]), np.append(labels, 2)
    prior = LatentPrior.fit(latents, labels, ["kick", "snare", "clap"])
    prior.kernel_width = 0.0   # the Gaussians
    claps = prior.sample(500, labels=[2], rng=np.random.default_rng(0))
    # Not the single clip again, and not the spread of all clips either (that would reach the other
    # classes): the spread of clips around their own class mean, pooled (stds 0.36 and 0.36 here).
    assert np.all(claps.std(axis=0) > 0.2) and np.all(claps.std(axis=0) < 0.5)
    np.testing.assert_allclose(claps.mean(axis=0), [0.0, 9.0], atol=0.1)
    prior.kernel_width = KERNEL_WIDTH   # near the clip, by that share of the pooled spread (it has no neighbours)
    claps = prior.sample(500, labels=[2], rng=np.random.default_rng(0))
    np.testing.assert_allclose(claps.std(axis=0), KERNEL_WIDTH * 0.36, rtol=0.2)
    np.testing.assert_allclose(claps.mean(axis=0), [0.0, 9.0], atol=0.05)
    restored = LatentPrior.from_json(json.loads(json.dumps(prior.to_json())))
    np.testing.assert_array_equal(restored.sample(5, rng=np.random.default_rng(3)),
                                  prior.sample(5, rng=np.random.default_rng(3)))
    one = LatentPrior.fit(latents)  # no labels: one Gaussian over every clip
    assert one.classes == [] and len(one.means) == 1


def test_the_kernel_prior_keeps_the_kinds_of_a_class_where_its_gaussian_blends_them():
    """Closed and open hi-hats in one class: new ones near either kind, not halfway between."""
    from soundkit.latent_space import KERNEL_WIDTH, LatentPrior

    rng = np.random.default_rng(0)
    kinds = np.concatenate([rng.normal([-2.0, 0.0], 0.3, (50, 2)), rng.normal([2.0, 0.0], 0.3, (50, 2))])
    prior = LatentPrior.fit(kinds, np.zeros(100, dtype=int), ["hihat"])
    assert prior.kernel_width == KERNEL_WIDTH > 0
    near = prior.sample(2000, labels=[0], rng=np.random.default_rng(1))
    prior.kernel_width = 0.0
    blended = prior.sample(2000, labels=[0], rng=np.random.default_rng(1))
    assert np.mean(np.abs(near[:, 0]) < 1.0) < 0.02       # between the kinds: the kernel draws hardly any
    assert np.mean(np.abs(blended[:, 0]) < 1.0) > 0.3     # the one Gaussian, many
    assert 0.4 < np.mean(near[:, 0] > 0) < 0.6            # both kinds, about equally
    old = {key: value for key, value in prior.to_json().items() if key not in ("members", "member_classes", "pooled")}
    old["format_version"] = 1                             # a prior saved before the clips were kept
    assert LatentPrior.from_json(old).members is None
    assert np.mean(np.abs(LatentPrior.from_json(old).sample(500, labels=[0])[:, 0]) < 1.0) > 0.3


def test_the_spread_cap_keeps_the_new_sounds_of_a_lone_clip_near_it():
    """A clip far from the rest of its class has far neighbours; moved by their spread, its new sounds would land
    where no clip lies. Capped at the class's median spread, they stay by it."""
    from soundkit.latent_space import SPREAD_CAP, LatentPrior

    rng = np.random.default_rng(0)
    lone = np.array([5.0, 0.0])
    latents = np.concatenate([rng.normal(0.0, 0.1, (20, 2)), [lone]])
    prior = LatentPrior.fit(latents, np.zeros(21, dtype=int), ["snare"])
    prior.kernel_width = 1.0
    assert prior.spread_cap == SPREAD_CAP > 0
    assert prior.relative_spreads[-1] > 100 and np.median(prior.relative_spreads) == pytest.approx(1.0)

    def stray_share(samples):  # farther than 1 from both the cluster and the lone clip
        return np.mean((np.linalg.norm(samples, axis=1) > 1.0) & (np.linalg.norm(samples - lone, axis=1) > 1.0))

    capped = prior.sample(4000, labels=[0], rng=np.random.default_rng(1))
    near_lone = np.linalg.norm(capped - lone, axis=1) < 1.0
    assert stray_share(capped) == 0.0 and 0.02 < np.mean(near_lone) < 0.08  # 1 clip in 21 starts them
    assert np.max(np.linalg.norm(capped[near_lone] - lone, axis=1)) < 0.5
    prior.spread_cap = 0.0   # no cap: the lone clip's new sounds scatter over the 5 units to its neighbours
    assert stray_share(prior.sample(4000, labels=[0], rng=np.random.default_rng(1))) > 0.03


def test_sampling_an_unconditional_vae_from_a_fitted_prior_decodes_those_latents():
    from soundkit.latent_space import LatentPrior

    vae = tiny_vae()
    prior = LatentPrior.fit(np.random.default_rng(0).normal(5.0, 0.01, (50, 3)))
    samples, latents = vae.sample(4, seed=2, prior=prior)
    np.testing.assert_allclose(latents, 5.0, atol=0.1)
    np.testing.assert_allclose(samples, vae.decode(latents), rtol=1e-5, atol=1e-6)


def test_a_latent_prior_refuses_nan_latents_whatever_the_lapack_build():
    from soundkit.latent_space import LatentPrior

    latents = np.random.default_rng(0).normal(size=(10, 3))
    latents[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 of 10 latent means are NaN or infinite"):
        LatentPrior.fit(latents, np.zeros(10, dtype=int), ["kick"])
    with pytest.raises(ValueError, match="finite means and covariances"):
        LatentPrior([], [1], [[0.0, np.inf, 0.0]], [np.eye(3)])


def test_without_normalisation_layers_inference_mode_is_training_mode():
    """Batch normalisation's running statistics lag behind with few steps per epoch; the default has none."""
    vae = tiny_vae(normalization="none")
    spectrograms = np.random.default_rng(0).random((4, 32, 16, 1)).astype("float32")
    trained_mean, _ = vae.encoder(spectrograms, training=True)
    inference_mean, _ = vae.encoder(spectrograms, training=False)
    np.testing.assert_array_equal(np.asarray(trained_mean), np.asarray(inference_mean))
    names = [layer.__class__.__name__ for layer in vae.encoder.layers + vae.decoder.layers]
    assert "BatchNormalization" not in names
    assert "BatchNormalization" in [layer.__class__.__name__ for layer in tiny_vae(normalization="batch").encoder.layers]
    with pytest.raises(ValueError, match="normalization must be one of batch, group, none, got 'layer'"):
        tiny_vae(normalization="layer")


# --- the Keras backend ------------------------------------------------------------

PROJECT_DIR = Path(__file__).resolve().parents[1]


def run_python(code, **environment):
    """Run ``python -c code`` in the project with ``environment`` changed (a value None removes the variable)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR), **environment}
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT_DIR, env=env)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_another_keras_backend_is_refused_in_one_line_that_says_how_to_fix_it(backend):
    # As a script shows it (configurator.run_script); jax and torch are not even installed.
    result = run_python("from soundkit.configurator import run_script; run_script(lambda: __import__('autoencoder'))",
                        KERAS_BACKEND=backend)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: this project trains with the TensorFlow backend of Keras; "
                                     f"KERAS_BACKEND is {backend!r}: unset it or set KERAS_BACKEND=tensorflow")


def test_the_backend_is_refused_before_keras_tries_to_load_it():
    result = run_python("import autoencoder", KERAS_BACKEND="jax")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith("KERAS_BACKEND is 'jax': unset it or set "
                                                            "KERAS_BACKEND=tensorflow")
    assert "No module named" not in result.stderr


def test_a_keras_json_that_names_another_backend_does_not_apply_to_this_project(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    result = run_python("import autoencoder, keras; print(keras.backend.backend())",
                        KERAS_HOME=str(tmp_path), KERAS_BACKEND=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["tensorflow"]


@pytest.mark.parametrize("upsampling,lowest,highest", [("transpose", 5.0, None), ("bilinear", None, 2.0)])
def test_a_transposed_decoder_leaves_a_checkerboard_and_upsampling_then_convolving_does_not(
        upsampling, lowest, highest, tmp_path):
    """Untrained, the stride-2 transposed convolutions ripple every 2 bins (21x the neighbouring periods
    here); bilinear upsampling then a convolution stays at the ~1 of a real spectrogram. Saved and loaded,
    the model keeps its upsampling."""
    from soundkit.realism import frequency_ripple

    keras.utils.set_random_seed(0)
    vae = VAE((64, 32, 1), [8, 16, 32], [3, 3, 3], [2, 2, 2], 4, upsampling=upsampling, normalization="none", seed=0)
    decoded = np.asarray(vae.decode(np.random.default_rng(0).standard_normal((16, 4)).astype("float32")))[..., 0]
    ripple = frequency_ripple(decoded, min_level=0.0)[2]
    assert (lowest is None or ripple > lowest) and (highest is None or ripple < highest)
    vae.save(tmp_path / "model.keras")
    loaded = VAE.load(tmp_path / "model.keras")
    assert loaded.upsampling == upsampling
    np.testing.assert_allclose(np.asarray(loaded.decode(np.zeros((1, 4), "float32"))),
                               np.asarray(vae.decode(np.zeros((1, 4), "float32"))), atol=1e-6)


def test_a_model_file_with_code_in_it_is_refused_not_run(tmp_path):
    """Safe mode: a .keras file whose Lambda layer carries Python code is refused, and the code never runs."""
    from soundkit.errors import PipelineError
    from soundkit.folders import load_model_folder

    marker = tmp_path / "ran.txt"
    inputs = keras.Input(shape=(2,))
    code = eval(f"lambda x: x + len(open({str(marker)!r}, 'w').write('ran'))")  # no closure: its bytecode is saved
    outputs = keras.layers.Lambda(code, output_shape=(2,))(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "evil.keras")
    marker.unlink(missing_ok=True)  # building the model called the lambda once
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        VAE.load(tmp_path / "evil.keras")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.keras").write_bytes((tmp_path / "evil.keras").read_bytes())
    (folder / "params.json").write_text("{}")
    (folder / "training.json").write_text(json.dumps({"format_version": 2, "classes": []}))
    with pytest.raises(PipelineError, match="cannot load .*model.keras"):
        load_model_folder(folder)
    assert not marker.exists()


def test_an_attack_head_adds_to_the_first_frames_only_and_survives_saving(tmp_path):
    vae = tiny_vae(attack_frames=3)
    latents = np.random.default_rng(0).standard_normal((2, 3))
    before = vae.decode(latents)
    head = vae.decoder.get_layer("attack_output")
    kernel, bias = head.get_weights()
    assert not kernel.any() and not bias.any()      # at first the head adds nothing
    head.set_weights([np.zeros_like(kernel), np.linspace(-2, 2, bias.size).astype("float32")])
    after = vae.decode(latents)
    assert after.shape == (2, 32, 16, 1)

    def logit(p):
        return np.log(p / (1 - p))

    added = logit(after.astype(np.float64)) - logit(before.astype(np.float64))
    np.testing.assert_allclose(added[0, :, :3, 0], np.linspace(-2, 2, bias.size).reshape(32, 3), atol=1e-3)
    np.testing.assert_allclose(added[1, :, :3, 0], np.linspace(-2, 2, bias.size).reshape(32, 3), atol=1e-3)
    np.testing.assert_array_equal(after[:, :, 3:], before[:, :, 3:])
    vae.save(tmp_path / "model.keras")
    loaded = VAE.load(tmp_path / "model.keras")
    assert loaded.attack_frames == 3
    np.testing.assert_array_equal(loaded.decode(np.ones((1, 3))), vae.decode(np.ones((1, 3))))
    with pytest.raises(ValueError, match="attack_frames must be between 0 and 15, got 16"):
        tiny_vae(attack_frames=16)
