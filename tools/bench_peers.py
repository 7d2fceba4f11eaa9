"""Real-time factor and peak memory of the shipped model against its peers, side by side in one run.

    python tools/bench_peers.py [--systems default spleeter openunmix] [--model saved_models/band] [--seconds 60]
                                [--rounds 18] [--threads 2] [--long-minutes 10]

Systems, each in a worker process of its own (so its peak RSS is its own), taking turns,
one separation of `--seconds` of stereo 44.1 kHz each per round, so all are timed under
the same machine conditions; times are medians over the rounds, after a warm-up. Three
groups, chosen with `--systems` (`default` and `spleeter` unless named):

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

`openunmix`, all with THE SAME random umxhq weights (hidden 512, every parameter and buffer random,
written by Open-Unmix's own code with `torch.save` in `.venv-openunmix`, `tools/openunmix_reference.py`):
- openunmix 1.3.0's `Separator` as `openunmix.umxhq()` builds it, loaded with those state dicts, with
  its default Wiener step (niter 1) and with soft masks (niter 0), the whole signal in one call;
- tfsep's conversion of the same files (`providers.convert("openunmix", paths)`) through
  `Separator.separate` with its default settings (5 s chunks, Open-Unmix's Wiener step as the converted
  model has it), with one chunk of the whole file (`chunk_seconds` longer than it: Open-Unmix's own
  stems), with soft masks (`Separator.load(path, wiener_iterations=0)`, as `tfsep separate --wiener 0`),
  and as TFLite files (`formats.write("tflite",
  model, path)`, with and without the Wiener step) in LiteRT through `Separator.load(path).separate`; a
  TFLite form that does not convert, or that LiteRT cannot run, is left out and the reason printed;
- after the timing: the parity of tfsep's stems with Open-Unmix's on the same noise (the largest
  absolute difference and the lowest SDR of the four stems; tfsep's default chunks against
  Open-Unmix's whole-file call, and one chunk of the whole file against it), and the time and peak RSS of
  `tfsep separate SONG.wav --model umxhq` on `--long-minutes` of stereo 44.1 kHz noise (16-bit wav),
  the converted model placed where `--model umxhq` finds it (`$TFSEP_HOME/models`), in a fresh process.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import bench
import numpy as np
from bench.separation import RATE, form_run, noise, separate_run
from bench.workers import command_worker, in_child, process_worker, time_workers
from peers import openunmix_python, spleeter_python


def _openunmix(niter, seconds, threads, weights=()):
    return command_worker([openunmix_python(), bench.TOOLS / "openunmix_recipe.py", "bench", "--niter", niter,
                           "--seconds", seconds, "--threads", threads, "--weights", *weights])


def openunmix_weights(folder):
    """Random umxhq-size state dicts written by Open-Unmix's code in its environment: [TARGET-00000000.pth]."""
    subprocess.run([openunmix_python(), bench.TOOLS / "openunmix_reference.py", "write", folder, "--hidden", "512",
                    "--seed", "0"], check=True)
    return [str(Path(folder) / f"{target}-00000000.pth") for target in ("vocals", "drums", "bass", "other")]


def openunmix_keras(folder, weights):
    """tfsep's conversion of the state dicts `weights` (`providers.convert`), saved as a .keras file: its path."""
    from tfsep import formats, providers

    return str(formats.write("keras", providers.convert("openunmix", weights), Path(folder) / "umxhq.keras"))


def openunmix_tflite(weights, path, wiener_iterations=None):
    """(path, None) of `formats.write("tflite", model, path)` of the conversion of `weights` (with
    `wiener_iterations`, if given), opened once in LiteRT to check that it runs, or (None, why not)."""
    from tfsep import formats, providers

    try:
        formats.write("tflite", providers.convert("openunmix", weights), path, wiener_iterations=wiener_iterations)
    except ValueError as error:
        return None, f"not converted: {error}"
    try:
        formats.open(path, 1)
    except ValueError as error:
        return None, f"converted, but LiteRT cannot run it: {error}"
    return str(path), None


def openunmix_parity(folder, umx, seconds):
    """[[tfsep path, niter, largest |difference|, lowest SDR]] of tfsep's stems of `seconds` of the benchmark's
    noise against Open-Unmix's whole-file stems from the same weights (`openunmix_systems`'s `umx`)."""
    mixture = Path(folder) / "mixture.npy"
    np.save(mixture, noise(seconds))
    references = {niter: Path(folder) / f"openunmix-niter{niter}.npz" for niter in (0, 1)}
    for niter, reference in references.items():
        subprocess.run([openunmix_python(), bench.TOOLS / "openunmix_reference.py", "separate", mixture, reference,
                        *umx["weights"], "--niter", str(niter)], check=True)
    return in_child(tfsep_parity, umx["forms"], mixture, references, seconds)


def tfsep_parity(forms, mixture, references, seconds):
    """`openunmix_parity`'s rows, from tfsep's forms {form: path}, the mixture (.npy) and Open-Unmix's stems
    ({niter: .npz})."""
    from tfsep.separate import Separator

    song = np.load(mixture)
    whole = {"chunk_seconds": seconds + 1}  # one chunk of the whole song
    paths = [("Keras, Separator.separate with its defaults (5 s chunks)", 1, "keras", {}),
             ("Keras, Separator.separate, one chunk of the whole file", 1, "keras", whole),
             ("TFLite (LiteRT), Separator.separate with its defaults", 1, "tflite", {}),
             ("TFLite (LiteRT), Separator.separate, one chunk of the whole file", 1, "tflite", whole),
             ("Keras, Separator.separate (5 s chunks)", 0, "keras", {"wiener_iterations": 0}),
             ("Keras, Separator.separate, one chunk of the whole file", 0, "keras", {**whole, "wiener_iterations": 0}),
             ("TFLite (LiteRT), Separator.separate (5 s chunks)", 0, "tflite niter 0", {}),
             ("TFLite (LiteRT), Separator.separate, one chunk of the whole file", 0, "tflite niter 0", whole)]
    paths = [(name, niter, partial(lambda path, **options: Separator.load(path, **options).separate(song, RATE),
                                   forms[form], **options))
             for name, niter, form, options in paths if form in forms]
    rows = []
    for name, niter, separate in paths:
        stems, reference = separate(), np.load(references[niter])
        differences, sdrs = [], []
        for target in reference.files:
            ours, theirs = np.asarray(stems[target]).reshape(reference[target].shape), reference[target]
            differences.append(np.abs(ours - theirs).max())
            sdrs.append(10 * np.log10(np.sum(theirs ** 2) / max(np.sum((ours - theirs) ** 2), 1e-30)))
        rows.append([name, niter, f"{max(differences):.1e}", f"{min(sdrs):.1f} dB"])
    return rows


def long_song(folder, model, minutes):
    """(seconds, peak RSS, peak private memory, in bytes) of `tfsep separate SONG.wav --model umxhq` on `minutes`
    of stereo 44.1 kHz noise (16-bit wav, in whole 10 s), with the converted `model` where `--model umxhq` finds
    it, in a fresh process."""
    import soundfile

    folder = Path(folder)
    (folder / "home" / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / "home" / "models" / "openunmix-umxhq.keras")
    song = folder / "song.wav"
    with soundfile.SoundFile(song, "w", RATE, 2, "PCM_16") as file:
        for block in range(max(1, round(minutes * 6))):  # blocks of 10 s
            file.write(noise(10, 0.3, seed=block))
    return bench.run_command(["env", f"TFSEP_HOME={folder / 'home'}", sys.executable, "-m", "tfsep.cli", "separate",
                              song, "--model", "umxhq", "-o", folder / "separated", "--overwrite", "--quiet"],
                             private=True)


def _spleeter(checkpoint, graph, seconds, threads):
    return command_worker([spleeter_python(), bench.TOOLS / "spleeter_recipe.py", "bench", checkpoint, "2stems",
                           "--seconds", seconds, "--threads", threads] + ["--graph"] * graph)


def openunmix_systems(folder, seconds, threads):
    """The openunmix group: {"workers": {system: Worker}, "groups": {system: its group}, "forms": {form: path},
    "refusals": {TFLite form: why it does not run}, "weights": [the state dicts]}."""
    weights = openunmix_weights(Path(folder) / "umxhq")
    forms, refusals = {"keras": in_child(openunmix_keras, folder, weights)}, {}
    for form, wiener_iterations in (("tflite", None), ("tflite niter 0", 0)):
        path = Path(folder) / f"umxhq{'-niter0' * (wiener_iterations == 0)}.tflite"
        tflite, refusal = in_child(openunmix_tflite, weights, path, wiener_iterations)
        forms.update({form: tflite} if tflite else {})
        refusals.update({form: refusal} if refusal else {})

    def tfsep(form, **options):
        return process_worker(partial(separate_run, forms[form], seconds, threads, **options))

    wiener, soft = "tfsep umxhq (converted), ", "tfsep umxhq (converted), soft masks (niter 0), "
    with_wiener = {
        f"{wiener}Separator.separate (default settings: Keras form, Wiener niter 1, 5 s chunks)": tfsep("keras"),
        f"{wiener}Separator.separate, one chunk of the whole file (Wiener niter 1)":
            tfsep("keras", chunk_seconds=seconds + 1),
        **({f"{wiener}TFLite (LiteRT) in Separator.separate (Wiener niter 1)": tfsep("tflite")}
           if "tflite" in forms else {}),
        "Open-Unmix umxhq, its Separator (Wiener niter 1, its default), the same weights":
            _openunmix(1, seconds, threads, weights),
    }
    soft_masks = {
        f"{soft}Separator.separate (Keras form, 5 s chunks)": tfsep("keras", wiener_iterations=0),
        **({f"{soft}TFLite (LiteRT) in Separator.separate": tfsep("tflite niter 0")}
           if "tflite niter 0" in forms else {}),
        "Open-Unmix umxhq, its Separator, soft masks (niter 0), the same weights":
            _openunmix(0, seconds, threads, weights),
    }
    return {"workers": {**with_wiener, **soft_masks}, "forms": forms, "refusals": refusals, "weights": weights,
            "groups": {**dict.fromkeys(with_wiener, "openunmix"), **dict.fromkeys(soft_masks, "soft masks")}}


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
    parser.add_argument("--systems", nargs="+", choices=["default", "spleeter", "openunmix"],
                        default=["default", "spleeter"], help="groups of systems to run side by side (default and "
                        "spleeter)")
    parser.add_argument("--model", type=Path, default=Path("saved_models/band"), help="the shipped model's folder")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=18)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, default=10.0,
                        help="the openunmix group's long file for tfsep separate's peak memory (10; 0: none)")
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
        if "openunmix" in args.systems:
            umx = openunmix_systems(folder, args.seconds, args.threads)
            workers.update(umx["workers"])
            groups.update(umx["groups"])
        times, peaks = time_workers(workers, args.rounds, progress=True)
        if "openunmix" in args.systems:
            parity = openunmix_parity(folder, umx, args.seconds)
            long = args.long_minutes and long_song(folder, umx["forms"]["keras"], args.long_minutes)

    medians = bench.medians(times)
    fastest_peer = {group: min(t for name, t in medians.items() if groups[name] == group and
                               not name.startswith("tfsep")) for group in set(groups.values())}
    weights = {"default": "random weights for the default group's peers",
               "spleeter": "Spleeter's published 2stems weights for the spleeter group",
               "openunmix": "the same random umxhq weights in every system of the openunmix group"}
    print(f"{bench.machine()}\n{args.seconds:g} s of stereo 44.1 kHz, {args.threads} threads each, median of "
          f"{args.rounds} rounds run side by side; {', '.join(weights[group] for group in args.systems)}\n")
    rows = [[name, f"{median:.2f} s", f"{args.seconds / median:.1f}×", f"{peaks[name] / 2**30:.2f} GiB",
             f"{fastest_peer[groups[name]] / median:.2f}×"] for name, median in medians.items()]
    print(bench.table(["system", "time", "real-time factor", "peak RSS", "speed vs the fastest peer of its group"],
                      rows))
    if "openunmix" in args.systems:
        print()
        for form, refusal in umx["refusals"].items():
            print(f"{form}: {refusal}\n")
        print(bench.table(["tfsep path", "niter", "largest |difference| from Open-Unmix's stems",
                           "lowest SDR of the 4 stems against Open-Unmix's"], parity, text_columns=2))
        if long:
            seconds, peak, private = long
            print(f"\ntfsep separate SONG.wav --model umxhq, {args.long_minutes:g} min of stereo 44.1 kHz 16-bit "
                  f"noise: {seconds:.1f} s ({args.long_minutes * 60 / seconds:.1f}× real time), peak RSS "
                  f"{peak / 2**30:.2f} GiB ({peak / 1e9:.2f} GB), of which private (RssAnon) at most "
                  f"{private / 2**30:.2f} GiB ({private / 1e9:.2f} GB); the rest are pages of shared libraries")


if __name__ == "__main__":
    main()
