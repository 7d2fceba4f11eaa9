"""The log spectrogram that tfsep draws, in evaluation reports and in TensorBoard."""

import numpy as np

from tfsep.layers import STFT, Magnitude

FLOOR_DB, CEILING_DB = -80.0, 20.0  # the range drawn


def log_spectrogram(signal, n_fft=2048, hop=512):
    """float (samples, channels) -> the dB magnitude (bins, frames) of the channels' mean, low frequencies first."""
    mixed = np.asarray(signal, np.float32).mean(1, keepdims=True)[None]
    magnitude = Magnitude()(STFT(n_fft, hop)(mixed))[0, :, :, 0].numpy()
    return 20 * np.log10(magnitude.T + 1e-5)


def spectrogram_image(signal):
    """float (samples, channels) -> a (1, bins, frames, 1) image in [0, 1] of `log_spectrogram` over
    [FLOOR_DB, CEILING_DB], low frequencies at the bottom, for `tf.summary.image`."""
    image = (log_spectrogram(signal) - FLOOR_DB) / (CEILING_DB - FLOOR_DB)
    return np.clip(image[::-1], 0.0, 1.0)[None, :, :, None]
