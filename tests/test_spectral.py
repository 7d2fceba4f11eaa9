"""The spectral helpers against numpy written from their definitions."""

import numpy as np
import pytest
import tensorflow as tf

from tfsep import spectral


@pytest.mark.smoke
def test_power_and_magnitude_of_real_and_imaginary_parts(rng):
    spectrum = rng.normal(size=(2, 3, 5)) + 1j * rng.normal(size=(2, 3, 5))
    parts = tf.constant(np.stack([spectrum.real, spectrum.imag], -1), tf.float32)
    np.testing.assert_allclose(spectral.power(parts).numpy(), np.abs(spectrum) ** 2, rtol=1e-6)
    np.testing.assert_allclose(spectral.magnitude(parts).numpy(), np.abs(spectrum), rtol=1e-6)
    assert spectral.magnitude(parts, keepdims=True).shape == (2, 3, 5, 1)


@pytest.mark.smoke
@pytest.mark.parametrize("n_fft", [2, 8, 256])
def test_builtin_irfft_matches_numpy_for_any_spectrum(n_fft, rng):
    spectrum = rng.normal(size=(3, 5, n_fft // 2 + 1)) + 1j * rng.normal(size=(3, 5, n_fft // 2 + 1))
    signal = spectral.irfft(tf.constant(np.stack([spectrum.real, spectrum.imag], -1), tf.float32), n_fft).numpy()
    np.testing.assert_allclose(signal, np.fft.irfft(spectrum, n_fft), atol=1e-6)


@pytest.mark.smoke
@pytest.mark.parametrize("length, hop", [(8, 2), (8, 3), (256, 64), (256, 100), (5, 5)])
def test_overlap_add_and_its_gradient_match_numpy(length, hop, rng):
    frames = rng.normal(size=(2, 3, 7, length)).astype(np.float32)
    upstream = rng.normal(size=(2, 3, 6 * hop + length)).astype(np.float32)
    expected = np.zeros((2, 3, 6 * hop + length), np.float32)
    for t in range(7):
        expected[..., t * hop : t * hop + length] += frames[..., t, :]
    framed = np.stack([upstream[..., t * hop : t * hop + length] for t in range(7)], axis=-2)  # the adjoint
    frames = tf.constant(frames)
    with tf.GradientTape() as tape:
        tape.watch(frames)
        signal = spectral.overlap_add(frames, hop)
        total = tf.reduce_sum(signal * upstream)
    np.testing.assert_allclose(signal.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(total, frames).numpy(), framed, atol=1e-6)
