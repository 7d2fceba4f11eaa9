"""The peer baseline: Open-Unmix trained with its own recipe on a rendered set, then scored by `tfsep evaluate`.

    python tools/train_openunmix.py data/band --minutes 73 [--out runs/openunmix] [--reports reports]

1. Makes `.venv-openunmix` (torch CPU + openunmix from PyPI, `tools/peers.py`) if needed.
2. Trains its four target models there for `--minutes` of wall time in all
   (`tools/openunmix_recipe.py train`: Open-Unmix's `scripts/train.py` recipe); skipped when
   OUT already holds a finished run.
3. Separates the test subset with openunmix's `Separator`, with soft masks (niter 0) and
   with its default Wiener step (niter 1), into OUT/estimates-niter0 and -niter1.
4. Scores both with `tfsep evaluate --estimates` into REPORTS/openunmix-niter0 and -niter1
   and prints the tables, beside REPORTS/default and REPORTS/irm where they exist
   (`tools/ship_default_model.py` writes those).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tfsep.evaluate import evaluate, markdown_table

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
from peers import openunmix_python  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a rendered set (train/, valid/, test/)")
    parser.add_argument("--minutes", type=float, required=True, help="training wall time for all four targets")
    parser.add_argument("--out", type=Path, default=Path("runs/openunmix"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    python = str(openunmix_python())
    recipe = [python, str(TOOLS / "openunmix_recipe.py")]
    threads = ["--threads", str(args.threads)]
    if not (args.out / "separator.json").is_file():
        subprocess.run(recipe + ["train", str(args.dataset), str(args.out), "--minutes", str(args.minutes)] + threads,
                       check=True)
    training = json.loads((args.out / "separator.json").read_text())["training"]
    print(f"Open-Unmix trained {training['wall_minutes']:.1f} min of wall time "
          f"({training['cpu_minutes']:.1f} CPU min, {training['threads']} threads)")

    rows = {}
    for niter in (0, 1):
        estimates = args.out / f"estimates-niter{niter}"
        subprocess.run(recipe + ["separate", str(args.dataset), str(args.out), str(estimates), "--niter", str(niter)]
                       + threads, check=True)
        report = evaluate(args.dataset, "test", estimates=estimates, report=args.reports / f"openunmix-niter{niter}")
        print(markdown_table(report))
        rows[f"Open-Unmix, niter={niter}"] = report["summary"]
    for name in ("default", "irm"):
        metrics = args.reports / name / "metrics.json"
        if metrics.is_file():
            rows[name] = json.loads(metrics.read_text())["summary"]
    print("| system | vocals | drums | bass | other | mean |\n| --- |" + " ---: |" * 5)
    for name, summary in rows.items():
        print(f"| {name} | " + " | ".join(f"{summary[s]['SDR']:.2f}" for s in
                                         ("vocals", "drums", "bass", "other", "mean")) + " |")


if __name__ == "__main__":
    main()
