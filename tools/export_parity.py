"""What export costs in separation quality: BSSEval v4 SDR of a model and of its TFLite exports on a data set.

    python tools/export_parity.py MODEL --dataset data/band [--subset test] [--max-tracks N] [--remainder SOURCE]

MODEL is a .keras file or a pretrained name (spleeter:2stems). The model, and its whole-clip
TFLite exports at float32, float16 and dynamic-range int8 run in LiteRT, separate every
track of the subset with the same chunking (`tfsep evaluate`); the first table gives each
one's SDR (BSSEval v4, median over frames, then over tracks) per source and the mean, and
the mean's loss against the Keras model. The second gives each export's stems against the
Keras model's own (global SDR, mean over tracks, and the largest difference): what the
export changes, whatever the references.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from tfsep import data, formats, metrics, providers
from tfsep.evaluate import evaluate
from tfsep.models import load_model
from tfsep.separate import Separator


def against_keras(candidates, dataset, subset, sources, remainder, max_tracks):
    """{name: (mean global SDR of its stems against the Keras model's, largest difference)} over the tracks."""
    separators = {name: Separator.load(path) for name, path in candidates.items()}
    scores = {name: [] for name in candidates if name != "keras"}
    for track in data.find_tracks(dataset, subset, sources, remainder)[:max_tracks]:
        mixture, _, rate = data.read_stems(track, sources)
        reference = separators["keras"].separate(mixture, rate)
        reference = np.stack([reference[source] for source in sources])
        for name in scores:
            stems = separators[name].separate(mixture, rate)
            stems = np.stack([stems[source] for source in sources])
            scores[name].append((float(np.mean(metrics.sdr(reference, stems).numpy())),
                                 float(np.abs(stems - reference).max())))
    return {name: (np.mean([s for s, _ in values]), max(d for _, d in values)) for name, values in scores.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .keras model or a pretrained name")
    parser.add_argument("--dataset", required=True, help="data set root")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--max-tracks", type=int, help="score only the first N tracks")
    parser.add_argument("--remainder", help="a source that is the mixture minus the others (tfsep evaluate)")
    args = parser.parse_args()

    args.model = providers.resolve(args.model)
    model = load_model(args.model)
    reports = {}
    with tempfile.TemporaryDirectory() as folder:
        candidates = {"keras": args.model}
        for quantize in ("none", "float16", "dynamic-int8"):
            name = "tflite float32" if quantize == "none" else f"tflite {quantize}"
            candidates[name] = formats.write("tflite", model, Path(folder) / f"{quantize}.tflite", quantize=quantize)
        for name, path in candidates.items():
            reports[name] = evaluate(args.dataset, args.subset, model=str(path), max_tracks=args.max_tracks,
                                     progress=False, remainder=args.remainder)["summary"]
            print(f"{name}: mean SDR {reports[name]['mean']['SDR']:.3f} dB", flush=True)
        parity = against_keras(candidates, args.dataset, args.subset, model.sources, args.remainder,
                               args.max_tracks)

    sources = [key for key in reports["keras"] if key != "mean"]
    print(f"\nBSSEval v4 SDR (dB) on {args.dataset} ({args.subset}); loss = Keras mean SDR minus this one's\n")
    print("| model | " + " | ".join(sources) + " | mean | loss |")
    print("| --- |" + " ---: |" * (len(sources) + 2))
    reference = reports["keras"]["mean"]["SDR"]
    for name, summary in reports.items():
        cells = [f"{summary[source]['SDR']:.3f}" for source in sources + ["mean"]]
        print(f"| {name} | " + " | ".join(cells) + f" | {reference - summary['mean']['SDR']:.3f} |")
    print("\n| export | global SDR of its stems against the Keras model's (dB) | largest difference |")
    print("| --- | ---: | ---: |")
    for name, (sdr, difference) in parity.items():
        print(f"| {name} | {sdr:.1f} | {difference:.2g} |")


if __name__ == "__main__":
    main()

