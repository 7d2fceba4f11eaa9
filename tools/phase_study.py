"""The mixture's phase against Griffin-Lim, with ideal ratio masks and with a model, on one data set.

    python tools/phase_study.py data/band2 --subset test --max-tracks 20 --iterations 0 4 16 \
        --model saved_models/band/model.keras --report reports/phase

Each row is one `tfsep.evaluate` run (BSSEval v4, median over tracks of per-track medians);
the iterations are `layers.GriffinLim`'s, started from the mixture's phase (0: the mixture's
phase itself). Prints a markdown table of SDR per source and the mean.
"""

import argparse
from pathlib import Path

from tfsep.evaluate import evaluate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--subset", default="test")
    parser.add_argument("--max-tracks", type=int, default=20)
    parser.add_argument("--iterations", type=int, nargs="+", default=[0, 4, 16])
    parser.add_argument("--model", help="also a model (a .keras file or a pretrained name)")
    parser.add_argument("--report", type=Path, default=Path("reports/phase"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    systems = [("ideal ratio mask", {"oracle": "irm"})] + ([("model", {"model": args.model})] if args.model else [])
    rows = []
    for label, system in systems:
        for iterations in args.iterations:
            report = evaluate(args.dataset, args.subset, report=args.report / f"{system.get('oracle', 'model')}-gl"
                              f"{iterations}", griffin_lim=iterations, jobs=args.jobs, max_tracks=args.max_tracks,
                              progress=False, **system)
            summary = report["summary"]
            sources = [s for s in summary if s != "mean"]
            rows.append((label, iterations, [summary[s]["SDR"] for s in sources], summary["mean"]["SDR"]))
            print(f"{label}, {iterations} Griffin-Lim iterations: mean SDR {summary['mean']['SDR']:.2f} dB", flush=True)
    print(f"\n| system | Griffin-Lim iterations | {' | '.join(sources)} | mean |")
    print("|---|---|" + "---|" * (len(sources) + 1))
    for label, iterations, values, mean in rows:
        print(f"| {label} | {iterations} | {' | '.join(f'{v:.2f}' for v in values)} | {mean:.2f} |")


if __name__ == "__main__":
    main()
