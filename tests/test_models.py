"""The end-to-end model: shapes, dynamic length, reconstruction, training, saving."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf
from conftest import TINY

import tfsep
from tfsep import networks
from tfsep._keras import keras
from tfsep.models import (
    SeparationModel,
    build_model,
    chunk_model,
    describe,
    inference_model,
    reconfigure,
    spectrogram_model,
)

ARCHITECTURES = ["bandconv", "umx", "unet"]


def masked_mixture(mixture, masks, n_fft=TINY["n_fft"], hop=TINY["hop"]):
    """Stems iSTFT(M_k ⊙ X) in numpy, the reference for a model's own: M_k ⊙ |X| with the mixture's phase.

    X is the periodic-Hann STFT of the mixture zero-padded by n_fft // 2, frames every hop from its start;
    the inverse overlap-adds the windowed frames and divides by the summed squared window, then crops the
    padding. mixture (samples, channels), masks (frames, bins, channels, sources) -> (samples, channels, sources).
    """
    window = scipy.signal.get_window("hann", n_fft)
    samples, frames = len(mixture), len(masks)
    padded = np.pad(mixture, ((n_fft // 2, (frames - 1) * hop + n_fft // 2 - samples), (0, 0)))
    starts = np.arange(frames) * hop
    spectrum = np.fft.rfft(padded[starts[:, None] + np.arange(n_fft)] * window[:, None], axis=1)
    stem_frames = np.fft.irfft(masks * spectrum[..., None], n_fft, axis=1) * window[:, None, None]
    stems, window_sum = np.zeros((len(padded), *masks.shape[2:])), np.zeros(len(padded))
    for start, frame in zip(starts, stem_frames):
        stems[start:start + n_fft] += frame
        window_sum[start:start + n_fft] += window**2
    crop = slice(n_fft // 2, n_fft // 2 + samples)
    return stems[crop] / window_sum[crop, None, None]


@pytest.mark.smoke
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_stem_is_its_mask_on_the_mixture_spectrum_inverted_as_numpy_inverts_it(architecture, rng):
    model = build_model(architecture, **TINY)
    mixture = rng.uniform(-1, 1, (2, 1234, 2)).astype(np.float32)
    stems = model(mixture)
    assert sorted(stems) == sorted(tfsep.models.SOURCES)
    for stem in stems.values():
        assert stem.shape == mixture.shape and stem.dtype == tf.float32
    masks = spectrogram_model(model)(mixture)["masks"].numpy()
    assert masks.shape == (2, 1 + 1234 // 64 + 1, 129, 2, 4)
    assert 0.0 <= masks.min() and masks.max() <= 1.0
    for item in range(2):
        expected = masked_mixture(mixture[item].astype(np.float64), masks[item])
        for k, source in enumerate(model.sources):
            np.testing.assert_allclose(stems[source][item], expected[..., k], atol=1e-5, err_msg=source)


def test_one_graph_serves_every_length_with_the_numpy_reference_s_stems(rng):
    model = build_model("bandconv", **TINY)
    forward = tf.function(model).get_concrete_function(tf.TensorSpec((None, None, 2), tf.float32))
    for samples in [1, 63, 64, 65, 5000]:
        mixture = rng.uniform(-1, 1, (1, samples, 2)).astype(np.float32)
        stems = forward(tf.constant(mixture))
        masks = spectrogram_model(model)(mixture)["masks"].numpy()
        assert len(masks[0]) == 1 + -(-samples // 64)  # centred on 0, hop, ... to the first past the end
        expected = masked_mixture(mixture[0].astype(np.float64), masks[0])
        for k, source in enumerate(model.sources):
            np.testing.assert_allclose(stems[source][0], expected[..., k], atol=1e-5, err_msg=(samples, source))


@pytest.mark.smoke
@pytest.mark.parametrize("samples", [1, 100, 1023, 44100])
def test_single_softmax_source_reconstructs_the_mixture_end_to_end(samples, rng):
    """One source with softmax masks has M = 1 exactly, so the model must be the identity."""
    model = build_model("bandconv", sources=["all"], mask_activation="softmax", size="tiny")
    mixture = rng.uniform(-1, 1, (1, samples, 2)).astype(np.float32)
    assert np.abs(model(mixture)["all"].numpy() - mixture).max() <= 1e-5


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_softmax_stems_sum_to_the_mixture(architecture, rng):
    model = build_model(architecture, mask_activation="softmax", **TINY)
    mixture = rng.uniform(-1, 1, (1, 3000, 2)).astype(np.float32)
    total = sum(stem.numpy() for stem in model(mixture).values())
    assert np.abs(total - mixture).max() <= 1e-5


def test_spectrogram_part_gives_masked_magnitudes(rng):
    model = build_model("bandconv", bandwidth=1000.0, **TINY)
    parts = spectrogram_model(model)(rng.uniform(-1, 1, (2, 2000, 2)).astype(np.float32))
    magnitude, masks, stem_magnitudes = (parts[k].numpy() for k in ("magnitude", "masks", "stem_magnitudes"))
    assert masks.shape == (2, 1 + 2000 // 64 + 1, 129, 2, 4)
    assert 0.0 <= masks.min() and masks.max() <= 1.0
    np.testing.assert_allclose(stem_magnitudes, masks * magnitude[..., None], rtol=1e-6)
    # Above the 1 kHz cutoff (bin 33) the masks are the average over the processed bins.
    np.testing.assert_allclose(masks[:, :, 40], masks[:, :, :33].mean(2), atol=1e-6)


def test_config_holds_sources_rate_and_stft_settings():
    model = build_model("umx", sources=["voice", "piano"], hidden=8, **TINY)
    config = model.get_config()
    assert config["sources"] == ["voice", "piano"]
    assert (config["sample_rate"], config["n_fft"], config["hop"]) == (8000, 256, 64)
    assert config["network"] == {"hidden": 8}
    json.dumps(config)
    assert SeparationModel.from_config(config).count_params() == model.count_params()


@pytest.mark.parametrize(
    "options, match",
    [
        ({"sources": []}, "sources"),
        ({"sources": ["a", "a"]}, "distinct"),
        ({"sources": ["../x"]}, "source name"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"hop": 300}, "hop"),
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"mask_activation": "relu"}, "mask activation"),
        ({"wiener_iterations": -1}, "Wiener"),
        ({"hidden_size": 3}, "hidden_size"),
    ],
)
def test_bad_options_are_refused_with_the_key_named(options, match):
    with pytest.raises(ValueError, match=match):
        build_model("bandconv", **{**TINY, **options})


def toy_batch(rng, batch=8, samples=4000):
    """Two sources a mask can separate: low tones (< 500 Hz) and high tones (> 2 kHz)."""
    t = np.arange(samples) / 8000

    def tones(low, high):
        freqs = rng.uniform(low, high, (batch, 1, 3))
        phases = rng.uniform(0, 2 * np.pi, (batch, 1, 3))
        return 0.3 * np.sin(2 * np.pi * freqs * t[None, :, None] + phases).sum(-1)

    low = np.repeat(tones(100, 500)[..., None], 2, -1)
    high = np.repeat(tones(2000, 3500)[..., None], 2, -1)
    return (low + high).astype(np.float32), {"low": low.astype(np.float32), "high": high.astype(np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_fit_lowers_the_loss_and_every_weight_gets_a_gradient(architecture, rng):
    keras.utils.set_random_seed(1)
    model = build_model(architecture, sources=["low", "high"], **TINY)
    mixture, stems = toy_batch(rng)

    with tf.GradientTape() as tape:
        estimates = model(mixture, training=True)
        loss = sum(tf.reduce_mean(tf.abs(estimates[k] - stems[k])) for k in stems)
    gradients = tape.gradient(loss, model.trainable_weights)
    for weight, gradient in zip(model.trainable_weights, gradients):
        assert gradient is not None and np.abs(gradient.numpy()).max() > 0, weight.path

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={k: "mae" for k in stems})
    losses = model.fit(mixture, stems, batch_size=len(mixture), epochs=25, verbose=0).history["loss"]
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses


def test_mixed_precision_keeps_signal_path_and_outputs_float32(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("bandconv", **TINY)
        stems = model(rng.uniform(-1, 1, (1, 1000, 2)).astype(np.float32))
        assert model.get_layer("bandconv_split").compute_dtype == "float16"
        for name in ["stft", "masks", "apply_masks", "wiener", "istft"]:
            assert model.get_layer(name).compute_dtype == "float32"
        assert {stem.dtype for stem in stems.values()} == {tf.float32}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_reconfigure_switches_wiener_on_with_the_same_weights(rng):
    model = build_model("bandconv", **TINY)
    filtered = reconfigure(model, wiener_iterations=2)
    assert filtered.get_config()["wiener_iterations"] == 2
    for a, b in zip(model.get_weights(), filtered.get_weights()):
        np.testing.assert_array_equal(a, b)
    mixture = rng.uniform(-1, 1, (1, 3000, 2)).astype(np.float32)
    plain, refined = model(mixture), filtered(mixture)
    assert max(np.abs(plain[k].numpy() - refined[k].numpy()).max() for k in plain) > 1e-4


def test_griffin_lim_is_a_weightless_option_and_summed_chunks_refuse_it(rng):
    model = build_model("bandconv", **TINY)
    refined = reconfigure(model, griffin_lim_iterations=2)
    assert reconfigure(model, griffin_lim_iterations=None, wiener_iterations=0) is model
    assert refined.get_config()["griffin_lim_iterations"] == 2 and describe(refined)["griffin_lim_iterations"] == 2
    mixture = rng.uniform(-1, 1, (1, 3000, 2)).astype(np.float32)
    plain, phased = model(mixture), refined(mixture)
    assert max(np.abs(plain[k].numpy() - phased[k].numpy()).max() for k in plain) > 1e-4
    with pytest.raises(ValueError, match="whole signals"):
        chunk_model(refined)


def test_mixture_consistency_is_a_weightless_option_whose_stems_sum_to_the_mixture(rng):
    model = build_model("bandconv", **TINY)
    consistent = reconfigure(model, mixture_consistent=True)
    assert consistent.get_config()["mixture_consistent"] and describe(consistent)["mixture_consistent"]
    mixture = rng.uniform(-1, 1, (2, 3001, 2)).astype(np.float32)
    plain, summed = model(mixture), consistent(mixture)
    assert np.abs(sum(plain.values()).numpy() - mixture).max() > 1e-2  # sigmoid masks need not sum to one
    np.testing.assert_allclose(sum(summed.values()).numpy(), mixture, atol=1e-5)
    residual = (mixture - sum(plain.values()).numpy()) / len(plain)
    for source in plain:
        np.testing.assert_allclose(summed[source].numpy(), plain[source].numpy() + residual, atol=1e-5)
    with pytest.raises(ValueError, match="shares the residual of whole signals"):
        chunk_model(consistent)


def test_cpu_inference_form_of_umx_runs_compiled_lstms_with_the_same_weights_and_stems(rng):
    model = build_model("umx", sources=["vocals", "drums"], per_source=True, **TINY)
    for weight in model.weights:  # trained-looking weights, so that the LSTMs matter
        weight.assign(rng.normal(0, 0.3, weight.shape).astype(np.float32))
    cpu = inference_model(model, cpu=True)
    lstms = [layer for layer in cpu._flatten_layers() if isinstance(layer, networks.umx.FusedLSTM)]
    assert len(lstms) == 12 and all(layer.compiled for layer in lstms)  # 2 sources, 3 layers, 2 directions
    assert not any(isinstance(layer, networks.umx.FusedLSTM) for layer in inference_model(model)._flatten_layers())
    mixture = rng.uniform(-1, 1, (2, 9000, 2)).astype(np.float32)
    expected, stems = model(mixture), cpu(mixture)
    for source in expected:
        np.testing.assert_allclose(stems[source].numpy(), expected[source].numpy(), atol=1e-5)
    assert inference_model(build_model("bandconv", **TINY), cpu=True).get_config()["network"] == \
        build_model("bandconv", **TINY).get_config()["network"]  # no CPU form: unchanged


def test_inverse_fft_forms_give_the_same_stems_and_old_configs_take_the_signal_form(rng):
    model = build_model("bandconv", **TINY)
    builtin = reconfigure(model, inverse_fft="builtin")
    assert builtin.get_layer("istft").inverse_fft == "builtin" and model.get_layer("istft").inverse_fft == "signal"
    viewed = inference_model(model)
    assert [viewed.get_layer(name).bitcast for name in ("stft", "apply_masks")] == [True, True]
    assert viewed.get_layer("istft").inverse_fft == "bitcast" and inference_model(builtin) is builtin
    mixture = rng.uniform(-1, 1, (1, 3000, 2)).astype(np.float32)
    for form in (model, builtin, viewed):  # the summed-chunk form keeps the model's spectral form
        chunks = chunk_model(form)
        assert chunks.get_layer("istft_valid").inverse_fft == form.get_layer("istft").inverse_fft
        assert chunks.get_layer("stft_valid").bitcast == form.get_layer("stft").bitcast
    plain = model(mixture)
    for form in (builtin, viewed):
        rebuilt = form(mixture)
        assert max(np.abs(plain[k].numpy() - rebuilt[k].numpy()).max() for k in plain) <= 1e-6
    saved_before_the_option = {key: value for key, value in model.get_config().items() if key != "inverse_fft"}
    assert SeparationModel.from_config(saved_before_the_option).get_layer("istft").inverse_fft == "signal"


RELOAD_SCRIPT = """
import sys, numpy as np, tfsep
mixture = np.load(sys.argv[1])
for path in sys.argv[2:]:
    stems = tfsep.load_model(path).predict(mixture, verbose=0)
    np.savez(path + ".npz", **stems)
"""


@pytest.mark.slow
@pytest.mark.smoke
def test_saved_models_reload_in_a_fresh_process_with_identical_outputs(tmp_path, rng):
    mixture, _ = toy_batch(rng, batch=2)
    np.save(tmp_path / "mixture.npy", mixture)
    expected = {}
    for architecture in ARCHITECTURES:
        model = build_model(architecture, wiener_iterations=1, **TINY)
        # Move every weight, statistics and batch-norm averages included, off its initial value.
        for weight in model.weights:
            weight.assign(weight.numpy() + rng.uniform(0.1, 0.2, weight.shape).astype(np.float32))
        path = str(tmp_path / f"{architecture}.keras")
        model.save(path)
        expected[path] = model.predict(mixture, verbose=0)

    subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path / "mixture.npy"), *expected], check=True)
    for path, stems in expected.items():
        reloaded = np.load(path + ".npz")
        assert sorted(reloaded.files) == sorted(stems)
        for source in stems:
            np.testing.assert_array_equal(reloaded[source], stems[source])
