"""`unet`: Spleeter-like 2-D convolutional U-Net (six levels, 5×5 kernels, stride 2), one per source."""

import tensorflow as tf

from tfsep._keras import keras
from tfsep.networks.common import Network, Standardize

layers = keras.layers


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


NETWORK = Network(
    build=unet,
    sizes={"tiny": {"filters": 2}, "small": {"filters": 8}, "base": {"filters": 16}},
    ranges={"filters": (1, 256), "segment": (1, 4096)},
    segment_frames=lambda options: options.get("segment"),
)
