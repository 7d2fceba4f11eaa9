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
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _separator(kind, path, threads):
    """A function float32 (1, samples, 2) -> dict of stems for export path `kind` at `path`; `separator` is
    `tfsep.Separator.load(path).separate` with its default chunks, what `tfsep separate` runs (in LiteRT for a
    `.tflite` path)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if kind == "separator":
        from tfsep.separate import Separator

        separator = Separator.load(path, threads=threads)
        return lambda waveform: separator.separate(waveform[0], 44100)
    if kind == "keras":
        import tfsep

        model = tfsep.load_model(path)
        run = tf.function(model, input_signature=[tf.TensorSpec((None, None, 2), tf.float32)])
        return lambda waveform: {k: v.numpy() for k, v in run(tf.constant(waveform)).items()}
    if kind == "savedmodel":
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda waveform: {k: v.numpy() for k, v in serve(waveform=tf.constant(waveform)).items()}
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    runner = interpreter.get_signature_runner("serving_default")
    return lambda waveform: runner(waveform=waveform)


def _worker(kind, path, seconds, threads, connection):
    """Warm up, then separate once per 'run' message, answering with the time; on 'stop', the peak RSS."""
    separate = _separator(kind, path, threads)
    mixture = np.random.default_rng(0).uniform(-0.5, 0.5, (1, int(seconds * 44100), 2)).astype(np.float32)
    separate(mixture)
    connection.send("ready")
    while connection.recv() == "run":
        start = time.perf_counter()
        separate(mixture)
        connection.send(time.perf_counter() - start)
    connection.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


class ProcessWorker:
    """`_worker` for one export path, in a process spawned from `context`, behind a pipe."""

    def __init__(self, context, kind, path, seconds, threads):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(kind, path, seconds, threads, child))
        self.process.start()

    def ready(self):
        return self.connection.recv() == "ready"

    def run(self):
        """One separation; returns its time in seconds."""
        self.connection.send("run")
        return self.connection.recv()

    def stop(self):
        """Ends the worker; returns its peak RSS in bytes."""
        self.connection.send("stop")
        peak = self.connection.recv()
        self.process.join()
        return peak


def _size(path):
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export_all(model_path, folder, wiener_iterations=0):
    """{path name: exported file or folder} for every export path of the model at `model_path`."""
    import tfsep
    from tfsep.export import export_savedmodel, export_tflite
    from tfsep.models import reconfigure

    if model_path is None:
        model_path = Path(folder) / "bandconv-base.keras"
        tfsep.build_model("bandconv", size="base").save(model_path)
    model = tfsep.load_model(model_path)
    paths = {"keras": str(model_path), "savedmodel": str(export_savedmodel(model, Path(folder) / "serving"))}
    if wiener_iterations:
        wiener_path = Path(folder) / f"wiener{wiener_iterations}.keras"
        reconfigure(model, wiener_iterations=wiener_iterations).save(wiener_path)
        paths[f"keras-wiener{wiener_iterations}"] = str(wiener_path)
    for quantize in ("none", "float16", "dynamic-int8"):
        name = "tflite-float32" if quantize == "none" else f"tflite-{quantize}"
        paths[name] = str(export_tflite(model, Path(folder) / f"{name}.tflite", quantize=quantize))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a .keras model (default: bandconv base, random weights)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stereo 44.1 kHz audio per separation (60)")
    parser.add_argument("--rounds", type=int, default=5, help="timed separations per path (5)")
    parser.add_argument("--threads", type=int, default=2, help="threads per path (2)")
    parser.add_argument("--wiener", type=int, default=0, help="also time Keras with N Wiener iterations (0: not)")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        exporter = context.Pool(1)  # export in a child, so that this process holds no TensorFlow
        paths = exporter.apply(export_all, (args.model, folder, args.wiener))
        exporter.close()
        workers = {}
        for kind, path in paths.items():
            runtime = "tflite" if kind.startswith("tflite") else "savedmodel" if kind == "savedmodel" else "keras"
            workers[kind] = ProcessWorker(context, runtime, path, args.seconds, args.threads)
        assert all(worker.ready() for worker in workers.values())
        times = {kind: [] for kind in workers}
        for _ in range(args.rounds):
            for kind, worker in workers.items():
                times[kind].append(worker.run())
        peaks = {kind: worker.stop() for kind, worker in workers.items()}
        sizes = {kind: _size(path) for kind, path in paths.items()}

    fastest = min(np.median(t) for t in times.values())
    print(f"{args.seconds:g} s of stereo 44.1 kHz, {args.threads} threads per path, median of {args.rounds} rounds "
          f"run side by side; model: {args.model or 'bandconv base, random weights'}\n")
    print("| path | file size | time | real-time factor | peak RSS | relative to fastest |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in workers:
        median = np.median(times[kind])
        relative = "fastest" if median == fastest else f"{median / fastest:.2f}× slower"
        print(f"| {kind} | {sizes[kind] / 2**20:.2f} MiB | {median:.2f} s | {args.seconds / median:.1f}× | "
              f"{peaks[kind] / 2**30:.2f} GiB | {relative} |")


if __name__ == "__main__":
    main()
