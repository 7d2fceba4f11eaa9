"""The FFT that the TFLite form needs: TensorFlow's RFFT, LiteRT's RFFT2D, and a Cooley–Tukey FFT of \
two matrix products.

    python tools/bench_fft.py [--frames 5170] [--n-fft 4096]

5170 frames of 4096 samples are the forward STFT of 60 s of stereo at hop 1024; the
inverse STFT of four stems costs four times as many. The matrix-product FFT, n_fft = N1·N2
(64 × 64), is a DFT of length N1 over the strided samples, twiddle factors, and a DFT of
length N2, each one matrix product with a constant (builtin FULLY_CONNECTED ops, which
XNNPACK runs multi-threaded); its constants take 100 KB. Each form's largest difference
from numpy's float64 FFT is printed with its time (median of 5 after a warm-up).
"""

import argparse
import os
import time

import numpy as np

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


def median_time(run, rounds=5):
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=5170)
    parser.add_argument("--n-fft", type=int, default=4096)
    args = parser.parse_args()
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    n = args.n_fft
    x = np.random.default_rng(0).uniform(-1, 1, (args.frames, n)).astype(np.float32)
    reference = np.fft.rfft(x.astype(np.float64))

    class Forms(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, n], tf.float32)])
        def matmul(self, frames):
            real, imag = rfft_matmul(frames, n)
            return {"real": real, "imag": imag}

        @tf.function(input_signature=[tf.TensorSpec([None, n], tf.float32)])
        def native(self, frames):
            spectrum = tf.signal.rfft(frames)
            return {"real": tf.math.real(spectrum), "imag": tf.math.imag(spectrum)}

    forms = Forms()
    print(f"{args.frames} frames of {n} samples\n\n| form | threads | seconds | max error |\n"
          "| --- | ---: | ---: | ---: |")
    for name in ("native", "matmul"):
        function = getattr(forms, name)
        out = function(tf.constant(x))
        error = max(np.abs(out["real"].numpy() - reference.real).max(),
                    np.abs(out["imag"].numpy() - reference.imag).max())
        label = "TensorFlow tf.signal.rfft" if name == "native" else "TensorFlow, matrix products"
        print(f"| {label} | 2 | {median_time(lambda: function(tf.constant(x))):.3f} | {error:.1e} |")
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], forms)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
        for threads in (1, 2, 4):
            runner = Interpreter(model_content=flatbuffer, num_threads=threads).get_signature_runner()
            out = runner(frames=x)
            error = max(np.abs(out["real"] - reference.real).max(), np.abs(out["imag"] - reference.imag).max())
            label = "LiteRT RFFT2D" if name == "native" else "LiteRT, matrix products"
            print(f"| {label} | {threads} | {median_time(lambda: runner(frames=x)):.3f} | {error:.1e} |")


if __name__ == "__main__":
    main()
