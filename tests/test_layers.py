"""The signal layers against numpy and scipy references written from the definitions."""

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from tfsep.framing import num_frames
from tfsep.layers import (
    INVERSE_FFTS,
    STFT,
    ApplyMasks,
    ExtendMasks,
    GriffinLim,
    InverseSTFT,
    Magnitude,
    MaskMagnitude,
    Masks,
    MixtureConsistency,
    PhaseReuse,
    RatioMasks,
    WienerFilter,
)


def as_complex(spectrum):
    spectrum = np.asarray(spectrum)
    return spectrum[..., 0] + 1j * spectrum[..., 1]


def numpy_stft(signal, n_fft, hop):
    """Centred STFT from the definition: (samples,) -> (frames, bins), frames = 1 + ceil(samples / hop)."""
    frames = 1 + -(-len(signal) // hop)
    padded = np.zeros((frames - 1) * hop + n_fft)
    padded[n_fft // 2 : n_fft // 2 + len(signal)] = signal
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return np.stack([np.fft.rfft(padded[t * hop : t * hop + n_fft] * window) for t in range(frames)])


def unit_mask_round_trip(waveform, n_fft, hop):
    """STFT -> |X| -> mask 1 -> phase reuse -> iSTFT, the model's own path with unit masks."""
    spectrum = STFT(n_fft, hop)(waveform)
    magnitude = Magnitude()(spectrum)
    ones = tf.ones_like(magnitude)[..., None]
    stems = PhaseReuse()([MaskMagnitude()([ones, magnitude]), spectrum])
    return InverseSTFT(n_fft, hop)([stems, waveform]).numpy()[..., 0]


@pytest.mark.smoke
@pytest.mark.parametrize("samples", [256, 1000, 4096])
@pytest.mark.parametrize("hop", [64, 128])
def test_stft_matches_scipy(samples, hop, rng):
    waveform = rng.standard_normal((2, samples, 2)).astype(np.float32)
    spectrum = as_complex(STFT(256, hop)(waveform))
    assert spectrum.shape == (2, num_frames(samples, hop), 129, 2)
    window = scipy.signal.get_window("hann", 256)
    for item in range(2):
        for channel in range(2):
            _, _, reference = scipy.signal.stft(
                waveform[item, :, channel], nperseg=256, noverlap=256 - hop, window=window,
                boundary="zeros", padded=True,
            )
            reference = reference.T * window.sum()  # scipy scales by 1 / sum(window)
            np.testing.assert_allclose(np.abs(spectrum[item, :, :, channel]), np.abs(reference), atol=2e-5)
            np.testing.assert_allclose(spectrum[item, :, :, channel], reference, atol=2e-5)


@pytest.mark.parametrize("bitcast", [False, True])
@pytest.mark.parametrize("samples", [1, 2, 100, 255])
def test_stft_of_short_signals_matches_definition(samples, bitcast, rng):
    waveform = rng.standard_normal((1, samples, 1)).astype(np.float32)
    spectrum = as_complex(STFT(256, 64, bitcast=bitcast)(waveform))[0, :, :, 0]
    np.testing.assert_allclose(spectrum, numpy_stft(waveform[0, :, 0], 256, 64), atol=2e-5)


def gradients(function, *inputs):
    """d sum(function(*inputs) · weights) / d inputs, for fixed random weights of the output's shape."""
    inputs = [tf.constant(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = function(*inputs)
        weights = tf.random.stateless_normal(tf.shape(output), seed=[1, 2])
        total = tf.reduce_sum(output * weights)
    return output.numpy(), [gradient.numpy() for gradient in tape.gradient(total, inputs)]


def test_bitcast_forms_give_the_same_values_and_gradients(rng):
    waveform = rng.standard_normal((2, 700, 2)).astype(np.float32)
    masks = rng.uniform(0, 1, (2, 12, 129, 2, 3)).astype(np.float32)
    for layer in ("stft", "masks", "istft"):
        forms = {}
        for bitcast in (False, True):
            if layer == "stft":
                function = STFT(256, 64, bitcast=bitcast)
                inputs = [waveform]
            elif layer == "masks":
                function = lambda m, x, a=ApplyMasks(bitcast): a([m, x])  # noqa: E731
                inputs = [masks, STFT(256, 64)(waveform).numpy()]
            else:
                inverse = InverseSTFT(256, 64, inverse_fft="bitcast" if bitcast else "signal")
                function = lambda x, i=inverse: i([x, waveform])  # noqa: E731
                inputs = [ApplyMasks()([masks, STFT(256, 64)(waveform)]).numpy()]
            forms[bitcast] = gradients(function, *inputs)
        (plain, plain_gradients), (viewed, viewed_gradients) = forms[False], forms[True]
        np.testing.assert_allclose(viewed, plain, atol=1e-6, err_msg=layer)
        for mine, reference in zip(viewed_gradients, plain_gradients):
            assert np.abs(reference).max() > 0
            np.testing.assert_allclose(mine, reference, atol=1e-5, err_msg=layer)
    assert STFT.from_config(STFT(256, 64, bitcast=True).get_config()).bitcast
    assert ApplyMasks.from_config(ApplyMasks(True).get_config()).bitcast
    assert GriffinLim(256, 64, inverse_fft="bitcast")._stft.bitcast


def test_stft_output_shape_is_documented():
    layer = STFT(256, 64)
    assert layer.compute_output_shape((None, None, 3)) == (None, None, 129, 3, 2)
    assert layer.compute_output_shape((4, 1000, 2)) == (4, 1 + 16, 129, 2, 2)
    assert tuple(layer(np.zeros((4, 1000, 2), np.float32)).shape) == (4, 17, 129, 2, 2)


@pytest.mark.smoke
@pytest.mark.parametrize("samples", [1, 100, 1023, 3 * 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_unit_masks_reconstruct_exactly(samples, channels, rng):
    waveform = rng.uniform(-1, 1, (1, samples, channels)).astype(np.float32)
    restored = unit_mask_round_trip(waveform, 4096, 1024)
    assert restored.shape == waveform.shape
    assert np.abs(restored - waveform).max() <= 1e-5


@pytest.mark.parametrize("inverse_fft", INVERSE_FFTS)
@pytest.mark.parametrize("samples", [1, 100, 1023, 1024, 5000])
def test_pad_end_framing_is_tf_signal_stft_after_n_fft_zeros(samples, inverse_fft, rng):
    waveform = rng.standard_normal((1, samples, 2)).astype(np.float32)
    spectrum = as_complex(STFT(256, 64, framing="pad_end")(waveform))
    led = np.concatenate([np.zeros((256, 2), np.float32), waveform[0]]).T
    reference = tf.signal.stft(led, 256, 64, window_fn=tf.signal.hann_window, pad_end=True).numpy()
    assert spectrum.shape[1] == num_frames(samples, 64, 256, "pad_end") == reference.shape[1]
    np.testing.assert_allclose(spectrum[0], reference.transpose(1, 2, 0), atol=2e-5)
    inverse = InverseSTFT(256, 64, framing="pad_end", inverse_fft=inverse_fft)
    restored = inverse([STFT(256, 64, framing="pad_end")(waveform), waveform])
    assert np.abs(restored.numpy() - waveform).max() <= 1e-5


@pytest.mark.parametrize("inverse_fft", INVERSE_FFTS)
@pytest.mark.parametrize("framing", ["center", "pad_end"])
def test_valid_chunks_on_the_frame_grid_sum_to_the_whole_inverse(framing, inverse_fft, rng):
    n_fft, hop, samples = 256, 64, 3000
    signal = rng.standard_normal(samples).astype(np.float32)
    pad = {"center": 128, "pad_end": 256}[framing]
    frames = num_frames(samples, hop, n_fft, framing)
    padded = np.zeros((frames - 1) * hop + n_fft, np.float32)
    padded[pad:pad + samples] = signal
    summed = np.zeros_like(padded)
    for first in range(0, frames, 7):  # chunks of 7 frames (the last fewer), each framed `valid`
        count = min(7, frames - first)
        chunk = padded[first * hop:first * hop + (count - 1) * hop + n_fft][None, :, None]
        spectrum = STFT(n_fft, hop, framing="valid")(chunk)
        assert spectrum.shape[1] == count
        inverse = InverseSTFT(n_fft, hop, framing="valid", inverse_fft=inverse_fft)
        summed[first * hop:first * hop + chunk.shape[1]] += inverse([spectrum, chunk]).numpy()[0, :, 0]
    middle = slice(pad + n_fft, pad + samples - n_fft)  # where every frame of the grid is present
    assert np.abs(summed[middle] - signal[n_fft:samples - n_fft]).max() <= 1e-5


def test_ratio_masks_follow_spleeters_formula(rng):
    masks = rng.uniform(size=(1, 5, 9, 2, 3)).astype(np.float32)
    magnitude = rng.uniform(size=(1, 5, 9, 2)).astype(np.float32)
    magnitude[0, 0] = 0.0  # a silent frame: every source gets 1 / 3
    ratio = RatioMasks(2.0)([masks, magnitude]).numpy()
    powers = (masks * magnitude[..., None]) ** 2
    expected = (powers + 1e-10 / 3) / (powers.sum(-1, keepdims=True) + 1e-10)
    np.testing.assert_allclose(ratio, expected, rtol=1e-6)
    np.testing.assert_allclose(ratio.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ratio[0, 0], 1 / 3, rtol=1e-6)
    underflowed = RatioMasks(2.0, eps=0.0)([masks, magnitude]).numpy()  # eps as a float16 export stores it
    np.testing.assert_allclose(underflowed[0, 0], 1 / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="exponent"):
        RatioMasks(0.0)


@pytest.mark.parametrize(
    "kwargs", [{"n_fft": 1000}, {"n_fft": 256, "hop": 129}, {"n_fft": 256, "hop": 0}, {"window": "triangle"},
               {"n_fft": 256, "hop": 64, "framing": "reflect"}]
)
def test_bad_stft_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        STFT(**kwargs)


def test_oracle_magnitudes_reproduce_scipy_ideal_ratio_mask_separation(rng):
    """Masks |Y_k| / |X| through tfsep's masking, phase reuse and iSTFT equal |Y_k| exp(j∠X) by scipy."""
    n_fft, hop, samples = 256, 64, 4000
    t = np.arange(samples) / 8000
    stems = np.stack(
        [0.5 * np.sin(2 * np.pi * 220 * t)[:, None] * np.ones(2), 0.3 * rng.standard_normal((samples, 2))], axis=-1
    ).astype(np.float32)  # (samples, channels, sources)
    mixture = stems.sum(-1)
    window = scipy.signal.get_window("hann", n_fft)
    options = {"nperseg": n_fft, "noverlap": n_fft - hop, "window": window, "boundary": "zeros", "padded": True}
    mix_spec = scipy.signal.stft(mixture.T, **options)[2]  # (channels, bins, frames)
    stem_specs = scipy.signal.stft(np.moveaxis(stems, -1, 0).transpose(0, 2, 1), **options)[2]
    reference_spec = np.abs(stem_specs) * np.exp(1j * np.angle(mix_spec))
    reference = scipy.signal.istft(reference_spec, nperseg=n_fft, noverlap=n_fft - hop, window=window)[1]
    reference = reference[..., :samples].transpose(2, 1, 0)  # (samples, channels, sources)

    waveform = mixture[None]
    spectrum = STFT(n_fft, hop)(waveform)
    magnitude = Magnitude()(spectrum).numpy()
    oracle_magnitudes = np.abs(stem_specs).transpose(3, 2, 1, 0)[None] * window.sum()  # scipy's 1/sum(window)
    masks = np.where(magnitude[..., None] > 0, oracle_magnitudes / np.maximum(magnitude[..., None], 1e-30), 0.0)
    stem_spectra = PhaseReuse()([MaskMagnitude()([masks.astype(np.float32), magnitude]), spectrum])
    estimates = InverseSTFT(n_fft, hop)([stem_spectra, waveform]).numpy()[0]
    np.testing.assert_allclose(estimates, reference, atol=1e-4)
    assert np.abs(estimates - stems).max() > 1e-2  # phase reuse is not the identity on overlapping sources


def test_phase_reuse_takes_angle_zero_where_mixture_is_silent():
    spectrum = np.zeros((1, 1, 2, 1, 2), np.float32)
    spectrum[0, 0, 1, 0] = [3.0, -4.0]
    magnitudes = np.full((1, 1, 2, 1, 1), 2.0, np.float32)
    out = as_complex(PhaseReuse()([magnitudes, spectrum]))[0, 0, :, 0, 0]
    np.testing.assert_allclose(out, [2.0, 2.0 * (3 - 4j) / 5], atol=1e-6)


def test_sigmoid_masks_in_unit_interval_and_softmax_masks_sum_to_one(rng):
    logits = (30 * rng.standard_normal((2, 5, 9, 2, 4))).astype(np.float32)
    sigmoid = Masks("sigmoid")(logits).numpy()
    assert sigmoid.min() >= 0.0 and sigmoid.max() <= 1.0
    softmax = Masks("softmax")(logits).numpy()
    assert softmax.min() >= 0.0
    np.testing.assert_allclose(softmax.sum(-1), 1.0, atol=1e-6)


def test_extend_masks_fills_bins_above_the_cutoff(rng):
    masks = rng.uniform(size=(2, 3, 5, 2, 4)).astype(np.float32)
    magnitude = np.zeros((2, 3, 9, 2), np.float32)
    for mode, fill in [
        ("average", masks.mean(2, keepdims=True)),
        ("edge", masks[:, :, -1:]),
        ("zeros", np.zeros_like(masks[:, :, -1:])),
    ]:
        extended = ExtendMasks(mode)([masks, magnitude]).numpy()
        assert extended.shape == (2, 3, 9, 2, 4)
        np.testing.assert_allclose(extended[:, :, :5], masks)
        np.testing.assert_allclose(extended[:, :, 5:], np.repeat(fill, 4, axis=2), atol=1e-6)


def numpy_wiener_step(y, x, eps=1e-10):
    """One multichannel Wiener EM step written from norbert's equations, one (t, f) at a time.

    y: (frames, bins, channels, sources) complex; x: (frames, bins, channels) complex.
    """
    frames, bins, channels, sources = y.shape
    v = np.mean(np.abs(y) ** 2, axis=2)  # (frames, bins, sources)
    R = np.zeros((bins, sources, channels, channels), complex)
    for f in range(bins):
        for j in range(sources):
            cov = sum(np.outer(y[t, f, :, j], y[t, f, :, j].conj()) for t in range(frames))
            R[f, j] = cov / (eps + v[:, f, j].sum())
    out = np.zeros_like(y)
    for t in range(frames):
        for f in range(bins):
            cxx = sum(v[t, f, j] * R[f, j] for j in range(sources))
            cxx += (np.sqrt(eps) + 1e-4 * np.trace(cxx).real / channels) * np.eye(channels)  # diagonal loading
            inverse = np.linalg.inv(cxx)
            for j in range(sources):
                out[t, f, :, j] = v[t, f, j] * R[f, j] @ inverse @ x[t, f]
    return out


def wiener_inputs(rng, channels, sources=3, frames=6, bins=5):
    x = rng.standard_normal((frames, bins, channels)) + 1j * rng.standard_normal((frames, bins, channels))
    masks = rng.uniform(0.05, 1.0, (frames, bins, channels, sources))
    masks /= masks.sum(-1, keepdims=True)
    y = masks * x[..., None]
    stack = lambda z: np.stack([z.real, z.imag], -1)[None].astype(np.float32)  # noqa: E731
    return x, y, stack(x), stack(y)


@pytest.mark.smoke
def test_mixture_consistency_shares_the_residual_evenly(rng):
    stems = rng.normal(size=(2, 300, 2, 4)).astype(np.float32)
    mixture = rng.normal(size=(2, 300, 2)).astype(np.float32)
    projected = MixtureConsistency()([stems, mixture]).numpy()
    np.testing.assert_allclose(projected, stems + (mixture - stems.sum(-1))[..., None] / 4, atol=1e-6)
    np.testing.assert_allclose(projected.sum(-1), mixture, atol=1e-5)
    np.testing.assert_array_equal(MixtureConsistency(False)([stems, mixture]).numpy(), stems)


def test_wiener_with_zero_iterations_is_soft_masking(rng):
    x, y, x_in, y_in = wiener_inputs(rng, channels=2)
    out = as_complex(WienerFilter(0)([y_in, x_in]))[0]
    np.testing.assert_allclose(out, y, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_wiener_one_iteration_matches_numpy_reference(channels, rng):
    x, y, x_in, y_in = wiener_inputs(rng, channels=channels)
    out = as_complex(WienerFilter(1)([y_in, x_in]))[0]
    reference = numpy_wiener_step(y, x)
    np.testing.assert_allclose(out, reference, rtol=1e-3, atol=1e-4)
    assert np.abs(reference - y).max() > 1e-2  # the step changed the estimates


def test_wiener_scales_loud_spectra_without_changing_the_result(rng):
    x, y, x_in, y_in = wiener_inputs(rng, channels=2)
    loud = as_complex(WienerFilter(1)([1000 * y_in, 1000 * x_in]))[0] / 1000
    np.testing.assert_allclose(loud, numpy_wiener_step(y, x), rtol=1e-3, atol=1e-4)


def numpy_istft(spectrum, n_fft, hop, samples):
    """Inverse of `numpy_stft` by weighted overlap-add divided by the summed squared window."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = len(spectrum)
    signal, weight = np.zeros((frames - 1) * hop + n_fft), np.zeros((frames - 1) * hop + n_fft)
    for t in range(frames):
        signal[t * hop: t * hop + n_fft] += np.fft.irfft(spectrum[t], n_fft) * window
        weight[t * hop: t * hop + n_fft] += window**2
    return (signal / np.maximum(weight, 1e-12))[n_fft // 2: n_fft // 2 + samples]


@pytest.mark.smoke
@pytest.mark.parametrize("inverse_fft", INVERSE_FFTS)
@pytest.mark.parametrize("samples", [1, 700, 2000])
def test_inverse_stft_of_any_spectrum_matches_numpy(samples, inverse_fft, rng):
    n_fft, hop = 256, 64
    frames = num_frames(samples, hop)
    spectrum = rng.normal(size=(frames, n_fft // 2 + 1, 2, 3)) + 1j * rng.normal(size=(frames, n_fft // 2 + 1, 2, 3))
    packed = np.stack([spectrum.real, spectrum.imag], -1)[None].astype(np.float32)  # Im ≠ 0 at DC and Nyquist too
    reference_input = np.zeros((1, samples, 2), np.float32)
    signal = InverseSTFT(n_fft, hop, inverse_fft=inverse_fft)([packed, reference_input]).numpy()[0]
    assert signal.shape == (samples, 2, 3)
    for channel in range(2):
        for source in range(3):
            expected = numpy_istft(spectrum[:, :, channel, source], n_fft, hop, samples)
            np.testing.assert_allclose(signal[:, channel, source], expected, atol=1e-5)


def test_inverse_fft_form_is_checked_and_kept_in_the_config():
    layer = InverseSTFT(256, 64, inverse_fft="builtin")
    assert InverseSTFT.from_config(layer.get_config()).inverse_fft == "builtin"
    griffin_lim = GriffinLim.from_config(GriffinLim(256, 64, inverse_fft="builtin").get_config())
    assert griffin_lim._istft.inverse_fft == "builtin"
    with pytest.raises(ValueError, match="inverse_fft must be one of"):
        InverseSTFT(256, 64, inverse_fft="fast")


def numpy_griffin_lim(spectrum, n_fft, hop, samples, iterations):
    """Griffin-Lim from the definition, started from `spectrum`'s phase, keeping its magnitude."""
    magnitude = np.abs(spectrum)
    for _ in range(iterations):
        rebuilt = numpy_stft(numpy_istft(spectrum, n_fft, hop, samples), n_fft, hop)
        spectrum = magnitude * np.exp(1j * np.angle(rebuilt))
    return spectrum


def test_griffin_lim_matches_the_definition_and_keeps_magnitudes(rng):
    samples, n_fft, hop = 2000, 256, 64
    waveform = rng.standard_normal((1, samples, 2)).astype(np.float32)
    spectrum = as_complex(STFT(n_fft, hop)(waveform))[0]  # (frames, bins, channels)
    masks = rng.uniform(0.0, 1.0, (*spectrum.shape, 3))  # three sources: masked, so no longer consistent
    stems = masks * spectrum[..., None]
    packed = np.stack([stems.real, stems.imag], -1)[None].astype(np.float32)
    refined = as_complex(GriffinLim(n_fft, hop, iterations=3)([packed, waveform]))[0]
    np.testing.assert_allclose(np.abs(refined), np.abs(stems), atol=1e-4)
    for channel in range(2):
        for source in range(3):
            reference = numpy_griffin_lim(stems[:, :, channel, source], n_fft, hop, samples, 3)
            np.testing.assert_allclose(refined[:, :, channel, source], reference, atol=2e-4)
    assert np.abs(refined - stems).max() > 0.1  # the phase moved


def test_griffin_lim_leaves_a_consistent_spectrum_and_zero_iterations_alone(rng):
    waveform = rng.standard_normal((2, 1500, 1)).astype(np.float32)
    spectrum = STFT(256, 64)(waveform)[..., None, :]  # one source: the signal itself, consistent
    np.testing.assert_allclose(GriffinLim(256, 64, iterations=2)([spectrum, waveform]), spectrum, atol=2e-4)
    assert GriffinLim(256, 64, iterations=0)([spectrum, waveform]) is spectrum
    with pytest.raises(ValueError, match="whole signals"):
        GriffinLim(256, 64, framing="valid", iterations=1)
    with pytest.raises(ValueError, match="integer from 0 to 32"):
        GriffinLim(256, 64, iterations=-1)
