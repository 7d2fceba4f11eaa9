"""The inverse STFT's cost in its forms: tf.signal's kernels against the builtin-op form.

    python tools/bench_istft.py [--seconds 60] [--sources 4] [--runs 5]

`tfsep.layers.InverseSTFT(inverse_fft="signal")` is what training runs, `"bitcast"` (the same
kernels on the spectra read in place as complex) what `Separator` and the SavedModel run;
`inverse_fft="builtin"` (an inverse FFT from one forward FFT, overlap-add from pads and
sums) is what TFLite exports take. This times the whole layer in every form side by side,
round-robin, on the spectra of `--sources` stereo stems of `--seconds` at 44.1 kHz, and
reports their largest difference.
"""

import argparse

import bench
import numpy as np
import tensorflow as tf

from tfsep.framing import num_frames
from tfsep.layers import INVERSE_FFTS, InverseSTFT


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n_fft, hop, samples = 4096, 1024, int(args.seconds * 44100)
    shape = (1, num_frames(samples, hop, n_fft), n_fft // 2 + 1, 2, args.sources, 2)
    spectrum = tf.constant(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    reference = tf.zeros((1, samples, 2))
    forms = {form: tf.function(InverseSTFT(n_fft, hop, inverse_fft=form)) for form in INVERSE_FFTS}
    outputs = {form: function([spectrum, reference]) for form, function in forms.items()}  # trace
    times = bench.median_seconds({form: lambda function=function: function([spectrum, reference])
                                  for form, function in forms.items()}, args.runs, warm_up=False)
    difference = max(float(tf.reduce_max(tf.abs(output - outputs["signal"]))) for output in outputs.values())
    print(f"{bench.machine()}\nInverseSTFT of {args.sources} stereo stems of {args.seconds:g} s (n_fft {n_fft}, "
          f"hop {hop}), median of {args.runs}, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} "
          "threads")
    rows = [[f"`{form}`", f"{seconds:.3f} s", f"{seconds / times['signal']:.2f}×"] for form, seconds in times.items()]
    print(bench.table(["inverse_fft", "time", "relative"], rows))
    print(f"\nmax |difference| from `signal` {difference:.1e}")


if __name__ == "__main__":
    main()
