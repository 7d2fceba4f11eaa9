"""Make the shipped default model from a training run, and score it beside the oracle bound.

    python tools/ship_default_model.py runs/default --dataset data/band [--out saved_models/band] [--reports reports]

1. The run's `model.keras`, or for a run stopped before it wrote one, the model with its
   best checkpoint (`tfsep.train.best_model`).
2. Writes OUT/model.keras, the TF Serving folder OUT/1/ and the builtin-only OUT/band.tflite
   (OUT's other files, such as MODEL_CARD.md, are left alone; `--overwrite` replaces these three).
3. `tfsep evaluate` of the model and of the oracle ideal ratio mask on the test subset, into
   REPORTS/default and REPORTS/irm, and prints both tables: the numbers of the model card.
"""

import argparse
import shutil
from pathlib import Path

import tfsep
from tfsep import formats
from tfsep.evaluate import evaluate, markdown_table
from tfsep.train import best_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the training run's output folder")
    parser.add_argument("--dataset", type=Path, required=True, help="the data set it was trained on")
    parser.add_argument("--out", type=Path, default=Path("saved_models/band"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model, export and reports")
    args = parser.parse_args()

    targets = [args.out / "model.keras", args.out / "1", args.out / "band.tflite",
               args.reports / "default", args.reports / "irm"]
    existing = [str(target) for target in targets if target.exists()]
    if existing and not args.overwrite:
        parser.error(f"{existing[0]} exists; pass --overwrite to replace it")
    for target in existing:
        shutil.rmtree(target) if Path(target).is_dir() else Path(target).unlink()

    finished = args.run / "model.keras"
    model = tfsep.load_model(finished) if finished.is_file() else best_model(args.run)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.keras")
    formats.write("savedmodel", model, args.out, version=1)
    formats.write("tflite", model, args.out / "band.tflite")
    for path in targets[:3]:
        size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        print(f"{path}: {size / 2**20:.2f} MiB")

    for name, options in (("default", {"model": args.out / "model.keras"}), ("irm", {"oracle": "irm"})):
        report = evaluate(args.dataset, "test", report=args.reports / name, progress=False, **options)
        print(markdown_table(report))


if __name__ == "__main__":
    main()
