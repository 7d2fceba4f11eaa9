"""Oracle separations: the upper bounds of mask-based separation, through tfsep's own STFT layers.

Given the true stems, each oracle builds masks (or filters) from them and applies them to
the mixture exactly as a SeparationModel does: STFT, masked magnitude, mixture phase,
inverse STFT cropped to the mixture's length.

- `irm`: ideal ratio mask, M_k = |Y_k|² / Σ_j |Y_j|² (sigsep-mus-oracle's IRM, α = 2).
- `ibm`: ideal binary mask, M_k = 1 where |Y_k| / |X| ≥ 0.5, else 0 (its IBM, α = 1, θ = 0.5).
- `wiener`: oracle multichannel Wiener filter: power spectral densities and spatial
  covariances taken from the true stems' spectra, one filtering step of `WienerFilter`.
- `mixture`: no separation, the mixture divided by the number of sources: the baseline that
  a separation has to beat.

`griffin_lim` > 0 refines the masked spectra's phase by that many Griffin-Lim iterations
(`layers.GriffinLim`), to compare with the mixture's phase under ideal masks.
"""

import numpy as np
import tensorflow as tf

from tfsep.layers import STFT, GriffinLim, InverseSTFT, Magnitude, MaskMagnitude, PhaseReuse, WienerFilter
from tfsep.names import ORACLES

EPS = 1e-10


def oracle_separate(kind, mixture, stems, n_fft=4096, hop=1024, griffin_lim=0):
    """Oracle estimates of the stems.

    Args:
        kind: one of ORACLES.
        mixture: float32 (samples, channels).
        stems: float32 (sources, samples, channels), the true stems.
    Returns:
        float32 (sources, samples, channels).
    """
    if kind not in ORACLES:
        raise ValueError(f"unknown oracle {kind!r}; choose one of {list(ORACLES)}")
    if kind == "mixture":
        return np.repeat(np.asarray(mixture, np.float32)[None] / len(stems), len(stems), axis=0)
    stft = STFT(n_fft, hop)
    mixture = tf.convert_to_tensor(mixture, tf.float32)[None]  # (1, samples, channels)
    stems = tf.convert_to_tensor(stems, tf.float32)
    spectrum = stft(mixture)  # (1, frames, bins, channels, 2)
    stem_spectra = tf.transpose(stft(stems), [1, 2, 3, 0, 4])[None]  # (1, frames, bins, channels, sources, 2)
    if kind == "wiener":
        estimates = WienerFilter(iterations=1)([stem_spectra, spectrum])
    else:
        magnitude = Magnitude()(spectrum)
        stem_magnitudes = tf.norm(stem_spectra, axis=-1)
        if kind == "irm":
            power = tf.square(stem_magnitudes)
            masks = power / (tf.reduce_sum(power, axis=-1, keepdims=True) + EPS)
        else:
            masks = tf.cast(stem_magnitudes / (magnitude[..., None] + EPS) >= 0.5, tf.float32)
        estimates = PhaseReuse()([MaskMagnitude()([masks, magnitude]), spectrum])
    estimates = GriffinLim(n_fft, hop, iterations=griffin_lim)([estimates, mixture])
    waveforms = InverseSTFT(n_fft, hop)([estimates, mixture])  # (1, samples, channels, sources)
    return tf.transpose(waveforms[0], [2, 0, 1]).numpy()
