"""`umx`: Open-Unmix-like: dense encoder, three BiLSTM layers with a skip, dense decoder, for all sources at once
or (`per_source`) one network per source, as Open-Unmix has.

`FusedLSTM` holds Keras LSTM weights one to one in the form that TFLite converts to its
fused LSTM builtin; the TFLite export switches the network to it (`NETWORK.tflite_options`).
"""

import uuid

import tensorflow as tf

from tfsep._keras import keras
from tfsep.layers import Float32Layer
from tfsep.networks.common import Network, Standardize

layers = keras.layers


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
    zeros = tf.zeros_like(projected[0, :, : tf.shape(recurrent_kernel)[0]])  # shapes may be unknown (compiled)

    def step(state, frame):
        h, c = state
        i, f, g, o = tf.split(frame + tf.matmul(h, recurrent_kernel), 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    return tf.scan(step, projected, initializer=(zeros, zeros))


# `lstm_recurrence` compiled by XLA, for inference: TensorFlow's own loop costs some 15 µs a frame, which XLA's
# compiled loop saves (the 2,585 frames of a 60 s song: 48 ms for 86 ms on a 2-core CPU). It has no gradient
# (TensorFlow cannot hand the loop's TensorLists from XLA to the backward pass).
compiled_lstm_recurrence = tf.function(lstm_recurrence, jit_compile=True, reduce_retracing=True)


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

    Same weights as a stock LSTM (`kernel`, `recurrent_kernel`, `bias` in a stock `cell`, so
    they load one to one, also from a saved file), the same outputs from zero initial states,
    and float32 under any dtype policy. In a traced graph the recurrence is a tf.function with
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

    `compiled` runs the recurrence compiled by XLA instead (`compiled_lstm_recurrence`), with
    the sequences unfolded: the same outputs, faster on a CPU, for inference only (no
    gradient, and nothing that the TFLite converter fuses).

    Input: (batch, frames, features). Output: (batch, frames, units).
    """

    return_sequences = True
    return_state = False
    stateful = False

    def __init__(self, units, go_backwards=False, compiled=False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.go_backwards = go_backwards
        self.compiled = compiled

    def build(self, input_shape):
        # A stock cell holds the weights: the same names, shapes, initialisers and place in a saved file
        # (`…/forward_layer/cell/vars`) as a keras.layers.LSTM's, so that either loads the other's weights.
        self.cell = keras.layers.LSTMCell(self.units, dtype="float32", name="cell")
        self.cell.build(input_shape)

    @property
    def kernel(self):
        return self.cell.kernel

    @property
    def recurrent_kernel(self):
        return self.cell.recurrent_kernel

    @property
    def bias(self):
        return self.cell.bias

    def call(self, sequences, initial_state=None):
        if initial_state is not None:  # keras.layers.Bidirectional passes None
            raise ValueError(f"{self.name}: FusedLSTM starts from zero states; it takes no initial_state")
        if self.go_backwards:
            sequences = tf.reverse(sequences, [1])
        if self.compiled:
            weights = (tf.convert_to_tensor(weight) for weight in (self.kernel, self.recurrent_kernel, self.bias))
            hs, _ = compiled_lstm_recurrence(sequences, *weights)
            return tf.transpose(hs, [1, 0, 2])
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
        return {**super().get_config(), "units": self.units, "go_backwards": self.go_backwards,
                "compiled": self.compiled}


@keras.saving.register_keras_serializable(package="tfsep")
class BinAffine(Float32Layer):
    """x · scale + offset per frequency bin, the same for every channel and source: Open-Unmix's
    `output_scale` and `output_mean`. Both are trained and start at 1, as Open-Unmix's do.

    Input: (batch, frames, bins, ...). Output: the same shape.
    """

    def build(self, input_shape):
        bins = input_shape[2]
        self.scale = self.add_weight(shape=(bins,), initializer="ones", name="scale")
        self.offset = self.add_weight(shape=(bins,), initializer="ones", name="offset")

    def call(self, x):
        per_bin = [-1] + [1] * (len(x.shape) - 3)
        return x * tf.reshape(self.scale, per_bin) + tf.reshape(self.offset, per_bin)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def umx(magnitude, sources, bin_hz, *, hidden=512, lstm_layers=3, dropout=0.4, lstm="keras", per_source=False,
        output_bins=None, output_affine=False, batch_norm_epsilon=1e-3):
    """Open-Unmix-like mask network (`bin_hz` is unused).

    lstm: `keras` (keras.layers.LSTM, cuDNN on a GPU) for training, `fused` (`FusedLSTM`,
    the same weights one to one), which TFLite converts to its fused LSTM builtin (the TFLite
    export switches to it), or `compiled` (`FusedLSTM(compiled=True)`, its recurrence compiled
    by XLA), which TensorFlow's inference on a CPU switches to.
    per_source: False for one network whose last layer gives every source's logits; True for
    one whole network per source, each with its own input standardisation and layers
    `umx_<source>_*`, as Open-Unmix trains one model per target.
    output_bins: logits for this many bins from bin 0, None for the bins the network sees: e.g.
    every bin of the STFT (n_fft // 2 + 1), as Open-Unmix's decoder covers the whole spectrum
    while its encoder sees the band-limited part; the masks then need no extension.
    output_affine: a trained scale and offset per output bin after the last batch norm
    (`BinAffine`; Open-Unmix's `output_scale` and `output_mean`).
    batch_norm_epsilon: the batch norms' ε: Keras's 1e-3, or PyTorch's 1e-5 (Open-Unmix's).
    """
    if lstm not in ("keras", "fused", "compiled"):
        raise ValueError(f"umx option lstm must be 'keras', 'fused' or 'compiled', got {lstm!r}")
    options = {"hidden": hidden, "lstm_layers": lstm_layers, "dropout": dropout, "lstm": lstm,
               "output_bins": output_bins, "output_affine": output_affine, "batch_norm_epsilon": batch_norm_epsilon}
    cells = []  # every LSTM given to a Bidirectional, alive until the whole network is built (see _umx_network)
    if not per_source:
        return _umx_network(magnitude, len(sources), "umx", "input_standardize", cells, **options)
    logits = [_umx_network(magnitude, 1, f"umx_{source}", f"umx_{source}_standardize", cells, **options)
              for source in sources]
    return layers.Concatenate(name="umx_logits")(logits)


def _umx_network(magnitude, outputs, prefix, standardize, cells, *, hidden, lstm_layers, dropout, lstm, output_bins,
                 output_affine, batch_norm_epsilon):
    """One umx network, layers named `prefix`_*: magnitude (batch, frames, bins, channels) to logits
    (batch, frames, output_bins or bins, channels, outputs).

    cells: a list that keeps each LSTM handed to `keras.layers.Bidirectional` alive. Bidirectional copies its
    layer by serialising it, and inside `keras.saving.load_model` Keras records every serialised object by its
    id() to share repeats: once a cell was freed and a later cell took its id, Keras handed back an earlier
    copy, and loading a saved umx model failed at random ("Forward layer and backward layer should have
    different `go_backwards` value"; about one load in ten of a per-source model, Keras 3.15.1).
    """
    _, _, bins, channels = magnitude.shape
    output_bins = output_bins or bins
    x = Standardize(name=standardize)(magnitude)
    x = layers.Reshape((-1, bins * channels), name=f"{prefix}_flatten")(x)
    x = layers.Dense(hidden, use_bias=False, name=f"{prefix}_fc1")(x)
    x = layers.BatchNormalization(epsilon=batch_norm_epsilon, name=f"{prefix}_bn1")(x)
    skip = layers.Activation("tanh", name=f"{prefix}_tanh")(x)
    x = skip
    for i in range(lstm_layers):
        if i > 0:
            x = layers.Dropout(dropout, name=f"{prefix}_dropout{i}")(x)
        if lstm != "keras":
            cell = FusedLSTM(hidden // 2, compiled=lstm == "compiled", name=f"{prefix}_lstm{i + 1}")
        else:
            cell = layers.LSTM(hidden // 2, return_sequences=True, name=f"{prefix}_lstm{i + 1}")
        cells.append(cell)
        x = layers.Bidirectional(cell, name=f"{prefix}_bilstm{i + 1}")(x)
    x = layers.Concatenate(name=f"{prefix}_skip")([skip, x])
    x = layers.Dense(hidden, use_bias=False, name=f"{prefix}_fc2")(x)
    x = layers.BatchNormalization(epsilon=batch_norm_epsilon, name=f"{prefix}_bn2")(x)
    x = layers.Activation("relu", name=f"{prefix}_relu")(x)
    x = layers.Dense(output_bins * channels * outputs, use_bias=False, name=f"{prefix}_fc3")(x)
    x = layers.BatchNormalization(epsilon=batch_norm_epsilon, name=f"{prefix}_bn3")(x)
    x = layers.Reshape((-1, output_bins, channels, outputs), name=f"{prefix}_logits")(x)
    if output_affine:
        x = BinAffine(name=f"{prefix}_output_affine")(x)
    return x


NETWORK = Network(
    build=umx,
    sizes={"tiny": {"hidden": 16}, "small": {"hidden": 128}, "base": {"hidden": 512}},
    ranges={"hidden": (1, 4096), "lstm_layers": (1, 8), "output_bins": (1, 32769)},
    tflite_options={"lstm": "fused"},
    # The fused LSTM keeps its states in variable tensors, which LiteRT.js refuses ("Variable tensors not yet
    # supported"); Keras's LSTM converts to a WHILE loop of builtin ops, which it runs.
    fixed_options={"lstm": "keras"},
    # 60 s of umxhq on 2 CPU cores: 1.8 s with FusedLSTM's XLA recurrence, 2.5 s without XLA, 4.6 s with
    # keras.layers.LSTM, which only a GPU runs fast (cuDNN).
    cpu_options={"lstm": "compiled"},
)
