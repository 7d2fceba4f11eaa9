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
import tempfile
from pathlib import Path

import bench
from bench.separation import form_run
from bench.workers import command_worker, in_child, process_worker, time_workers
from peers import openunmix_python, spleeter_python


def _openunmix(niter, seconds, threads):
    return command_worker([openunmix_python(), bench.TOOLS / "openunmix_recipe.py", "bench", "--niter", niter,
                           "--seconds", seconds, "--threads", threads])


def _spleeter(checkpoint, graph, seconds, threads):
    return command_worker([spleeter_python(), bench.TOOLS / "spleeter_recipe.py", "bench", checkpoint, "2stems",
                           "--seconds", seconds, "--threads", threads] + ["--graph"] * graph)


def spleeter_forms(folder):
    """Spleeter's published 2stems checkpoint in `folder`/2stems, and tfsep's conversion of it as a .keras
    file, a SavedModel and a TFLite file: {form: path}."""
    from tfsep import formats, providers
    from tfsep.models import load_model
    from tfsep.providers import spleeter

    keras_path = providers.resolve("spleeter:2stems")
    model = load_model(keras_path)
    return {"checkpoint": str(spleeter.spleeter_checkpoint(Path(folder) / "2stems")), "keras": str(keras_path),
            "savedmodel": str(formats.write("savedmodel", model, Path(folder) / "serving")),
            "tflite": str(formats.write("tflite", model, Path(folder) / "spleeter-2stems.tflite"))}


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

    with tempfile.TemporaryDirectory() as folder:
        workers, groups = {}, {}  # {system: worker}, {system: its group}

        def tfsep(form, path):
            return process_worker(form_run, form, str(path), args.seconds, args.threads)

        if "default" in args.systems:
            spleeter, spleeter_params = in_child(spleeter_recreation, folder)
            tflite = next(args.model.glob("*.tflite"))
            workers.update({
                "tfsep default, Separator.separate (default settings, as tfsep separate: the TFLite form)":
                    tfsep("separator", tflite),
                "tfsep default, Keras form in Separator.separate (default chunks)":
                    tfsep("separator", args.model / "model.keras"),
                "tfsep default, Keras, one whole-signal call": tfsep("keras", args.model / "model.keras"),
                "tfsep default, SavedModel": tfsep("savedmodel", args.model / "1"),
                "tfsep default, TFLite (LiteRT), one whole-signal call": tfsep("tflite", tflite),
                f"Spleeter 4stems U-Net, Keras re-creation ({spleeter_params / 1e6:.1f} M)": tfsep("keras", spleeter),
                "Open-Unmix umxhq, soft masks (niter 0)": _openunmix(0, args.seconds, args.threads),
                "Open-Unmix umxhq, Wiener (niter 1, its default)": _openunmix(1, args.seconds, args.threads),
            })
            groups.update(dict.fromkeys(workers, "default"))
        if "spleeter" in args.systems:
            forms = in_child(spleeter_forms, folder)
            for label, kind in (("Keras", "keras"), ("SavedModel", "savedmodel"), ("TFLite (LiteRT)", "tflite")):
                workers[f"tfsep spleeter:2stems, {label}"] = tfsep(kind, forms[kind])
            workers["tfsep spleeter:2stems, Separator.separate (default chunks)"] = tfsep("separator", forms["keras"])
            workers["Spleeter 2.4.2 2stems, its graph built once"] = _spleeter(forms["checkpoint"], True,
                                                                             args.seconds, args.threads)
            workers["Spleeter 2.4.2 2stems, Separator.separate()"] = _spleeter(forms["checkpoint"], False,
                                                                             args.seconds, args.threads)
            groups.update({name: "spleeter" for name in workers if name not in groups})
        times, peaks = time_workers(workers, args.rounds, progress=True)

    medians = bench.medians(times)
    fastest_peer = {group: min(t for name, t in medians.items() if groups[name] == group and
                               not name.startswith("tfsep")) for group in set(groups.values())}
    print(f"{bench.machine()}\n{args.seconds:g} s of stereo 44.1 kHz, {args.threads} threads each, median of "
          f"{args.rounds} rounds run side by side; random weights for the default group's peers, Spleeter's "
          "published 2stems weights for the spleeter group\n")
    rows = [[name, f"{median:.2f} s", f"{args.seconds / median:.1f}×", f"{peaks[name] / 2**30:.2f} GiB",
             f"{fastest_peer[groups[name]] / median:.2f}×"] for name, median in medians.items()]
    print(bench.table(["system", "time", "real-time factor", "peak RSS", "speed vs the fastest peer of its group"],
                      rows))


if __name__ == "__main__":
    main()
