"""The SDR family, as functions and as a Keras metric (BSSEval v4 is in `tfsep.bsseval`).

Signals are compared per example over all samples and channels, (batch, samples, channels).
`sdr` is the MDX/SDX challenges' "global SDR": 10·log10((Σs² + δ) / (Σ(s − ŝ)² + δ)), δ = 1e-7.
"""

import tensorflow as tf

from tfsep._keras import keras

DELTA = 1e-7
SILENCE = 1e-6  # a reference whose mean square is below this (-60 dBFS RMS) is silent


def flatten_examples(tensor):
    """(batch, ...) -> float32 (batch, n)."""
    tensor = tf.cast(tensor, tf.float32)
    return tf.reshape(tensor, [tf.shape(tensor)[0], -1])


def _decibels(numerator, denominator):
    return 10.0 * tf.math.log((numerator + DELTA) / (denominator + DELTA)) / tf.math.log(10.0)


def sdr(reference, estimate):
    """Global SDR in dB per example, shape (batch,)."""
    reference, estimate = flatten_examples(reference), flatten_examples(estimate)
    return _decibels(tf.reduce_sum(tf.square(reference), 1), tf.reduce_sum(tf.square(reference - estimate), 1))


def si_sdr(reference, estimate):
    """Scale-invariant SDR in dB per example (zero-mean signals, reference optimally scaled), (batch,)."""
    reference, estimate = flatten_examples(reference), flatten_examples(estimate)
    reference -= tf.reduce_mean(reference, axis=1, keepdims=True)
    estimate -= tf.reduce_mean(estimate, axis=1, keepdims=True)
    scale = tf.reduce_sum(reference * estimate, 1, keepdims=True) / (
        tf.reduce_sum(tf.square(reference), 1, keepdims=True) + DELTA
    )
    target = scale * reference
    return _decibels(tf.reduce_sum(tf.square(target), 1), tf.reduce_sum(tf.square(estimate - target), 1))


@keras.saving.register_keras_serializable(package="tfsep")
class GlobalSDR(keras.metrics.Mean):
    """The mean over examples of the global SDR (dB) of a stem estimate, leaving out silent references.

    A silent reference chunk (a bass that rests, the padded end of a track) scores about
    −80 dB whatever the estimate, so a few of them would swamp the mean; like museval's
    silent frames, they are not counted. A batch of silent references adds nothing.
    """

    def __init__(self, name="sdr", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        power = tf.reduce_mean(tf.square(flatten_examples(y_true)), 1)
        audible = tf.cast(power >= SILENCE, tf.float32)
        weight = audible if sample_weight is None else audible * tf.cast(sample_weight, tf.float32)
        return super().update_state(sdr(y_true, y_pred), weight)
