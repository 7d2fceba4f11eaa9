"""Spectral tensor helpers that the signal layers (`layers`) are built from, in TensorFlow ops.

A complex spectrum travels as a real tensor whose last axis holds (real, imaginary), so that
what is built from these helpers saves, serialises and converts to TFLite without complex
dtypes. Here are its power |X|² and magnitude |X|, the inverse real FFT and the overlap-add
written in TFLite builtin ops, and the complex views that read such a tensor as complex64 in
place (and back), for TensorFlow without XLA.
"""

import numpy as np
import tensorflow as tf


def power(spectrum, keepdims=False):
    """|X|² = (Re X)² + (Im X)²: spectrum (..., 2) -> (...), or (..., 1) with `keepdims`."""
    return tf.reduce_sum(tf.square(spectrum), axis=-1, keepdims=keepdims)


def magnitude(spectrum, keepdims=False):
    """|X|: spectrum (..., 2) -> (...), or (..., 1) with `keepdims`."""
    return tf.sqrt(power(spectrum, keepdims))


def reflect_pad(waveform, pad):
    """waveform (batch, samples, channels) extended by `pad` samples at each end, reflected about its first and
    last sample as numpy's and torch's `reflect` padding does (x[1], x[2], ... before x[0]); for waveforms of at
    most `pad` samples the reflection repeats, as numpy's does, and a single sample is repeated. One gather of
    computed positions, which TFLite runs as a builtin."""
    samples = tf.shape(waveform)[1]
    period = tf.maximum(2 * (samples - 1), 1)
    positions = tf.math.floormod(tf.range(-pad, samples + pad), period)
    positions = tf.where(positions >= samples, period - positions, positions)
    return tf.gather(waveform, positions, axis=1)


def irfft(spectrum, n_fft):
    """Inverse real FFT along the bins from one forward real FFT, in TFLite builtin ops.

    TFLite has no builtin IRFFT. With c = Re X + Im X on bins 0..N/2 followed by the reverse
    of Re X − Im X on bins 1..N/2−1, Y = rfft(c) gives N·x[m] = (Re Y + Im Y)[m] for
    m <= N/2 and N·x[N−m] = (Re Y − Im Y)[m] (the Hartley transform is its own inverse).
    Each sum is a matrix product with the (real, imaginary) axis, which also scales by 1/N;
    slicing that axis apart instead copies element by element in LiteRT, 2× slower.

    spectrum: (..., n_fft // 2 + 1, 2), real and imaginary parts. Returns (..., n_fft), as
    tf.signal.irfft does.
    """
    half, parts = n_fft // 2, len(spectrum.shape) - 1
    plus, minus = (tf.tensordot(spectrum, np.array(signs, np.float32) / n_fft, [[parts], [0]])
                   for signs in ((1, 1), (1, -1)))
    edges = (plus[..., ::half] + minus[..., ::half]) / 2  # Re X at 0 Hz and Nyquist: irfft ignores Im X there
    sequence = tf.concat([edges[..., :1], plus[..., 1:half], edges[..., 1:], tf.reverse(minus[..., 1:half], [-1])], -1)
    spectrum = tf.signal.rfft(sequence)
    forward = tf.math.real(spectrum) + tf.math.imag(spectrum)  # x[0..N/2]
    backward = tf.math.real(spectrum) - tf.math.imag(spectrum)  # x[N−m] for m = 0..N/2
    return tf.concat([forward, tf.reverse(backward[..., 1:half], [-1])], axis=-1)


def overlap_add(frames, hop):
    """Overlap-add frames (..., count, length) at `hop` -> (..., (count − 1)·hop + length), in TFLite builtins.

    Each frame is zero-padded to R·hop, R = ceil(length / hop), and cut into R segments;
    segment r of every frame is shifted by r hops and the R shifted copies are summed. Slices
    and pads, unlike `tf.signal.overlap_and_add`'s strided slice and transpose, move each
    segment once, and so does the gradient, `frame_segments`, the adjoint of overlap-adding.
    """
    length = frames.shape[-1]
    segments = -(-length // hop)
    rank = len(frames.shape)

    @tf.custom_gradient
    def overlap_added(frames):
        shape = tf.shape(frames)
        outer, count = shape[:-2], shape[-2]
        frames = tf.pad(frames, [[0, 0]] * (rank - 1) + [[0, segments * hop - length]])
        start = tf.zeros([rank - 1], tf.int32)
        shifted = []
        for r in range(segments):
            segment = tf.slice(frames, tf.concat([start, [r * hop]], 0), tf.concat([outer, [count, hop]], 0))
            shifted.append(tf.pad(segment, [[0, 0]] * (rank - 2) + [[r, segments - 1 - r], [0, 0]]))
        signal = tf.reshape(tf.add_n(shifted), tf.concat([outer, [(count + segments - 1) * hop]], 0))
        signal = tf.slice(signal, start, tf.concat([outer, [(count - 1) * hop + length]], 0))
        return signal, lambda upstream: frame_segments(upstream, count, length, hop)

    return overlap_added(frames)


def frame_segments(signal, count, length, hop):
    """Frames of `length` samples every `hop` of signal (..., (count − 1)·hop + length) -> (..., count, length).

    The adjoint of `overlap_add`: a frame is the concatenation of R = ceil(length / hop)
    consecutive hop-long segments of the signal, each cut once by a slice.
    """
    segments = -(-length // hop)
    rank = len(signal.shape)
    outer = tf.shape(signal)[:-1]
    start = tf.zeros([rank - 1], tf.int32)
    signal = tf.pad(signal, [[0, 0]] * (rank - 1) + [[0, segments * hop - length]])
    rows = tf.reshape(signal, tf.concat([outer, [count + segments - 1, hop]], 0))
    size = tf.concat([outer, [count, hop]], 0)
    frames = tf.concat([tf.slice(rows, tf.concat([start, [r, 0]], 0), size) for r in range(segments)], axis=-1)
    return tf.slice(frames, tf.zeros([rank + 1], tf.int32), tf.concat([outer, [count, length]], 0))


@tf.custom_gradient
def complex_view(spectrum):
    """(..., 2) float32 (real, imaginary) -> (...) complex64: the same memory read as complex (`tf.bitcast`).

    Differentiable, unlike `tf.bitcast`; neither XLA nor TFLite builtins compile it.
    """
    return tf.bitcast(spectrum, tf.complex64), lambda gradient: tf.bitcast(gradient, tf.float32)


@tf.custom_gradient
def real_view(spectrum):
    """(...) complex64 -> (..., 2) float32 (real, imaginary), the inverse of `complex_view`."""
    return tf.bitcast(spectrum, tf.float32), lambda gradient: tf.bitcast(gradient, tf.complex64)
