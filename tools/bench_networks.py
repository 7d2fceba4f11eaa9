"""Separation speed of each architecture, side by side in one process.

    python tools/bench_networks.py [--seconds 60] [--runs 5] [--threads 2] [--size base] [--wiener 0]

Each model separates `--seconds` of stereo 44.1 kHz noise through one traced graph
(waveform in, four stems out: STFT, network, masks, inverse STFT). The models run in turn,
round-robin, so that machine noise falls on all of them alike; the table gives the median
time, the real-time factor (audio seconds per wall second) and the speed relative to the
fastest. Weights are random: speed does not depend on them.
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

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
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    mixture = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (1, int(args.seconds * 44100), 2)), tf.float32)
    separators = {}
    for architecture in args.architectures:
        model = build_model(architecture, size=args.size, wiener_iterations=args.wiener)
        separate = tf.function(model).get_concrete_function(tf.TensorSpec((None, None, 2), tf.float32))
        separate(mixture)  # warm-up
        separators[architecture] = (model.count_params(), separate)

    times = {architecture: [] for architecture in separators}
    for _ in range(args.runs):
        for architecture, (_, separate) in separators.items():
            start = time.perf_counter()
            separate(mixture)
            times[architecture].append(time.perf_counter() - start)

    medians = {architecture: statistics.median(runs) for architecture, runs in times.items()}
    fastest = min(medians.values())
    print(f"{args.seconds:g} s stereo 44.1 kHz, size {args.size}, Wiener {args.wiener}, "
          f"{args.threads} threads, median of {args.runs} runs, TensorFlow {tf.__version__}")
    print("| architecture | parameters | time | real-time factor | relative to fastest |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for architecture, median in sorted(medians.items(), key=lambda item: item[1]):
        params = separators[architecture][0]
        relative = "fastest" if median == fastest else f"{median / fastest:.2f}× slower"
        print(f"| `{architecture}` | {params / 1e6:.2f} M | {median:.2f} s | "
              f"{args.seconds / median:.1f}× | {relative} |")

if __name__ == "__main__":
    main()
