"""Speed, peak memory and file size of one model through every export path, side by side.

    python tools/bench_export.py [MODEL.keras] [--seconds 60] [--rounds 5] [--threads 2] [--wiener N]

Paths: the Keras model (a traced tf.function), the SavedModel's `serving_default` signature
(tf.saved_model.load, as TF Serving runs it) and the TFLite file in LiteRT at float32,
float16 and dynamic-range int8; with `--wiener N`, also the Keras model with N multichannel
Wiener iterations (what `tfsep separate --wiener N` runs). Without MODEL, a `bandconv` base
model with random weights.

Each path runs in a worker process of its own, so its peak RSS is its own (TensorFlow or
LiteRT, the model and one separation of `--seconds` of stereo); the workers take turns,
one separation each per round, so every path is timed under the same machine conditions.
Times are medians over the rounds, after one warm-up separation each.
"""

import argparse
import os
import tempfile
from pathlib import Path

import bench
from bench.separation import form_run
from bench.workers import in_child, process_worker, time_workers

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _size(path):
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export_all(model_path, folder, wiener_iterations=0):
    """{path name: exported file or folder} for every export path of the model at `model_path`."""
    import tfsep
    from tfsep import formats
    from tfsep.models import reconfigure

    if model_path is None:
        model_path = Path(folder) / "bandconv-base.keras"
        tfsep.build_model("bandconv", size="base").save(model_path)
    model = tfsep.load_model(model_path)
    paths = {"keras": str(model_path), "savedmodel": str(formats.write("savedmodel", model, Path(folder) / "serving"))}
    if wiener_iterations:
        wiener_path = Path(folder) / f"wiener{wiener_iterations}.keras"
        reconfigure(model, wiener_iterations=wiener_iterations).save(wiener_path)
        paths[f"keras-wiener{wiener_iterations}"] = str(wiener_path)
    for quantize in ("none", "float16", "dynamic-int8"):
        name = "tflite-float32" if quantize == "none" else f"tflite-{quantize}"
        paths[name] = str(formats.write("tflite", model, Path(folder) / f"{name}.tflite", quantize=quantize))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a .keras model (default: bandconv base, random weights)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stereo 44.1 kHz audio per separation (60)")
    parser.add_argument("--rounds", type=int, default=5, help="timed separations per path (5)")
    parser.add_argument("--threads", type=int, default=2, help="threads per path (2)")
    parser.add_argument("--wiener", type=int, default=0, help="also time Keras with N Wiener iterations (0: not)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        paths = in_child(export_all, args.model, folder, args.wiener)
        workers = {}
        for kind, path in paths.items():
            form = "tflite" if kind.startswith("tflite") else "savedmodel" if kind == "savedmodel" else "keras"
            workers[kind] = process_worker(form_run, form, path, args.seconds, args.threads)
        times, peaks = time_workers(workers, args.rounds)
        sizes = {kind: _size(path) for kind, path in paths.items()}

    times = bench.medians(times)
    fastest = min(times.values())
    print(f"{bench.machine()}\n{args.seconds:g} s of stereo 44.1 kHz, {args.threads} threads per path, median of "
          f"{args.rounds} rounds run side by side; model: {args.model or 'bandconv base, random weights'}\n")
    rows = [[kind, f"{sizes[kind] / 2**20:.2f} MiB", f"{median:.2f} s", f"{args.seconds / median:.1f}×",
             f"{peaks[kind] / 2**30:.2f} GiB", "fastest" if median == fastest else f"{median / fastest:.2f}× slower"]
            for kind, median in times.items()]
    print(bench.table(["path", "file size", "time", "real-time factor", "peak RSS", "relative to fastest"], rows))


if __name__ == "__main__":
    main()
