"""What export costs in separation quality: BSSEval v4 SDR of a model and of its TFLite exports on a data set.

    python tools/export_parity.py MODEL.keras --dataset data/band [--subset test] [--max-tracks N]

The model, and its whole-clip TFLite exports at float32, float16 and dynamic-range int8
run in LiteRT, separate every track of the subset with the same chunking (`tfsep
evaluate`); the table gives each one's SDR (BSSEval v4, median over frames, then over
tracks) per source and the mean, and the mean's loss against the Keras model.
"""

import argparse
import tempfile
from pathlib import Path

from tfsep.evaluate import evaluate
from tfsep.export import export_tflite
from tfsep.models import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .keras model")
    parser.add_argument("--dataset", required=True, help="data set root")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--max-tracks", type=int, help="score only the first N tracks")
    args = parser.parse_args()

    model = load_model(args.model)
    reports = {}
    with tempfile.TemporaryDirectory() as folder:
        candidates = {"keras": args.model}
        for quantize in ("none", "float16", "dynamic-int8"):
            name = "tflite float32" if quantize == "none" else f"tflite {quantize}"
            candidates[name] = export_tflite(model, Path(folder) / f"{quantize}.tflite", quantize=quantize)
        for name, path in candidates.items():
            reports[name] = evaluate(args.dataset, args.subset, model=str(path), max_tracks=args.max_tracks,
                                     progress=False)["summary"]
            print(f"{name}: mean SDR {reports[name]['mean']['SDR']:.3f} dB", flush=True)

    sources = [key for key in reports["keras"] if key != "mean"]
    print(f"\nBSSEval v4 SDR (dB) on {args.dataset} ({args.subset}); loss = Keras mean SDR minus this one's\n")
    print("| model | " + " | ".join(sources) + " | mean | loss |")
    print("| --- |" + " ---: |" * (len(sources) + 2))
    reference = reports["keras"]["mean"]["SDR"]
    for name, summary in reports.items():
        cells = [f"{summary[source]['SDR']:.3f}" for source in sources + ["mean"]]
        print(f"| {name} | " + " | ".join(cells) + f" | {reference - summary['mean']['SDR']:.3f} |")


if __name__ == "__main__":
    main()
