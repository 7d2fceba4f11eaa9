"""Real-time factor and peak memory of the shipped model against its peers, side by side in one run.

    python tools/bench_peers.py [--systems default spleeter] [--model saved_models/band] [--seconds 60]
                                [--rounds 18] [--threads 2]

Systems, each in a worker process of its own (so its peak RSS is its own), taking turns,
one separation of `--seconds` of stereo 44.1 kHz each per round, so all are timed under
the same machine conditions; times are medians over the rounds, after a warm-up. Two
groups, chosen with `--systems`:

`default`:
- tfsep's shipped model through `Separator.separate` with its default settings, what `tfsep
  separate` runs: its TFLite form (`band.tflite`) in LiteRT, one single-threaded interpreter per
  thread; its Keras form (`model.keras`) through `Separator.separate` too; and in one whole-signal
  call as Keras, SavedModel (`1/`, `serving_default`) and TFLite, the forms `tools/bench_export.py` times;
- a Keras re-creation of Spleeter's 4-stem U-Net (tfsep's `unet` base: six 5×5 stride-2
  levels of 16–512 filters per source, 39.3 M parameters, the lowest 1024 bins, masks
  zero above them), random weights: a re-creation, not the spleeter package;
- Open-Unmix's `umxhq` with its own `Separator` (openunmix from PyPI in `.venv-openunmix`,
  `tools/peers.py`), random weights, with soft masks (niter 0) and with its default
  Wiener step (niter 1).

`spleeter`, all with Spleeter's published 2stems weights (`spleeter:2stems`):
- tfsep's conversion as Keras, SavedModel (`serving_default`) and TFLite (LiteRT) in one
  call per separation, and through `Separator.separate` with its default chunks;
- the real Spleeter 2.4.2 (TensorFlow 2.12.1, `.venv-spleeter`, `tools/spleeter_recipe.py`):
  its public `Separator.separate()`, and its prediction graph built once.
"""

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
from bench_export import ProcessWorker  # noqa: E402
from peers import openunmix_python, spleeter_python  # noqa: E402


class _PeerWorker:
    """A peer's `bench` command in its own environment, one line per message; the interface of
    bench_export's `ProcessWorker`."""

    def __init__(self, command):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self):
        return self.process.stdout.readline().strip() == "ready"

    def run(self):
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def stop(self):
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        peak = int(self.process.stdout.readline())
        self.process.wait()
        return peak


def _openunmix(niter, seconds, threads):
    return _PeerWorker([str(openunmix_python()), str(TOOLS / "openunmix_recipe.py"), "bench", "--niter", str(niter),
                        "--seconds", str(seconds), "--threads", str(threads)])


def _spleeter(checkpoint, graph, seconds, threads):
    return _PeerWorker([str(spleeter_python()), str(TOOLS / "spleeter_recipe.py"), "bench", str(checkpoint),
                        "2stems", "--seconds", str(seconds), "--threads", str(threads)] + ["--graph"] * graph)


def spleeter_forms(folder):
    """Spleeter's published 2stems checkpoint in `folder`/2stems, and tfsep's conversion of it as a .keras
    file, a SavedModel and a TFLite file: {form: path}."""
    from tfsep import pretrained
    from tfsep.export import export_savedmodel, export_tflite
    from tfsep.models import load_model

    keras_path = pretrained.resolve("spleeter:2stems")
    model = load_model(keras_path)
    return {"checkpoint": str(pretrained.spleeter_checkpoint(Path(folder) / "2stems")), "keras": str(keras_path),
            "savedmodel": str(export_savedmodel(model, Path(folder) / "serving")),
            "tflite": str(export_tflite(model, Path(folder) / "spleeter-2stems.tflite"))}


def spleeter_recreation(folder):
    """The Spleeter 4-stem U-Net re-creation, random weights, saved as a .keras file in `folder`."""
    import tfsep

    model = tfsep.build_model("unet", size="base", bandwidth=11020.0, mask_activation="softmax",
                              mask_extension="zeros")
    assert tfsep.models.max_bin(44100, 4096, 11020.0) == 1024
    path = Path(folder) / "spleeter-4stems-recreation.keras"
    model.save(path)
    return str(path), model.count_params()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", choices=["default", "spleeter"], default=["default", "spleeter"],
                        help="groups of systems to run side by side (both)")
    parser.add_argument("--model", type=Path, default=Path("saved_models/band"), help="the shipped model's folder")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=18)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        maker = context.Pool(1)  # TensorFlow stays out of this process
        workers, groups = {}, {}  # {system: worker}, {system: its group}
        if "default" in args.systems:
            spleeter, spleeter_params = maker.apply(spleeter_recreation, (folder,))
            tflite = next(args.model.glob("*.tflite"))
            workers.update({
                "tfsep default, Separator.separate (default settings, as tfsep separate: the TFLite form)":
                    ProcessWorker(context, "separator", str(tflite), args.seconds, args.threads),
                "tfsep default, Keras form in Separator.separate (default chunks)": ProcessWorker(
                    context, "separator", str(args.model / "model.keras"), args.seconds, args.threads),
                "tfsep default, Keras, one whole-signal call": ProcessWorker(
                    context, "keras", str(args.model / "model.keras"), args.seconds, args.threads),
                "tfsep default, SavedModel": ProcessWorker(context, "savedmodel", str(args.model / "1"),
                                                           args.seconds, args.threads),
                "tfsep default, TFLite (LiteRT), one whole-signal call": ProcessWorker(
                    context, "tflite", str(tflite), args.seconds, args.threads),
                f"Spleeter 4stems U-Net, Keras re-creation ({spleeter_params / 1e6:.1f} M)":
                    ProcessWorker(context, "keras", spleeter, args.seconds, args.threads),
                "Open-Unmix umxhq, soft masks (niter 0)": _openunmix(0, args.seconds, args.threads),
                "Open-Unmix umxhq, Wiener (niter 1, its default)": _openunmix(1, args.seconds, args.threads),
            })
            groups.update(dict.fromkeys(workers, "default"))
        if "spleeter" in args.systems:
            forms = maker.apply(spleeter_forms, (folder,))
            for label, kind in (("Keras", "keras"), ("SavedModel", "savedmodel"), ("TFLite (LiteRT)", "tflite")):
                workers[f"tfsep spleeter:2stems, {label}"] = ProcessWorker(context, kind, forms[kind], args.seconds,
                                                                            args.threads)
            workers["tfsep spleeter:2stems, Separator.separate (default chunks)"] = ProcessWorker(
                context, "separator", forms["keras"], args.seconds, args.threads)
            workers["Spleeter 2.4.2 2stems, its graph built once"] = _spleeter(forms["checkpoint"], True,
                                                                             args.seconds, args.threads)
            workers["Spleeter 2.4.2 2stems, Separator.separate()"] = _spleeter(forms["checkpoint"], False,
                                                                             args.seconds, args.threads)
            groups.update({name: "spleeter" for name in workers if name not in groups})
        maker.close()
        assert all(worker.ready() for worker in workers.values())
        times = {name: [] for name in workers}
        for round_ in range(args.rounds):
            for name, worker in workers.items():
                times[name].append(worker.run())
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
        peaks = {name: worker.stop() for name, worker in workers.items()}

    medians = {name: float(np.median(t)) for name, t in times.items()}
    fastest_peer = {group: min(t for name, t in medians.items() if groups[name] == group and
                               not name.startswith("tfsep")) for group in set(groups.values())}
    print(f"{args.seconds:g} s of stereo 44.1 kHz, {args.threads} threads each, median of {args.rounds} rounds run "
          "side by side; random weights for the default group's peers, Spleeter's published 2stems weights for "
          "the spleeter group\n")
    print("| system | time | real-time factor | peak RSS | speed vs the fastest peer of its group |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, median in medians.items():
        print(f"| {name} | {median:.2f} s | {args.seconds / median:.1f}× | {peaks[name] / 2**30:.2f} GiB | "
              f"{fastest_peer[groups[name]] / median:.2f}× |")


if __name__ == "__main__":
    main()
