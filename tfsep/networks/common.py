"""What every mask network shares: its registry entry (`Network`) and the per-bin input standardisation, a
statistic set from the training data."""

import dataclasses
import inspect
from collections.abc import Callable

import tensorflow as tf

from tfsep._keras import keras
from tfsep.layers import Float32Layer


@dataclasses.dataclass(frozen=True)
class Network:
    """A mask network's entry in `networks.NETWORKS`: everything the rest of tfsep may ask of it.

    Attributes:
        build: `(magnitude, sources, bin_hz, **options) -> logits`, adding the network's layers to
            a functional graph: magnitude (batch, frames, bins, channels) to mask logits (batch,
            frames, bins, channels, sources).
        sizes: {size name: options}, the presets (`tiny`, `small`, `base`).
        ranges: {option: (low, high)}, the integer options that size its tensors, checked
            before anything is built.
        receptive_field: options -> frames on each side of a frame that its masks depend on,
            or None where that reach is unbounded or not shift-equivariant.
        segment_frames: options -> the length of the independent segments it cuts frames into, or None.
        tflite_options: options the TFLite export sets (the same weights in a form TFLite converts).
        fixed_options: options the fixed-shape TFLite form sets over `tflite_options`, for LiteRT.js,
            which loads no model with variable tensors (those of TFLite's fused LSTM).
        cpu_options: options that TensorFlow's inference on a CPU sets (the same weights in a form a CPU runs
            faster).
    """

    build: Callable
    sizes: dict
    ranges: dict
    receptive_field: Callable = lambda options: None
    segment_frames: Callable = lambda options: None
    tflite_options: dict = dataclasses.field(default_factory=dict)
    fixed_options: dict = dataclasses.field(default_factory=dict)
    cpu_options: dict = dataclasses.field(default_factory=dict)

    def options(self):
        """{name: default} of the keyword options that `build` takes."""
        return {p.name: p.default for p in inspect.signature(self.build).parameters.values()
                if p.kind is p.KEYWORD_ONLY}


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
