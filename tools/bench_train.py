"""Training step time and peak memory of each architecture, beside Open-Unmix's own PyTorch step.

    python tools/bench_train.py [--config configs/band.yaml] [--batch 16] [--seconds 6] [--steps 3]
                                [--micro-batches 1 8] [--override run.mixed_precision=mixed_float16 ...]

Each measurement runs in its own subprocess, one after the other in this one run, so that
its peak resident memory (VmHWM) is its own:

- tfsep: one `train_on_batch` of the compiled training model of `--config` (its losses and
  optimiser) for each architecture, on a random batch of (batch, samples, 2) mixtures and
  four stems; the first step (tracing) is not timed; median of `--steps`. The step runs
  the batch as the config's `run.micro_batches` slices, or as each of `--micro-batches`,
  with the config's dtype policy (`run.mixed_precision`) and `--override`s applied. On a
  GPU it also reports the device's peak memory.
- Open-Unmix: `tools/openunmix_train_step.py` in the environment of `tools/peers.py`
  (created on first use), the step of its `scripts/train.py` for one target. Open-Unmix
  trains one model per source, so four such steps do the work of one tfsep step.
"""

import argparse
import json
import sys
from pathlib import Path

import bench


def measure_tfsep(config_path, architecture, batch, seconds, steps, micro_batches=None, overrides=()):
    """{step_seconds, params, peak_rss (bytes), micro_batches, gpu_peak_mib (None without a GPU)} of one
    architecture's training step, in this process; `micro_batches` None takes the config's."""
    import numpy as np
    import tensorflow as tf

    from tfsep import config as configuration
    from tfsep import train as training
    from tfsep._keras import keras

    overrides = [f"model.architecture={architecture}", "model.size=base", f"data.batch_size={batch}", *overrides]
    if micro_batches:
        overrides.append(f"run.micro_batches={micro_batches}")
    config = configuration.load_config(config_path, overrides)
    keras.mixed_precision.set_global_policy(config.run.mixed_precision or "float32")
    sources, samples = config.data.sources, int(seconds * config.data.sample_rate)
    model = training.build_separation_model(config)
    magnitudes = config.loss.magnitude > 0
    trainer = training.training_model(model, magnitudes, config.run.micro_batches)
    training.compile_model(trainer, config)
    rng = np.random.default_rng(0)
    stems = {source: tf.constant(rng.normal(0, 0.1, (batch, samples, 2)), tf.float32) for source in sources}
    mixture = tf.add_n(list(stems.values()))
    targets = training.training_targets(stems, magnitudes)
    step = {"step": lambda: trainer.train_on_batch(mixture, targets)}
    seconds = bench.median_seconds(step, steps)["step"]  # the warm-up step traces the graph
    gpu = bool(tf.config.list_logical_devices("GPU"))
    gpu_peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpu else None
    return {"step_seconds": seconds, "params": model.count_params(), "peak_rss": bench.peak_rss(),
            "gpu_peak_mib": gpu_peak, "micro_batches": config.run.micro_batches}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(bench.TOOLS.parent / "configs" / "band.yaml"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--architectures", nargs="+", default=["bandconv", "umx", "unet"])
    parser.add_argument("--micro-batches", nargs="+", type=int, help="slices of each batch (default: the config's)")
    parser.add_argument("--override", nargs="+", default=[], help="config overrides, KEY=VALUE")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one architecture, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_tfsep(args.config, args.one, args.batch, args.seconds, args.steps,
                                       (args.micro_batches or [None])[0], args.override)))
        return

    from peers import openunmix_python

    shape = ["--batch", str(args.batch), "--seconds", str(args.seconds), "--steps", str(args.steps)]
    results = {}
    for architecture in args.architectures:
        for micro_batches in args.micro_batches or [None]:
            slices = ["--micro-batches", str(micro_batches)] if micro_batches else []
            result = bench.run_json([sys.executable, __file__, "--one", architecture, "--config", args.config]
                                    + shape + slices + (["--override", *args.override] if args.override else []))
            count = result["micro_batches"]
            results[f"tfsep `{architecture}` (4 stems), {count} × {args.batch // count}"] = result
    umx = bench.run_json([openunmix_python(), bench.TOOLS / "openunmix_train_step.py"] + shape)
    results["Open-Unmix, one target"] = umx
    results["Open-Unmix, 4 targets (4 × one)"] = {**umx, "step_seconds": 4 * umx["step_seconds"],
                                                   "params": 4 * umx["params"]}

    reference = umx["step_seconds"] * 4
    print(f"{bench.machine()}, torch {umx['torch']}\nbatch {args.batch} × {args.seconds:g} s stereo 44.1 kHz, "
          f"median of {args.steps} steps after one warm-up, {Path(args.config).name}")
    rows = [[name, f"{result['params'] / 1e6:.2f} M", f"{result['step_seconds']:.2f}",
             f"{result['peak_rss'] / 2**30:.2f} GiB", f"{reference / result['step_seconds']:.2f}×"]
            for name, result in results.items()]
    print(bench.table(["training step", "parameters", "s / step", "peak RSS", "Open-Unmix 4 targets ÷ this"], rows))


if __name__ == "__main__":
    main()
