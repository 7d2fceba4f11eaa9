"""Training losses: the masking theory's magnitude losses and, since the iSTFT is in the graph, waveform losses.

Waveform losses compare a stem estimate with its reference, both (batch, samples, channels).
`MagnitudeLoss` compares an estimated stem magnitude M_k ⊙ |X| (batch, frames, bins,
channels) with |STFT(reference)|, computing the reference's STFT itself with the model's
settings. All compute in float32 and are registered for saving.
"""

import tensorflow as tf

from tfsep._keras import keras
from tfsep.layers import STFT
from tfsep.metrics import flatten_examples, sdr, si_sdr


@keras.saving.register_keras_serializable(package="tfsep")
class WaveformLoss(keras.losses.Loss):
    """A weighted sum of waveform losses: `l1` (mean absolute error), `sdr` (−SDR) and `si_sdr` (−SI-SDR).

    Args:
        weights: {"l1": w, "sdr": w, "si_sdr": w}; terms with weight 0 are skipped.
    """

    TERMS = ("l1", "sdr", "si_sdr")

    def __init__(self, weights, name="waveform_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        unknown = set(weights) - set(self.TERMS)
        if unknown:
            raise ValueError(f"unknown waveform loss {sorted(unknown)[0]!r}; known: {self.TERMS}")
        self.weights = {term: float(weight) for term, weight in weights.items() if weight}

    def call(self, reference, estimate):
        total = 0.0
        if "l1" in self.weights:
            total += self.weights["l1"] * tf.reduce_mean(
                tf.abs(flatten_examples(reference) - flatten_examples(estimate)), axis=1)
        if "sdr" in self.weights:
            total -= self.weights["sdr"] * sdr(reference, estimate)
        if "si_sdr" in self.weights:
            total -= self.weights["si_sdr"] * si_sdr(reference, estimate)
        return total

    def get_config(self):
        return {**super().get_config(), "weights": self.weights}


@keras.saving.register_keras_serializable(package="tfsep")
class MagnitudeLoss(keras.losses.Loss):
    """L1 or MSE between an estimated stem magnitude M_k ⊙ |X| and the reference's |Y_k|.

    y_true: the reference stem waveform (batch, samples, channels); y_pred: the estimated
    magnitude (batch, frames, bins, channels), from a model with the same STFT settings.
    """

    def __init__(self, n_fft=4096, hop=1024, window="hann", kind="l1", framing="center", name="magnitude_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in ("l1", "mse"):
            raise ValueError(f"magnitude loss kind must be 'l1' or 'mse', got {kind!r}")
        self.n_fft, self.hop, self.window, self.kind, self.framing = n_fft, hop, window, kind, framing
        self.stft = STFT(n_fft, hop, window, framing)

    def call(self, reference, estimate):
        target = tf.transpose(tf.abs(self.stft.complex_spectrum(reference)), [0, 2, 3, 1])  # as estimate's axes
        difference = flatten_examples(target) - flatten_examples(estimate)
        if self.kind == "mse":
            return tf.reduce_mean(tf.square(difference), axis=1)
        return tf.reduce_mean(tf.abs(difference), axis=1)

    def get_config(self):
        config = {"n_fft": self.n_fft, "hop": self.hop, "window": self.window, "kind": self.kind,
                  "framing": self.framing}
        return {**super().get_config(), **config}
