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
import uuid

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

    Args:
        log: standardise log(1 + x) instead of x.

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


# The extra input feature of a separator frame (see `FusedLSTM`): times the kernel's reset row
# it puts -1e4 or less on the input and forget gates, whose sigmoids are then exactly 0.
SEPARATOR = 1e6


def lstm_recurrence(sequences, kernel, recurrent_kernel, bias):
    """The recurrence of `keras.layers.LSTM` (tanh, sigmoid, gates i, f, c, o) from zero states.

    sequences (batch, frames, features), kernel (features, 4·units), recurrent_kernel
    (units, 4·units), bias (4·units,). Returns the hidden and cell states, each
    (frames, batch, units).
    """
    steps = tf.transpose(sequences, [1, 0, 2])
    # The input projection of every frame at once; only the recurrent product stays in the loop.
    projected = tf.matmul(steps, kernel) + bias
    zeros = tf.zeros_like(projected[0, :, : recurrent_kernel.shape[0]])

    def step(state, frame):
        h, c = state
        i, f, g, o = tf.split(frame + tf.matmul(h, recurrent_kernel), 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    return tf.scan(step, projected, initializer=(zeros, zeros))


def standard_lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
    """An LSTM over folded sequences, with the interface of Keras 2's `standard_lstm`.

    inputs (1, batch·(frames + 1), features + 1): the sequences folded by `fold_sequences`;
    init_h, init_c (1, units); kernel (features + 1, 4·units), its last row the reset row;
    recurrent_kernel (units, 4·units); bias (4·units,). Returns last_output (1, units),
    outputs (1, batch·(frames + 1), units), new_h, new_c (1, units) and a scalar, in Keras
    2's order: the function that the TFLite converter replaces by one
    UNIDIRECTIONAL_SEQUENCE_LSTM over the folded sequence, where each separator frame
    restarts the states from zeros (so init_h and init_c do not matter). Here the sequences
    are unfolded and run as a batch, which gives the same numbers and trains as fast.
    """
    features, units = kernel.shape[0] - 1, recurrent_kernel.shape[0]
    batch = tf.math.count_nonzero(inputs[0, :, features], dtype=tf.int32)  # one separator per sequence
    sequences = tf.reshape(inputs, [batch, -1, features + 1])[:, 1:, :features]
    hs, cs = lstm_recurrence(sequences, kernel[:features], recurrent_kernel, bias)
    outputs = tf.pad(tf.transpose(hs, [1, 0, 2]), [[0, 0], [1, 0], [0, 0]])  # a separator's output is h = 0
    outputs = tf.reshape(outputs, [1, -1, units])
    # The last result is Keras 2's "runtime" flag (1: CPU); the converter expects five.
    return outputs[:, -1], outputs, outputs[:, -1], cs[-1, -1:], tf.constant(1.0)


def fold_sequences(sequences):
    """(batch, frames, features) -> (1, batch·(frames + 1), features + 1): the sequences one after another.

    Each sequence is preceded by a separator frame, which is 0 in every feature but an
    extra last one, SEPARATOR; that feature is 0 in the sequences' own frames.
    """
    features = sequences.shape[-1]
    separators = tf.pad(tf.fill([tf.shape(sequences)[0], 1, 1], SEPARATOR), [[0, 0], [0, 0], [features, 0]])
    folded = tf.concat([separators, tf.pad(sequences, [[0, 0], [0, 0], [0, 1]])], axis=1)
    return tf.reshape(folded, [1, -1, features + 1])


@keras.saving.register_keras_serializable(package="tfsep")
class FusedLSTM(Float32Layer):
    """`keras.layers.LSTM(units, return_sequences=True)` that converts to TFLite's fused LSTM builtin.

    Same weights as a stock LSTM (`kernel`, `recurrent_kernel`, `bias`, same shapes and
    initialisers, so they load one to one), the same outputs from zero initial states, and
    float32 under any dtype policy. In a traced graph the recurrence is a tf.function with
    the attributes Keras 2 put on its LSTM (`api_implements="lstm_<id>"`, `time_major`),
    which the TFLite converter replaces by UNIDIRECTIONAL_SEQUENCE_LSTM. That op keeps its
    states in variables whose shape, hence batch, is fixed in the file; so the batch is
    folded into time, (1, batch·(frames + 1), features + 1), each sequence after a separator
    frame that resets the states: with the reset row appended to the kernel, the separator
    closes the input and forget gates, so the cell and hidden states are exactly 0 after it.
    Any batch and any number of frames then run in one file, and no state carries over
    from one invocation to the next. The reset row holds minus each gate's largest weight
    magnitude, which keeps the gates' weight range, hence their int8 quantisation scales.

    `go_backwards` reads the frames last to first and returns the outputs in that order, as
    Keras does; with the class attributes below, `keras.layers.Bidirectional` accepts it.

    Input: (batch, frames, features). Output: (batch, frames, units).
    """

    return_sequences = True
    return_state = False
    stateful = False

    def __init__(self, units, go_backwards=False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.go_backwards = go_backwards

    def build(self, input_shape):
        units = self.units

        def bias_initializer(shape, dtype=None):  # unit forget bias, as keras.layers.LSTM
            return tf.concat([tf.zeros([units], dtype), tf.ones([units], dtype), tf.zeros([2 * units], dtype)], 0)

        self.kernel = self.add_weight(shape=(input_shape[-1], 4 * units), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(units, 4 * units), initializer="orthogonal",
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * units,), initializer=bias_initializer, name="bias")

    def call(self, sequences, initial_state=None):
        if initial_state is not None:  # keras.layers.Bidirectional passes None
            raise ValueError(f"{self.name}: FusedLSTM starts from zero states; it takes no initial_state")
        if self.go_backwards:
            sequences = tf.reverse(sequences, [1])
        lstm = standard_lstm
        if not tf.executing_eagerly():
            # A fresh function and id per trace, as Keras 2 did: the converter fuses each
            # function by its `api_implements`, so two traces must not share one.
            attributes = {"api_implements": f"lstm_{uuid.uuid4()}", "api_preferred_device": "CPU", "time_major": False}
            lstm = tf.function(standard_lstm, experimental_attributes=attributes)
        zeros = tf.zeros([1, self.units])
        weights = [self._reset_kernel(), tf.convert_to_tensor(self.recurrent_kernel), tf.convert_to_tensor(self.bias)]
        outputs = lstm(fold_sequences(sequences), zeros, zeros, *weights)[1]
        shape = tf.shape(sequences)
        return tf.reshape(outputs, [shape[0], shape[1] + 1, self.units])[:, 1:]

    def _reset_kernel(self):
        """The kernel (features + 1, 4·units) and a reset row: -max|kernel| of the input and forget gates, else 0."""
        kernel = tf.convert_to_tensor(self.kernel)
        gate_max = tf.reduce_max(tf.abs(tf.reshape(kernel, [-1, 4, self.units])), axis=[0, 2])
        # The floor keeps SEPARATOR times the row saturating for near-zero kernels.
        reset = -tf.maximum(gate_max, 1e-2) * tf.constant([1.0, 1.0, 0.0, 0.0])
        return tf.concat([kernel, tf.stop_gradient(tf.repeat(reset, self.units))[None]], axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "go_backwards": self.go_backwards}


def umx(magnitude, sources, bin_hz, *, hidden=512, lstm_layers=3, dropout=0.4, lstm="keras"):
    """Open-Unmix-like mask network for all sources at once (`bin_hz` is unused).

    lstm: `keras` (keras.layers.LSTM, cuDNN on a GPU) for training, or `fused` (`FusedLSTM`,
    the same weights one to one), which TFLite converts to its fused LSTM builtin; the TFLite
    export switches to it.
    """
    if lstm not in ("keras", "fused"):
        raise ValueError(f"umx option lstm must be 'keras' or 'fused', got {lstm!r}")
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
        if lstm == "fused":
            cell = FusedLSTM(hidden // 2, name=f"umx_lstm{i + 1}")
        else:
            cell = layers.LSTM(hidden // 2, return_sequences=True, name=f"umx_lstm{i + 1}")
        x = layers.Bidirectional(cell, name=f"umx_bilstm{i + 1}")(x)
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


ACTIVATIONS = ("leaky_relu", "relu", "elu")


def _activation(kind, name):
    """A Keras activation layer: `leaky_relu` (slope 0.2, as Spleeter), `relu` or `elu`."""
    if kind not in ACTIVATIONS:
        raise ValueError(f"unet activation must be one of {ACTIVATIONS}, got {kind!r}")
    if kind == "leaky_relu":
        return layers.LeakyReLU(0.2, name=name)
    return layers.Activation(kind, name=name)


@keras.saving.register_keras_serializable(package="tfsep")
class SplitSegments(layers.Layer):
    """Cut the frames into independent segments of `frames` frames, the last one zero-padded.

    Args:
        frames: frames per segment (Spleeter's T = 512).

    Input: (batch, total, bins, channels). Output: (batch · ceil(total / frames), frames, bins, channels).
    """

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = frames

    def call(self, x):
        _, _, bins, channels = x.shape
        padded = tf.pad(x, [[0, 0], [0, -tf.shape(x)[1] % self.frames], [0, 0], [0, 0]])
        return tf.reshape(padded, [-1, self.frames, bins, channels])

    def compute_output_shape(self, input_shape):
        return (None, self.frames, *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "frames": self.frames}


@keras.saving.register_keras_serializable(package="tfsep")
class JoinSegments(layers.Layer):
    """Undo `SplitSegments`: [segments (batch · n, frames, bins, c), reference (batch, total, ...)] ->
    (batch, total, bins, c)."""

    def call(self, inputs):
        segments, reference = inputs
        bins, channels = segments.shape[2:]
        batch, total = tf.shape(reference)[0], tf.shape(reference)[1]
        return tf.reshape(segments, [batch, -1, bins, channels])[:, :total]

    def compute_output_shape(self, input_shape):
        segments_shape, reference_shape = input_shape
        return (reference_shape[0], reference_shape[1], *segments_shape[2:])


def unet(magnitude, sources, bin_hz, *, filters=16, conv_activation="leaky_relu", deconv_activation="relu",
         segment=None):
    """Spleeter-like U-Net per source: 6 strided 5×5 conv levels with `filters`·2^i channels (`bin_hz` is unused).

    Encoder level: conv -> batch norm -> `conv_activation`; the decoder starts from the 6th
    convolution's raw output, and each level is transposed conv -> `deconv_activation` ->
    batch norm (-> dropout 0.5 on the first three), joined to the raw output of the
    matching convolution. A 4×4 convolution with dilation 2 gives one logit per channel.

    segment: None to run on every frame at once (frames and bins zero-padded to a multiple
    of 64 and cropped back), or a number of frames (a multiple of 64): the frames are cut
    into independent segments of that length, the last one zero-padded, as Spleeter cuts
    them (512); each frame's logits then depend only on the frames of its own segment.
    """
    _, _, bins, channels = magnitude.shape
    if segment is not None and (not isinstance(segment, int) or segment < 64 or segment % 64):
        raise ValueError(f"unet option segment must be None or a multiple of 64 frames, got {segment!r}")
    x = Standardize(name="input_standardize")(magnitude)
    if segment is not None:
        x = SplitSegments(segment, name="unet_segments")(x)
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
                encoded = _activation(conv_activation, f"{prefix}_act{level + 1}")(encoded)
        decoded = skips.pop()
        for level in range(6):
            width = filters * 2 ** (4 - level) if level < 5 else 1
            decoded = layers.Conv2DTranspose(width, 5, strides=2, padding="same",
                                             name=f"{prefix}_deconv{level + 1}")(decoded)
            decoded = _activation(deconv_activation, f"{prefix}_deconv_act{level + 1}")(decoded)
            decoded = layers.BatchNormalization(name=f"{prefix}_bn{level + 7}")(decoded)
            if level < 3:
                decoded = layers.Dropout(0.5, name=f"{prefix}_dropout{level + 1}")(decoded)
            if level < 5:
                decoded = layers.Concatenate(name=f"{prefix}_skip{level + 1}")([skips.pop(), decoded])
        out = layers.Conv2D(channels, 4, dilation_rate=2, padding="same", name=f"{prefix}_logits")(decoded)
        out = CropLike(name=f"{prefix}_crop")([out, x])
        if segment is not None:
            out = JoinSegments(name=f"{prefix}_join")([out, magnitude])
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


# The integer options that size a network's tensors, and their bounds: a model file's config is checked against
# them before anything is built, so that a hostile or mistaken one cannot take the machine's memory.
OPTION_RANGES = {
    "umx": {"hidden": (1, 4096), "lstm_layers": (1, 8)},
    "unet": {"filters": (1, 256), "segment": (1, 4096)},
    "bandconv": {"bands": (1, 512), "features": (1, 1024), "blocks": (1, 12), "kernel": (1, 63)},
}


def network_options(architecture, size="base", options=None):
    """The keyword options of network `architecture` at preset `size`, updated by `options`.

    Raises ValueError naming the architecture, size or option that is unknown, or an option out of
    its range (`OPTION_RANGES`).
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
    options = {**SIZES[architecture][size], **(options or {})}
    for key, (low, high) in OPTION_RANGES[architecture].items():
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            raise ValueError(f"network option {key!r} of {architecture} must be an integer from {low} to {high}, "
                             f"got {value!r}")
    return options


def receptive_field(architecture, options):
    """Frames on each side of a frame that its masks depend on, given the network's `options`; None where
    that reach is unbounded (umx's recurrences) or the network is not shift-equivariant in time (unet's
    strided levels), so that no finite context reproduces whole-signal results exactly."""
    if architecture != "bandconv":
        return None
    defaults = {p.name: p.default for p in inspect.signature(bandconv).parameters.values() if p.kind is p.KEYWORD_ONLY}
    options = {**defaults, **options}
    return options["kernel"] // 2 * (2 ** options["blocks"] - 1)


def segment_frames(architecture, options):
    """The length in frames of the independent segments that the network cuts its input into, or None."""
    return options.get("segment") if architecture == "unet" else None
