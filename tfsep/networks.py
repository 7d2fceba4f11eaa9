"""Mask estimators, selectable by name and size.

Every network is a function `(magnitude, sources, bin_hz, **options) -> logits` that adds its
layers to a functional graph: it maps the band-limited mixture magnitude
(batch, frames, bins, channels) to mask logits (batch, frames, bins, channels, sources),
for any number of frames. `sources` are the source names and `bin_hz` the width of a
frequency bin in Hz.

- `umx`: Open-Unmix-like: dense encoder, three BiLSTM layers with a skip, dense decoder.
- `unet`: Spleeter-like 2-D convolutional U-Net (six levels, 5×5 kernels, stride 2), one per source.
- `bandconv`: the fast one. The spectrum is split into mel-spaced bands, each projected to a
  small feature vector; blocks of dilated depthwise convolutions over time and dense
  mixing across bands follow; a per-band projection gives the masks back at full resolution.
"""

import inspect

import numpy as np
import tensorflow as tf

from tfsep._keras import keras
from tfsep.layers import Float32Layer

layers = keras.layers


@keras.saving.register_keras_serializable(package="tfsep")
class Standardize(Float32Layer):
    """Per-bin input normalisation (x - mean) / scale, optionally of log(1 + x).

    `mean` and `scale` (shape (bins,)) are statistics, not trained: they start at 0 and 1
    and are set from the training data. Computed in float32 under any dtype policy.

    Input: magnitude (batch, frames, bins, channels). Output: same shape.
    """

    def __init__(self, log=False, **kwargs):
        super().__init__(**kwargs)
        self.log = log

    def build(self, input_shape):
        bins = input_shape[2]
        self.mean = self.add_weight(shape=(bins,), initializer="zeros", trainable=False, name="mean")
        self.scale = self.add_weight(shape=(bins,), initializer="ones", trainable=False, name="scale")

    def call(self, magnitude):
        if self.log:
            magnitude = tf.math.log1p(magnitude)
        return (magnitude - self.mean[:, None]) / self.scale[:, None]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "log": self.log}


def umx(magnitude, sources, bin_hz, *, hidden=512, lstm_layers=3, dropout=0.4):
    """Open-Unmix-like mask network for all sources at once (`bin_hz` is unused)."""
    _, _, bins, channels = magnitude.shape
    x = Standardize(name="input_standardize")(magnitude)
    x = layers.Reshape((-1, bins * channels), name="umx_flatten")(x)
    x = layers.Dense(hidden, use_bias=False, name="umx_fc1")(x)
    x = layers.BatchNormalization(name="umx_bn1")(x)
    skip = layers.Activation("tanh", name="umx_tanh")(x)
    x = skip
    for i in range(lstm_layers):
        if i > 0:
            x = layers.Dropout(dropout, name=f"umx_dropout{i}")(x)
        lstm = layers.LSTM(hidden // 2, return_sequences=True, name=f"umx_lstm{i + 1}")
        x = layers.Bidirectional(lstm, name=f"umx_bilstm{i + 1}")(x)
    x = layers.Concatenate(name="umx_skip")([skip, x])
    x = layers.Dense(hidden, use_bias=False, name="umx_fc2")(x)
    x = layers.BatchNormalization(name="umx_bn2")(x)
    x = layers.Activation("relu", name="umx_relu")(x)
    x = layers.Dense(bins * channels * len(sources), use_bias=False, name="umx_fc3")(x)
    x = layers.BatchNormalization(name="umx_bn3")(x)
    return layers.Reshape((-1, bins, channels, len(sources)), name="umx_logits")(x)


@keras.saving.register_keras_serializable(package="tfsep")
class PadToMultiple(layers.Layer):
    """Zero-pad frames and bins at their end up to a multiple of `multiple`: (batch, frames, bins, channels)."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, x):
        _, _, bins, channels = x.shape
        pad_frames = -tf.shape(x)[1] % self.multiple
        pad_bins = -tf.shape(x)[2] % self.multiple if bins is None else -bins % self.multiple
        padded = tf.pad(x, [[0, 0], [0, pad_frames], [0, pad_bins], [0, 0]])
        if bins is None or channels is None:
            return padded
        # Restate the static width and depth, which TFLite's builtin CONV_2D needs to see.
        return tf.reshape(padded, tf.concat([tf.shape(padded)[:2], [bins + pad_bins, channels]], 0))

    def compute_output_shape(self, input_shape):
        def padded(n):
            return None if n is None else n + (-n % self.multiple)

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="tfsep")
class CropLike(layers.Layer):
    """Crop frames and bins to a reference's: [x (batch, F, B, c), reference (batch, f, b, ...)] -> (batch, f, b, c)."""

    def call(self, inputs):
        x, reference = inputs
        shape = tf.shape(reference)
        return x[:, : shape[1], : shape[2]]

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def unet(magnitude, sources, bin_hz, *, filters=16):
    """Spleeter-like U-Net per source: 6 strided 5×5 conv levels with `filters`·2^i channels (`bin_hz` is unused)."""
    _, _, bins, channels = magnitude.shape
    x = Standardize(name="input_standardize")(magnitude)
    padded = PadToMultiple(2**6, name="unet_pad")(x)
    logits = []
    for name in sources:
        prefix = f"unet_{name}"
        encoded, skips = padded, []
        for level in range(6):
            conv = layers.Conv2D(filters * 2**level, 5, strides=2, padding="same", name=f"{prefix}_conv{level + 1}")
            skips.append(conv(encoded))
            if level < 5:
                encoded = layers.BatchNormalization(name=f"{prefix}_bn{level + 1}")(skips[-1])
                encoded = layers.LeakyReLU(0.2, name=f"{prefix}_lrelu{level + 1}")(encoded)
        decoded = skips.pop()
        for level in range(6):
            width = filters * 2 ** (4 - level) if level < 5 else 1
            decoded = layers.Conv2DTranspose(
                width, 5, strides=2, padding="same", activation="relu", name=f"{prefix}_deconv{level + 1}"
            )(decoded)
            decoded = layers.BatchNormalization(name=f"{prefix}_bn{level + 7}")(decoded)
            if level < 3:
                decoded = layers.Dropout(0.5, name=f"{prefix}_dropout{level + 1}")(decoded)
            if level < 5:
                decoded = layers.Concatenate(name=f"{prefix}_skip{level + 1}")([skips.pop(), decoded])
        out = layers.Conv2D(channels, 4, dilation_rate=2, padding="same", name=f"{prefix}_logits")(decoded)
        out = CropLike(name=f"{prefix}_crop")([out, magnitude])
        logits.append(layers.Reshape((-1, bins, channels, 1), name=f"{prefix}_expand")(out))
    if len(logits) == 1:
        return logits[0]
    return layers.Concatenate(axis=-1, name="unet_logits")(logits)


def band_edges(bins, bands, bin_hz):
    """Bin indices [0, ..., bins] cutting `bins` bins into `bands` bands equally spaced in mel, each ≥ 1 bin wide."""
    if not 1 <= bands <= bins:
        raise ValueError(f"bands must be in [1, {bins}] for {bins} bins, got {bands}")
    top = 2595.0 * np.log10(1.0 + bins * bin_hz / 700.0)
    hz = 700.0 * (10.0 ** (np.linspace(0.0, top, bands + 1) / 2595.0) - 1.0)
    edges = [0]
    for i, edge in enumerate(np.round(hz / bin_hz).astype(int)[1:-1], start=1):
        edges.append(int(min(max(edge, edges[-1] + 1), bins - (bands - i))))
    return edges + [bins]


@keras.saving.register_keras_serializable(package="tfsep")
class BandSplit(layers.Layer):
    """Project each band of bins (all channels) to `features` values.

    Input: (batch, frames, bins, channels). Output: (batch, frames, bands, features).
    """

    def __init__(self, edges, features, **kwargs):
        super().__init__(**kwargs)
        self.edges = [int(e) for e in edges]
        self.features = features

    def build(self, input_shape):
        channels = input_shape[3]
        self.kernels, self.biases = [], []
        for band, (start, stop) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            fan_in = (stop - start) * channels
            self.kernels.append(self.add_weight(shape=(fan_in, self.features), name=f"kernel{band}"))
            self.biases.append(self.add_weight(shape=(self.features,), initializer="zeros", name=f"bias{band}"))

    def call(self, x):
        shape = tf.shape(x)
        channels = x.shape[3]
        outputs = []
        for start, stop, kernel, bias in zip(self.edges[:-1], self.edges[1:], self.kernels, self.biases):
            band = tf.reshape(x[:, :, start:stop], [shape[0], shape[1], (stop - start) * channels])
            outputs.append(tf.matmul(band, kernel) + bias)
        return tf.stack(outputs, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], len(self.edges) - 1, self.features)

    def get_config(self):
        return {**super().get_config(), "edges": self.edges, "features": self.features}


@keras.saving.register_keras_serializable(package="tfsep")
class BandMerge(layers.Layer):
    """Per-band projection back to every bin, channel and source.

    Input: (batch, frames, bands, features). Output: (batch, frames, bins, channels, sources).
    """

    def __init__(self, edges, channels, sources, **kwargs):
        super().__init__(**kwargs)
        self.edges = [int(e) for e in edges]
        self.channels = channels
        self.sources = sources

    def build(self, input_shape):
        features = input_shape[3]
        self.kernels, self.biases = [], []
        for band, (start, stop) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            fan_out = (stop - start) * self.channels * self.sources
            self.kernels.append(self.add_weight(shape=(features, fan_out), name=f"kernel{band}"))
            self.biases.append(self.add_weight(shape=(fan_out,), initializer="zeros", name=f"bias{band}"))

    def call(self, x):
        shape = tf.shape(x)
        outputs = []
        for band, (start, stop) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            projected = tf.matmul(x[:, :, band], self.kernels[band]) + self.biases[band]
            outputs.append(tf.reshape(projected, [shape[0], shape[1], stop - start, self.channels, self.sources]))
        return tf.concat(outputs, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.edges[-1], self.channels, self.sources)

    def get_config(self):
        config = {"edges": self.edges, "channels": self.channels, "sources": self.sources}
        return {**super().get_config(), **config}


def bandconv(magnitude, sources, bin_hz, *, bands=32, features=64, blocks=6, kernel=3):
    """Band-split temporal convolution network; block i dilates its time kernel by 2^i."""
    _, _, bins, channels = magnitude.shape
    edges = band_edges(bins, bands, bin_hz)
    x = Standardize(log=True, name="input_standardize")(magnitude)
    x = BandSplit(edges, features, name="bandconv_split")(x)
    for i in range(blocks):
        name = f"bandconv_block{i + 1}"
        h = layers.LayerNormalization(name=f"{name}_time_norm")(x)
        h = layers.DepthwiseConv2D((kernel, 1), dilation_rate=(2**i, 1), padding="same", name=f"{name}_time_conv")(h)
        h = layers.Dense(2 * features, activation="relu", name=f"{name}_expand")(h)
        h = layers.Dense(features, name=f"{name}_project")(h)
        x = layers.Add(name=f"{name}_time_residual")([x, h])
        h = layers.LayerNormalization(name=f"{name}_band_norm")(x)
        h = layers.Permute((1, 3, 2), name=f"{name}_to_bands")(h)
        h = layers.Dense(bands, name=f"{name}_band_mix")(h)
        h = layers.Permute((1, 3, 2), name=f"{name}_from_bands")(h)
        x = layers.Add(name=f"{name}_band_residual")([x, h])
    x = layers.LayerNormalization(name="bandconv_head_norm")(x)
    return BandMerge(edges, channels, len(sources), name="bandconv_merge")(x)


NETWORKS = {"umx": umx, "unet": unet, "bandconv": bandconv}

SIZES = {
    "umx": {"tiny": {"hidden": 16}, "small": {"hidden": 128}, "base": {"hidden": 512}},
    "unet": {"tiny": {"filters": 2}, "small": {"filters": 8}, "base": {"filters": 16}},
    "bandconv": {
        "tiny": {"bands": 8, "features": 8, "blocks": 2},
        "small": {"bands": 24, "features": 32, "blocks": 4},
        "base": {"bands": 32, "features": 64, "blocks": 6},
    },
}


def network_options(architecture, size="base", options=None):
    """The keyword options of network `architecture` at preset `size`, updated by `options`.

    Raises ValueError naming the architecture, size or option that is unknown.
    """
    if architecture not in NETWORKS:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(NETWORKS)}")
    if size not in SIZES[architecture]:
        raise ValueError(f"unknown size {size!r} for {architecture!r}; choose one of {sorted(SIZES[architecture])}")
    signature = inspect.signature(NETWORKS[architecture])
    known = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for architecture {architecture!r}; known options: {known}")
    return {**SIZES[architecture][size], **(options or {})}


def receptive_field(architecture, options):
    """Frames on each side of a frame that its masks depend on, given the network's `options`; None where
    that reach is unbounded (umx's recurrences) or the network is not shift-equivariant in time (unet's
    strided levels), so that no finite context reproduces whole-signal results exactly."""
    if architecture != "bandconv":
        return None
    defaults = {p.name: p.default for p in inspect.signature(bandconv).parameters.values() if p.kind is p.KEYWORD_ONLY}
    options = {**defaults, **options}
    return options["kernel"] // 2 * (2 ** options["blocks"] - 1)
