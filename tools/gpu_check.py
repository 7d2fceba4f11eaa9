"""Issue 16's GPU figures in one run of a few minutes: mixed-precision XLA training steps, separation speed, cuDNN.

    python tools/gpu_check.py [--steps 10] [--batch 16] [--seconds 6] [--separate-seconds 60]

- training: `tools/bench_train.py`'s step of `bandconv` and `umx` (base, configs/band.yaml's
  losses) with `run.mixed_precision=mixed_float16` and `run.jit_compile=true`, the batch in
  one piece (`run.micro_batches=1`; the config's 8 slices are for 3 GiB of CPU memory), each
  in its own process: steps per second (median after the tracing step) and the GPU's peak
  memory. Keras compiles `umx` without XLA where its LSTMs take cuDNN's kernel (it warns so:
  XLA cannot compile that kernel);
- separation: the shipped model's `Separator.separate` of `--separate-seconds` of stereo
  44.1 kHz, default settings, as `tfsep separate` runs it: real-time factor, median of 5
  after a warm-up;
- cuDNN LSTM: a `umx` base model with random weights, one 6 s stereo input, run here (on a
  GPU, Keras picks cuDNN's LSTM kernel) and in a process that sees no GPU: the largest
  difference of the stems.

Prints a markdown table headed by the date and the device's name. Without a GPU it runs
everything on the CPU and says so: a dry run of the script, not the figures.
"""

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

import bench
import numpy as np
from bench.separation import noise, separate_run


def training_step(architecture, batch, seconds, steps):
    """bench_train's measurement of one mixed-precision XLA training step, in a process of its own."""
    return bench.run_json([sys.executable, bench.TOOLS / "bench_train.py", "--one", architecture, "--batch", batch,
                           "--seconds", seconds, "--steps", steps, "--override", "run.mixed_precision=mixed_float16",
                           "run.jit_compile=true", "run.micro_batches=1"])


def separation_seconds(seconds, rounds=5):
    """Median seconds of the shipped model's `Separator.separate` of `seconds` of stereo noise, in its Keras form (on
    the GPU; the default TFLite form runs in LiteRT on the CPU)."""
    from tfsep.providers import shipped_model

    run = separate_run(shipped_model(), seconds=seconds, amplitude=0.3)
    return bench.median_seconds({"separate": run}, rounds)["separate"]


def stems_of(model_path, input_path):
    """{source: stem} of the model at `model_path` on the float32 waveform in `input_path` (.npy)."""
    from tfsep.models import load_model

    model = load_model(model_path)
    return {source: stem.numpy() for source, stem in model(np.load(input_path)).items()}


def lstm_difference(folder):
    """Largest |this process − a CPU-only process| of a random-weight `umx` base model's stems: on a GPU, cuDNN's
    LSTM kernel against the CPU's."""
    import os

    from tfsep.models import build_model

    model_path, input_path, cpu_path = folder / "umx.keras", folder / "waveform.npy", folder / "cpu.npz"
    build_model("umx", size="base").save(model_path)
    np.save(input_path, noise(6, 0.3, seed=1)[None])
    on_device = stems_of(model_path, input_path)
    subprocess.run([sys.executable, __file__, "--stems-of", str(model_path), str(input_path), str(cpu_path)],
                   check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    with np.load(cpu_path) as on_cpu:
        return max(float(np.abs(on_device[source] - on_cpu[source]).max()) for source in on_device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0, help="training excerpt length")
    parser.add_argument("--separate-seconds", type=float, default=60.0)
    parser.add_argument("--stems-of", nargs=3, help=argparse.SUPPRESS)  # internal: MODEL INPUT OUT.npz
    args = parser.parse_args()
    if args.stems_of:
        np.savez(args.stems_of[2], **stems_of(*args.stems_of[:2]))
        return

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else None
    rows = []
    for architecture in ("bandconv", "umx"):
        step = training_step(architecture, args.batch, args.seconds, args.steps)
        memory = f"{step['gpu_peak_mib'] / 1024:.2f} GiB" if step["gpu_peak_mib"] is not None else "–"
        rows.append((f"`{architecture}` training step, {args.batch} × {args.seconds:g} s, mixed_float16 + XLA",
                     f"{1 / step['step_seconds']:.2f} steps/s", memory))
    seconds = separation_seconds(args.separate_seconds)
    rows.append((f"`Separator.separate` of {args.separate_seconds:g} s, shipped model",
                 f"{args.separate_seconds / seconds:.1f}× real time ({seconds:.2f} s)", "–"))
    with tempfile.TemporaryDirectory() as folder:
        difference = lstm_difference(Path(folder))
    rows.append(("`umx` stems, cuDNN LSTM on the GPU against the CPU", f"largest difference {difference:.1e}", "–"))

    print(f"{datetime.date.today()}, {name or 'no GPU: a dry run on the CPU, not GPU figures'}; {bench.machine()}\n")
    print(bench.table(["measurement", "result", "peak GPU memory"], rows, text_columns=2))


if __name__ == "__main__":
    main()
