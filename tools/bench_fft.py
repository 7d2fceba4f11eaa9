"""The FFT that the TFLite form needs: TensorFlow's RFFT, LiteRT's RFFT2D, and a Cooley–Tukey FFT of \
two matrix products.

    python tools/bench_fft.py [--frames 5170] [--n-fft 4096] [--rounds 5]

5170 frames of 4096 samples are the forward STFT of 60 s of stereo at hop 1024; the
inverse STFT of four stems costs four times as many. The matrix-product FFT, n_fft = N1·N2
(64 × 64), is a DFT of length N1 over the strided samples, twiddle factors, and a DFT of
length N2, each one matrix product with a constant (builtin FULLY_CONNECTED ops, which
XNNPACK runs multi-threaded); its constants take 100 KB. Each form's largest difference
from numpy's float64 FFT is printed with its time (median of 5 rounds, the forms taking turns
after a warm-up each).
"""

import argparse
import os

import bench
import numpy as np
from bench.fft import builtin_tflite, litert_runner, rfft_function

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def rfft_matmul(frames, n_fft):
    """Real DFT of (rows, n_fft) frames as two matrix products -> (real, imag), each (rows, n_fft // 2 + 1)."""
    import tensorflow as tf

    n2 = 2 ** (int(np.log2(n_fft)) // 2)
    n1, k2 = n_fft // n2, n2 // 2 + 1
    a, b = np.arange(n1), np.arange(n2)
    first = np.exp(-2j * np.pi * np.outer(a, a) / n1)  # (a, k1)
    w1 = np.concatenate([first.real, first.imag], 1).astype(np.float32)
    twiddle = np.exp(-2j * np.pi * np.outer(b, a) / n_fft)  # (b, k1)
    second = np.exp(-2j * np.pi * np.outer(b, np.arange(k2)) / n2)  # (b, k2)
    w2 = np.block([[second.real, second.imag], [-second.imag, second.real]]).astype(np.float32)
    x = tf.transpose(tf.reshape(frames, [-1, n1, n2]), [0, 2, 1])  # sample n = N2·a + b at [b, a]
    y = tf.reshape(tf.matmul(tf.reshape(x, [-1, n1]), w1), [-1, n2, 2 * n1])
    re, im = y[..., :n1], y[..., n1:]
    tr, ti = twiddle.real.astype(np.float32), twiddle.imag.astype(np.float32)
    re, im = re * tr - im * ti, re * ti + im * tr  # (rows, b, k1)
    z = tf.concat([tf.transpose(re, [0, 2, 1]), tf.transpose(im, [0, 2, 1])], -1)  # (rows, k1, 2·N2)
    z = tf.reshape(tf.matmul(tf.reshape(z, [-1, 2 * n2]), w2), [-1, n1, 2 * k2])
    bins = n_fft // 2 + 1  # bin k = k1 + N1·k2
    real = tf.reshape(tf.transpose(z[..., :k2], [0, 2, 1]), [-1, k2 * n1])[:, :bins]
    imag = tf.reshape(tf.transpose(z[..., k2:], [0, 2, 1]), [-1, k2 * n1])[:, :bins]
    return real, imag


def max_error(out, reference):
    """The largest difference of {"real", "imag"} arrays from the complex `reference`."""
    return max(np.abs(np.asarray(out["real"]) - reference.real).max(),
               np.abs(np.asarray(out["imag"]) - reference.imag).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=5170)
    parser.add_argument("--n-fft", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import tensorflow as tf

    n = args.n_fft
    x = np.random.default_rng(0).uniform(-1, 1, (args.frames, n)).astype(np.float32)
    reference = np.fft.rfft(x.astype(np.float64))
    matmul = tf.function(lambda frames: dict(zip(("real", "imag"), rfft_matmul(frames, n))),
                         input_signature=[tf.TensorSpec([None, n], tf.float32, name="frames")])
    forms = {"TensorFlow tf.signal.rfft": (rfft_function(n), "LiteRT RFFT2D"),
             "TensorFlow, matrix products": (matmul, "LiteRT, matrix products")}
    runs, errors = {}, {}
    for label, (function, litert_label) in forms.items():
        runs[label, 2] = lambda function=function: function(tf.constant(x))
        errors[label, 2] = max_error(function(tf.constant(x)), reference)
        flatbuffer = builtin_tflite(function)
        for threads in (1, 2, 4):
            runner = litert_runner(flatbuffer, threads)
            runs[litert_label, threads] = lambda runner=runner: runner(frames=x)
            errors[litert_label, threads] = max_error(runner(frames=x), reference)
    times = bench.median_seconds(runs, args.rounds)
    print(f"{bench.machine()}\n{args.frames} frames of {n} samples, median of {args.rounds} rounds taken in turn\n")
    print(bench.table(["form", "threads", "seconds", "max error"],
                      [[label, threads, f"{seconds:.3f}", f"{errors[label, threads]:.1e}"]
                       for (label, threads), seconds in times.items()]))


if __name__ == "__main__":
    main()
