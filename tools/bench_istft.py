"""The inverse STFT's cost: tfsep's builtin-only inverse FFT and overlap-add against tf.signal's kernels.

    python tools/bench_istft.py [--seconds 60] [--streams 8] [--runs 5]

`tfsep.layers.irfft` and `overlap_add` exist so that the graph converts to TFLite builtins;
the Keras model uses them too. This times both versions side by side, round-robin, on the
frames of `--streams` signals of `--seconds` at 44.1 kHz (4 sources × 2 channels = 8), and
reports their largest difference.
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

from tfsep.layers import irfft, overlap_add, window_array


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n_fft, hop = 4096, 1024
    frames = 1 + int(args.seconds * 44100) // hop
    spectrum = np.random.default_rng(0).normal(size=(args.streams, frames, n_fft // 2 + 1, 2)).astype(np.float32)
    spectrum = tf.constant(spectrum)
    window = tf.constant(window_array("hann", n_fft))

    @tf.function
    def with_tf_signal(x):
        return tf.signal.overlap_and_add(tf.signal.irfft(tf.complex(x[..., 0], x[..., 1]), [n_fft]) * window, hop)

    @tf.function
    def with_builtins(x):
        return overlap_add(irfft(x[..., 0], x[..., 1], n_fft) * window, hop)

    versions = {"tf.signal irfft + overlap_and_add": with_tf_signal, "tfsep irfft + overlap_add": with_builtins}
    times = {name: [] for name in versions}
    for function in versions.values():
        function(spectrum)  # trace
    for _ in range(args.runs):
        for name, function in versions.items():
            start = time.perf_counter()
            function(spectrum)
            times[name].append(time.perf_counter() - start)
    difference = float(tf.reduce_max(tf.abs(with_tf_signal(spectrum) - with_builtins(spectrum))))
    reference = statistics.median(times["tf.signal irfft + overlap_and_add"])
    print(f"{args.streams} inverse STFTs of {args.seconds:g} s (n_fft {n_fft}, hop {hop}), median of {args.runs}")
    print("| version | time | relative |\n| --- | ---: | ---: |")
    for name, runs in times.items():
        print(f"| {name} | {statistics.median(runs):.3f} s | {statistics.median(runs) / reference:.2f}× |")
    print(f"\nmax |difference| {difference:.1e}")


if __name__ == "__main__":
    main()
