"""Mixture-consistent stems against the model's own: BSSEval v4 on a data set's test tracks, side by side.

    python tools/consistency_study.py data/band2 --max-tracks 30 --model band --exponents 1 2

Each row is the same model and tracks, scored by `tfsep.evaluate` with the same code: its masks as
they are, then normalised to ratio masks M_k^p / Σ_j M_j^p (the model option `ratio_mask_exponent`),
whose stems sum to the mixture. The last column is how far the stems' sum is from the mixture,
10·log10(Σx² / Σ(x − Σ_k ŝ_k)²), the mean over tracks (higher: closer; a ratio mask gives the
inverse STFT's rounding, over 100 dB).
"""

import argparse
import json
from pathlib import Path

import numpy as np


def sum_to_mixture_db(dataset, subset, separator, tracks):
    """The mean over `tracks` of 10·log10(Σx² / Σ(x − Σŝ)²) for `separator`'s stems."""
    from tfsep import audio, data

    values = []
    for track in data.find_tracks(dataset, subset, separator.sources)[:tracks]:
        mixture, rate = audio.read(track.files["mixture"])
        stems = separator.separate(mixture, rate)
        error = mixture - sum(stems.values())
        values.append(10 * np.log10(np.sum(mixture**2) / max(np.sum(error**2), 1e-30)))
    return float(np.mean(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--subset", default="test")
    parser.add_argument("--model", default="band")
    parser.add_argument("--max-tracks", type=int, default=30)
    parser.add_argument("--exponents", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--reports", type=Path, help="also write each variant's report here")
    args = parser.parse_args()

    from tfsep import pretrained
    from tfsep.evaluate import evaluate
    from tfsep.models import load_model, reconfigure
    from tfsep.separate import Separator

    model = load_model(pretrained.resolve(args.model))
    variants = {"the model's masks": model}
    for exponent in args.exponents:
        variants[f"ratio masks, p = {exponent:g}"] = reconfigure(model, ratio_mask_exponent=exponent)
    rows = {}
    for label, variant in variants.items():
        report = evaluate(args.dataset, args.subset, model=variant, max_tracks=args.max_tracks, progress=False,
                          report=args.reports / label.replace(" ", "_").replace(",", "") if args.reports else None)
        rows[label] = (report["summary"], sum_to_mixture_db(args.dataset, args.subset, Separator(variant),
                                                            args.max_tracks))
        print(label, json.dumps(report["summary"]["mean"]), flush=True)
    sources = list(model.sources)
    print(f"\n{args.model} on {args.dataset} ({args.subset}, first {args.max_tracks} tracks), BSSEval v4 SDR (dB)\n")
    print("| masks | " + " | ".join(sources) + " | mean | global SDR | SIR | SAR | sum vs mixture (dB) |")
    print("| --- |" + " ---: |" * (len(sources) + 5))
    for label, (summary, consistency) in rows.items():
        cells = [f"{summary[s]['SDR']:.2f}" for s in sources]
        mean = summary["mean"]
        print(f"| {label} | " + " | ".join(cells) + f" | {mean['SDR']:.2f} | {mean['global_SDR']:.2f} | "
              f"{mean['SIR']:.2f} | {mean['SAR']:.2f} | {consistency:.1f} |")


if __name__ == "__main__":
    main()
