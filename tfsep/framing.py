"""The STFT's framing arithmetic, in numpy and plain Python: windows, frame counts, padding and hop-rounded
lengths. The Keras layers (`layers`) and the chunk planner (`chunking`) share it; it imports no TensorFlow, so
that separating with a LiteRT model starts without it.
"""

import math

import numpy as np

WINDOWS = ("hann", "hamming", "blackman")
MAX_N_FFT = 65536  # 1.5 s at 44.1 kHz; beyond it a config is a mistake or an attack on memory
FRAMINGS = ("center", "pad_end", "valid", "center_reflect")


def window_array(window, n_fft):
    """The periodic analysis window of length `n_fft`, as float32 numpy."""
    phase = 2.0 * np.pi * np.arange(n_fft) / n_fft
    if window == "hann":
        values = 0.5 - 0.5 * np.cos(phase)
    elif window == "hamming":
        values = 0.54 - 0.46 * np.cos(phase)
    elif window == "blackman":
        values = 0.42 - 0.5 * np.cos(phase) + 0.08 * np.cos(2.0 * phase)
    else:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    return values.astype(np.float32)


def check_stft_settings(n_fft, hop, window, framing="center"):
    """Raise ValueError unless `n_fft` is a power of two up to MAX_N_FFT, 1 <= hop <= n_fft // 2, and window and
    framing are known."""
    if not isinstance(n_fft, int) or isinstance(n_fft, bool) or not 2 <= n_fft <= MAX_N_FFT or n_fft & (n_fft - 1):
        raise ValueError(f"n_fft must be a power of two from 2 to {MAX_N_FFT}, got {n_fft!r}")
    if not isinstance(hop, int) or not 1 <= hop <= n_fft // 2:
        raise ValueError(f"hop must be an integer in [1, n_fft // 2 = {n_fft // 2}], got {hop!r}")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")


def leading_pad(n_fft, framing="center"):
    """Samples that `STFT` puts before the signal: n_fft // 2 (`center`, `center_reflect`), n_fft (`pad_end`) or none
    (`valid`)."""
    return {"center": n_fft // 2, "pad_end": n_fft, "valid": 0, "center_reflect": n_fft // 2}[framing]


def whole_hops(seconds, sample_rate, hop, minimum=1, up=False):
    """`seconds` at `sample_rate` as samples, a whole number of hops: the nearest (ties to even, as `round`), or
    with `up` the first at or above; at least `minimum` hops."""
    hops = seconds * sample_rate / hop
    count = math.ceil(hops - 1e-9) if up else round(hops)
    return max(minimum, count) * hop


def num_frames(samples, hop, n_fft=None, framing="center"):
    """Frames that `STFT` gives for `samples` samples (a number or a scalar tensor).

    center: 1 + ceil(samples / hop); pad_end: ceil((samples + n_fft) / hop); valid:
    1 + (samples − n_fft) // hop, the frames that fit inside the signal; center_reflect: 1 + samples // hop,
    as torch.stft(center=True) frames.
    """
    if framing == "center":
        return 1 + (samples + hop - 1) // hop
    if framing == "center_reflect":
        return 1 + samples // hop
    if framing == "pad_end":
        return (samples + n_fft + hop - 1) // hop
    return 1 + (samples - n_fft) // hop


def steady_window_sum(window, hop):
    """Σ_r w²[m + r·hop] for m in [0, hop): the overlap-added squared window where no frame is missing."""
    squared = np.pad(window.astype(np.float64) ** 2, (0, -len(window) % hop))
    return squared.reshape(-1, hop).sum(0).astype(np.float32)
