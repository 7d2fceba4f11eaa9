"""Mask networks: shapes and reach at any number of frames, bands, option checking, and the fused LSTM."""

import numpy as np
import pytest
import tensorflow as tf

from tfsep import networks
from tfsep._keras import keras


@pytest.mark.parametrize("architecture", sorted(networks.NETWORKS))
@pytest.mark.parametrize("frames", [1, 7, 70])
def test_a_frame_s_logits_depend_on_its_own_item_within_the_network_s_reach(architecture, frames):
    """Changing frame t changes the logits of frames t ± receptive_field and no others; where the reach is
    unbounded (None: umx's recurrences, unet's 64-frame levels) every frame of these inputs. Another item of
    the batch changes nothing."""
    # Seeded: with some initial weights, a change 35 frames away through umx's tiny BiLSTMs is below 1e-6.
    keras.utils.set_random_seed(frames)
    magnitude = keras.Input((None, 40, 2))
    options = networks.network_options(architecture, "tiny")
    logits = networks.network(architecture).build(magnitude, ("a", "b", "c"), 31.25, **options)
    assert tuple(logits.shape) == (None, None, 40, 2, 3)
    model = keras.Model(magnitude, logits)
    rng = np.random.default_rng(0)
    batch = rng.uniform(size=(2, frames, 40, 2)).astype(np.float32)
    out = model(batch).numpy()
    assert out.shape == (2, frames, 40, 2, 3)
    assert np.isfinite(out).all()

    other_item = batch.copy()
    other_item[1] = rng.uniform(size=other_item[1].shape)
    np.testing.assert_allclose(model(other_item).numpy()[0], out[0], atol=1e-6)

    t, reach = frames // 2, networks.receptive_field(architecture, options)
    one_frame = batch.copy()
    one_frame[:, t] = rng.uniform(size=one_frame[:, t].shape)
    changed = np.abs(model(one_frame).numpy() - out).max(axis=(2, 3, 4)) > 1e-6  # (items, frames)
    reached = np.abs(np.arange(frames) - t) <= (frames if reach is None else reach)
    np.testing.assert_array_equal(changed, [reached, reached])


def test_unet_segments_are_independent_and_activations_are_chosen(rng=np.random.default_rng(2)):
    magnitude = keras.Input((None, 64, 2))
    logits = networks.unet.unet(magnitude, ("a", "b"), 31.25, filters=2, segment=64, conv_activation="elu",
                           deconv_activation="leaky_relu")
    model = keras.Model(magnitude, logits)
    assert isinstance(model.get_layer("unet_a_act1"), keras.layers.Activation)
    assert isinstance(model.get_layer("unet_b_deconv_act3"), keras.layers.LeakyReLU)
    x = rng.uniform(size=(1, 150, 64, 2)).astype(np.float32)
    changed = x.copy()
    changed[:, 140:] = 0.0  # only the third segment (frames 128-191, zero-padded past 150) changes
    out, out_changed = model(x).numpy(), model(changed).numpy()
    assert out.shape == (1, 150, 64, 2, 2)
    np.testing.assert_array_equal(out[:, :128], out_changed[:, :128])
    assert np.abs(out[:, 128:] - out_changed[:, 128:]).max() > 1e-4
    alone = model(x[:, 64:128]).numpy()  # a segment on its own computes what it computes among the others
    np.testing.assert_allclose(alone, out[:, 64:128], atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 64"):
        networks.unet.unet(magnitude, ("a",), 31.25, segment=100)
    with pytest.raises(ValueError, match="activation"):
        networks.unet.unet(magnitude, ("a",), 31.25, conv_activation="gelu")


@pytest.mark.parametrize("bins, bands", [(1487, 32), (129, 8), (10, 10), (5, 1)])
def test_band_edges_cover_every_bin_once_narrow_at_low_frequencies(bins, bands):
    edges = networks.bandconv.band_edges(bins, bands, 44100 / 4096)
    assert edges[0] == 0 and edges[-1] == bins and len(edges) == bands + 1
    widths = np.diff(edges)
    assert widths.min() >= 1
    assert widths[0] <= widths[-1]


def test_band_edges_refuse_more_bands_than_bins():
    with pytest.raises(ValueError, match="bands"):
        networks.bandconv.band_edges(4, 5, 10.0)


def test_network_options_merge_presets_and_name_unknown_keys():
    assert networks.network_options("umx", "small", {"dropout": 0.1}) == {"hidden": 128, "dropout": 0.1}
    with pytest.raises(ValueError, match="'hiden'"):
        networks.network_options("umx", "base", {"hiden": 3})
    with pytest.raises(ValueError, match="unknown architecture"):
        networks.network_options("transformer")
    with pytest.raises(ValueError, match="unknown size"):
        networks.network_options("unet", "huge")


@pytest.mark.parametrize("go_backwards", [False, True])
def test_fused_lstm_computes_what_a_stock_lstm_with_the_same_weights_does(go_backwards):
    x = np.random.default_rng(1).normal(size=(3, 17, 6)).astype(np.float32)
    stock = keras.layers.LSTM(5, return_sequences=True, go_backwards=go_backwards)
    fused = networks.umx.FusedLSTM(5, go_backwards=go_backwards)
    expected = stock(x).numpy()
    fused.build(x.shape)
    assert [(w.name, w.shape) for w in fused.weights] == [(w.name, w.shape) for w in stock.weights]
    fused.set_weights(stock.get_weights())
    np.testing.assert_allclose(fused(x).numpy(), expected, atol=1e-5)  # eager
    graph = tf.function(fused).get_concrete_function(tf.TensorSpec((None, None, 6)))
    for batch, frames in [(3, 17), (1, 1), (2, 40)]:
        sequences = np.random.default_rng(frames).normal(size=(batch, frames, 6)).astype(np.float32)
        np.testing.assert_allclose(graph(tf.constant(sequences)).numpy(), stock(sequences).numpy(), atol=1e-5)

    weights = tf.constant(np.random.default_rng(2).normal(size=expected.shape).astype(np.float32))
    gradients = []
    for layer in (stock, fused):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.function(layer)(x) * weights)
        gradients.append(tape.gradient(loss, layer.trainable_weights))
    for stock_gradient, fused_gradient in zip(*gradients):
        np.testing.assert_allclose(fused_gradient.numpy(), stock_gradient.numpy(), atol=1e-5)

    compiled = networks.umx.FusedLSTM(5, go_backwards=go_backwards, compiled=True)
    compiled.build(x.shape)
    compiled.set_weights(stock.get_weights())
    np.testing.assert_allclose(compiled(x).numpy(), expected, atol=1e-5)
    graph = tf.function(compiled).get_concrete_function(tf.TensorSpec((None, None, 6)))
    for batch, frames in [(1, 1), (2, 40)]:
        sequences = np.random.default_rng(frames).normal(size=(batch, frames, 6)).astype(np.float32)
        np.testing.assert_allclose(graph(tf.constant(sequences)).numpy(), stock(sequences).numpy(), atol=1e-5)


def test_bidirectional_fused_lstm_round_trips_through_a_keras_file(tmp_path):
    inputs = keras.Input((None, 4))
    outputs = keras.layers.Bidirectional(networks.umx.FusedLSTM(3, name="lstm"), name="bilstm")(inputs)
    model = keras.Model(inputs, outputs)
    for weight in model.weights:
        weight.assign(np.random.default_rng(0).normal(size=weight.shape).astype(np.float32))
    model.save(tmp_path / "bilstm.keras")
    loaded = keras.saving.load_model(tmp_path / "bilstm.keras", safe_mode=True)
    backward = loaded.get_layer("bilstm").backward_layer
    assert isinstance(backward, networks.umx.FusedLSTM) and backward.go_backwards
    x = np.random.default_rng(1).normal(size=(2, 9, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())

    stock = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))
    stock.build((None, None, 4))
    stock.set_weights(model.get_weights())
    np.testing.assert_allclose(model(x).numpy(), stock(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("lstm", ["keras", "fused"])
def test_umx_keeps_each_lstm_alive_until_its_network_is_built(lstm, monkeypatch):
    """keras.layers.Bidirectional copies its LSTM by serialising it, and inside keras.saving.load_model Keras
    shares serialised objects by id(): a cell freed during the build could lend its id to a later one, and saved
    umx models failed to load about one time in ten. A collection before each copy frees no earlier cell."""
    import gc
    import weakref

    built = []
    init = keras.layers.Bidirectional.__init__

    def collect_first(self, layer, *args, **kwargs):
        gc.collect()
        assert all(cell() is not None for cell in built), "an earlier LSTM was freed while the network was built"
        built.append(weakref.ref(layer))
        init(self, layer, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Bidirectional, "__init__", collect_first)
    networks.umx.umx(keras.Input((None, 20, 2)), ("a", "b"), 31.25, hidden=8, lstm_layers=2, lstm=lstm,
                     per_source=True)
    assert len(built) == 4


def test_fused_lstm_computes_in_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = keras.layers.Bidirectional(networks.umx.FusedLSTM(3))
        outputs = layer(np.ones((1, 5, 4), np.float16))
        assert layer.forward_layer.compute_dtype == layer.backward_layer.compute_dtype == "float32"
        assert layer.forward_layer.kernel.dtype == "float32" and np.isfinite(outputs.numpy()).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")
