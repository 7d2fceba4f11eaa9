"""Mix production that varies the way real mixes do: per-stem EQ, compression, reverb, width and gain,
and sometimes a limiter on the mixture (LimitAug, arXiv 2208.14355).

Every function takes float32 stereo (samples, 2) at `SAMPLE_RATE` and a numpy Generator, and
returns the processed signal with the parameters it drew, for the track's manifest. The limiter's
gain curve is computed on the mixture and applied to every stem, so the mixture stays exactly the
sum of its stems.
"""

import numpy as np
from scipy import ndimage, signal

from tfsep.corpus.tools import SAMPLE_RATE


def biquad(kind, frequency, gain_db=0.0, q=0.707, rate=SAMPLE_RATE):
    """Second-order section [b0, b1, b2, 1, a1, a2] of the Audio EQ Cookbook's filters."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * frequency / rate
    alpha, cos = np.sin(w) / (2 * q), np.cos(w)
    if kind == "peak":
        b, den = [1 + alpha * a, -2 * cos, 1 - alpha * a], [1 + alpha / a, -2 * cos, 1 - alpha / a]
    elif kind in ("lowshelf", "highshelf"):
        sign = 1 if kind == "lowshelf" else -1
        root = 2 * np.sqrt(a) * alpha
        b = [a * ((a + 1) - sign * (a - 1) * cos + root), sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
             a * ((a + 1) - sign * (a - 1) * cos - root)]
        den = [(a + 1) + sign * (a - 1) * cos + root, -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
               (a + 1) + sign * (a - 1) * cos - root]
    elif kind == "highpass":
        b, den = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2], [1 + alpha, -2 * cos, 1 - alpha]
    elif kind == "lowpass":
        b, den = [(1 - cos) / 2, 1 - cos, (1 - cos) / 2], [1 + alpha, -2 * cos, 1 - alpha]
    else:
        raise ValueError(f"unknown filter {kind!r}")
    return np.concatenate([np.divide(b, den[0]), np.divide(den, den[0])])


def equalize(x, rng):
    """Random EQ: sometimes a high-pass and a low-pass, two shelves, one to three peaks of up to ±8 dB."""
    bands = [("lowshelf", float(rng.uniform(80, 300)), float(rng.uniform(-6, 6)), 0.707),
             ("highshelf", float(rng.uniform(3000, 10000)), float(rng.uniform(-6, 6)), 0.707)]
    for _ in range(int(rng.integers(1, 4))):
        bands.append(("peak", float(np.exp(rng.uniform(np.log(100), np.log(8000)))), float(rng.uniform(-8, 8)),
                      float(rng.uniform(0.5, 3.0))))
    if rng.random() < 0.5:
        bands.append(("highpass", float(rng.uniform(20, 150)), 0.0, 0.707))
    if rng.random() < 0.3:
        bands.append(("lowpass", float(rng.uniform(6000, 18000)), 0.0, 0.707))
    sections = np.stack([biquad(kind, f, g, q) for kind, f, g, q in bands])
    return signal.sosfilt(sections, x, axis=0).astype(np.float32), {"eq": [[k, round(f), round(g, 1), round(q, 2)]
                                                                          for k, f, g, q in bands]}


def one_pole(x, seconds):
    """x smoothed by a one-pole low-pass with time constant `seconds`, along axis 0, starting at x[0]."""
    coefficient = np.exp(-1.0 / max(seconds * SAMPLE_RATE, 1.0))
    initial = coefficient * np.asarray(x[:1])
    return signal.lfilter([1 - coefficient], [1, -coefficient], x, axis=0, zi=initial)[0]


def compress(x, rng):
    """A feed-forward RMS compressor: threshold 6-24 dB below the stem's loud passages, ratio 1.5-8."""
    threshold_db, ratio = float(rng.uniform(-24, -6)), float(rng.uniform(1.5, 8.0))
    attack, release = float(rng.uniform(0.002, 0.03)), float(rng.uniform(0.05, 0.3))
    level = 10 * np.log10(one_pole(np.mean(x**2, axis=1), attack) + 1e-12)
    reference = np.percentile(level, 95)
    over = np.maximum(level - (reference + threshold_db), 0.0)
    gain_db = one_pole(-over * (1 - 1 / ratio), release)
    makeup = -0.5 * np.percentile(gain_db, 95)
    gain = 10 ** ((gain_db + makeup) / 20)
    return (x * gain[:, None]).astype(np.float32), {"compressor": {"threshold_db": round(threshold_db, 1),
                                                                   "ratio": round(ratio, 2),
                                                                   "attack_ms": round(1000 * attack, 1),
                                                                   "release_ms": round(1000 * release)}}


def reverb(x, rng):
    """A synthetic room: decorrelated noise decaying to -60 dB in 0.2-3 s, darkened, after a pre-delay."""
    rt60, wet = float(rng.uniform(0.2, 3.0)), float(rng.uniform(0.0, 0.4))
    predelay, darkness = float(rng.uniform(0.0, 0.04)), float(rng.uniform(0.0, 0.9))
    length = int(min(rt60, 2.5) * SAMPLE_RATE)
    time = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal((length, 2)) * np.exp(-6.9 * time / rt60)[:, None]
    tail = signal.lfilter([1 - darkness], [1, -darkness], tail, axis=0)
    tail /= np.sqrt(np.sum(tail**2, axis=0, keepdims=True))
    response = np.concatenate([np.zeros((int(predelay * SAMPLE_RATE), 2)), tail])
    wet_signal = signal.fftconvolve(x, response, axes=0)[: len(x)]
    return ((1 - wet) * x + wet * wet_signal).astype(np.float32), {"reverb": {"rt60_s": round(rt60, 2),
                                                                              "wet": round(wet, 2),
                                                                              "predelay_ms": round(1000 * predelay),
                                                                              "darkness": round(darkness, 2)}}


def widen(x, rng, pan=None):
    """Stereo width from mono (0) to wide (1.6) by mid/side scaling, then a constant-power pan in [-1, 1]."""
    width = float(rng.uniform(0.0, 1.6))
    pan = float(rng.uniform(-0.6, 0.6)) if pan is None else pan
    mid, side = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2 * width
    angle = (pan + 1) * np.pi / 4
    out = np.stack([(mid + side) * np.cos(angle), (mid - side) * np.sin(angle)], axis=1) * np.sqrt(2)
    return out.astype(np.float32), {"width": round(width, 2), "pan": round(pan, 2)}


def produce_stem(x, rng, role):
    """One stem through EQ, compression (80 %), reverb and width; drums and bass stay near the centre."""
    params = {}
    x, drawn = equalize(x, rng)
    params.update(drawn)
    if rng.random() < 0.8:
        x, drawn = compress(x, rng)
        params.update(drawn)
    if role != "bass" or rng.random() < 0.3:
        x, drawn = reverb(x, rng)
        params.update(drawn)
    centred = role in ("drums", "bass", "vocals")
    x, drawn = widen(x, rng, pan=float(rng.uniform(-0.15, 0.15)) if centred else None)
    params.update(drawn)
    return x, params


def limiter_gain(mixture, ceiling, release):
    """The gain curve (samples,) of a look-ahead peak limiter that holds `mixture` below `ceiling`.

    The reduction a peak needs is held for `release` seconds around it and smoothed, then the exact
    per-sample need caps it, so no sample of the limited mixture exceeds `ceiling`.
    """
    peak = ndimage.maximum_filter1d(np.abs(mixture).max(axis=1), size=int(0.005 * SAMPLE_RATE) * 2 + 1)
    wanted = np.minimum(1.0, ceiling / np.maximum(peak, 1e-9))
    held = ndimage.minimum_filter1d(wanted, size=max(1, int(release * SAMPLE_RATE)))
    return np.minimum(one_pole(held, 0.005), wanted).astype(np.float32)


def produce(stems, rng, limit_probability=0.3):
    """Produce every stem, draw their gains and the mix loudness, and sometimes limit the mixture.

    `stems`: {role: (samples, 2) float32}. Returns the produced stems, whose sum is the mixture
    at a loudness of -24 to -10 dB RMS below full scale, and the parameters drawn.
    """
    produced, params = {}, {}
    for role, x in stems.items():
        x, drawn = produce_stem(x, rng, role)
        gain_db = float(rng.uniform(-10.0, 0.0))
        produced[role] = x / (np.sqrt(np.mean(x**2)) + 1e-9) * 10 ** (gain_db / 20)
        params[role] = {**drawn, "gain_db": round(gain_db, 1)}
    mixture = sum(produced.values())
    loudness_db = float(rng.uniform(-24.0, -10.0))
    scale = 10 ** (loudness_db / 20) / (np.sqrt(np.mean(mixture**2)) + 1e-9)
    produced = {role: x * scale for role, x in produced.items()}
    params["mix"] = {"loudness_db": round(loudness_db, 1)}
    if rng.random() < limit_probability:
        reduction_db, release = float(rng.uniform(2.0, 10.0)), float(rng.uniform(0.03, 0.3))
        ceiling = np.abs(mixture * scale).max() * 10 ** (-reduction_db / 20)
        gain = limiter_gain(mixture * scale, ceiling, release)
        produced = {role: x * gain[:, None] for role, x in produced.items()}
        params["mix"]["limiter"] = {"peak_reduction_db": round(reduction_db, 1), "release_ms": round(1000 * release),
                                    "max_reduction_db": round(float(-20 * np.log10(gain.min())), 1)}
    return produced, params
