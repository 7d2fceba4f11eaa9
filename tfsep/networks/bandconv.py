"""`bandconv`: the fast one. The spectrum is split into mel-spaced bands, each projected to a small feature
vector; blocks of dilated depthwise convolutions over time and dense mixing across bands follow; a per-band
projection gives the masks back at full resolution."""

import numpy as np
import tensorflow as tf

from tfsep._keras import keras
from tfsep.networks.common import Network, Standardize

layers = keras.layers


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

    Args:
        edges: the bands' first bins and, last, the number of bins: band b is bins [edges[b], edges[b + 1]).
        features: values per band.

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

    Args:
        edges: the bands' bin edges, as `BandSplit`'s.
        channels, sources: the output's last two axes.

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


def receptive_field(options):
    """Frames on each side of a frame that its masks depend on: each block's dilated kernel adds its reach."""
    return options["kernel"] // 2 * (2 ** options["blocks"] - 1)


NETWORK = Network(
    build=bandconv,
    sizes={
        "tiny": {"bands": 8, "features": 8, "blocks": 2},
        "small": {"bands": 24, "features": 32, "blocks": 4},
        "base": {"bands": 32, "features": 64, "blocks": 6},
    },
    ranges={"bands": (1, 512), "features": (1, 1024), "blocks": (1, 12), "kernel": (1, 63)},
    receptive_field=receptive_field,
)
