"""The Keras 3 VAE: shapes, losses, training, saving and loading."""

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
    vae.save(tmp_path / "model_dir")
    assert (tmp_path / "model_dir" / "model.keras").exists()
    loaded = VAE.load(tmp_path / "model_dir")
    x = blobs(4, seed=3)
    np.testing.assert_array_equal(vae.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.get_config()["latent_space_dim"] == 3


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
