"""Separation speed of each architecture, side by side in one process.

    python tools/bench_networks.py [--seconds 60] [--runs 5] [--threads 2] [--size base] [--wiener 0]

Each model separates `--seconds` of stereo 44.1 kHz noise through one traced graph
(waveform in, four stems out: STFT, network, masks, inverse STFT). The models run in turn,
round-robin, so that machine noise falls on all of them alike; the table gives the median
time, the real-time factor (audio seconds per wall second) and the speed relative to the
fastest. Weights are random: speed does not depend on them.
"""

import argparse

import bench
import tensorflow as tf
from bench.separation import noise, set_threads

from tfsep import networks
from tfsep.models import build_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="base")
    parser.add_argument("--wiener", type=int, default=0)
    parser.add_argument("--architectures", nargs="+", default=sorted(networks.NETWORKS))
    args = parser.parse_args()
    set_threads(args.threads)

    mixture = tf.constant(noise(args.seconds)[None])
    params, runs = {}, {}
    for architecture in args.architectures:
        model = build_model(architecture, size=args.size, wiener_iterations=args.wiener)
        separate = tf.function(model).get_concrete_function(tf.TensorSpec((None, None, 2), tf.float32))
        params[architecture], runs[architecture] = model.count_params(), lambda separate=separate: separate(mixture)

    medians = bench.median_seconds(runs, args.runs)
    fastest = min(medians.values())
    print(f"{bench.machine()}\n{args.seconds:g} s stereo 44.1 kHz, size {args.size}, Wiener {args.wiener}, "
          f"{args.threads} threads, median of {args.runs} runs")
    rows = [[f"`{architecture}`", f"{params[architecture] / 1e6:.2f} M", f"{median:.2f} s",
             f"{args.seconds / median:.1f}×", "fastest" if median == fastest else f"{median / fastest:.2f}× slower"]
            for architecture, median in sorted(medians.items(), key=lambda item: item[1])]
    print(bench.table(["architecture", "parameters", "time", "real-time factor", "relative to fastest"], rows))


if __name__ == "__main__":
    main()
