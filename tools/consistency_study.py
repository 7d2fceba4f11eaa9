"""Mixture-consistent stems against the model's own: BSSEval v4 on a data set's test tracks, side by side.

    python tools/consistency_study.py data/band2 --max-tracks 30 --model band

Each row is the same model and tracks, scored by `tfsep.evaluate` with the same code (`--variants`):
`masks`, the model's masks as they are; `ratio:P`, the masks normalised to ratio masks
M_k^P / Σ_j M_j^P (the model option `ratio_mask_exponent`); `residual:evenly` and `residual:energy`,
the model's stems plus a share of the residual r = x − Σ_k ŝ_k, r / K or in proportion to each
stem's energy in the track. All but `masks` sum to the mixture. The last column is how far the
stems' sum is from the mixture, 10·log10(Σx² / Σ(x − Σ_k ŝ_k)²), the mean over tracks.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

VARIANTS = ("masks", "ratio:1", "ratio:2", "residual:evenly", "residual:energy")


def stems_of(dataset, subset, separator, tracks, share=None):
    """(track, mixture, rate, {source: stem}) of each track; with `share`, the residual added as it says."""
    from tfsep import audio, data

    for track in data.find_tracks(dataset, subset, separator.sources)[:tracks]:
        mixture, rate = audio.read(track.files["mixture"])
        stems = separator.separate(mixture, rate)
        if share is not None:
            residual = mixture - sum(stems.values())
            energy = {source: float(np.sum(stem**2)) for source, stem in stems.items()}
            total = max(sum(energy.values()), 1e-30)
            stems = {source: stem + (1 / len(stems) if share == "evenly" else energy[source] / total) * residual
                     for source, stem in stems.items()}
        yield track, mixture, rate, stems


def sum_to_mixture_db(results):
    """The mean over tracks of 10·log10(Σx² / Σ(x − Σŝ)²)."""
    values = [10 * np.log10(np.sum(mixture**2) / max(np.sum((mixture - sum(stems.values()))**2), 1e-30))
              for _, mixture, _, stems in results]
    return float(np.mean(values))


def score(args, model, variant):
    """(summary of `tfsep.evaluate`, sum-to-mixture dB) of one variant."""
    from tfsep import audio
    from tfsep.evaluate import evaluate
    from tfsep.models import reconfigure
    from tfsep.separate import Separator

    kind, _, value = variant.partition(":")
    if kind != "residual":
        variant_model = reconfigure(model, ratio_mask_exponent=float(value)) if kind == "ratio" else model
        report = evaluate(args.dataset, args.subset, model=variant_model, max_tracks=args.max_tracks, progress=False)
        consistency = sum_to_mixture_db(stems_of(args.dataset, args.subset, Separator(variant_model),
                                                 args.max_tracks))
        return report["summary"], consistency
    with tempfile.TemporaryDirectory() as folder:  # the estimates in museval's layout, scored as another system's
        results = []
        for track, mixture, rate, stems in stems_of(args.dataset, args.subset, Separator(model), args.max_tracks,
                                                    value):
            for source, stem in stems.items():
                audio.write(Path(folder) / track.name / f"{source}.wav", stem, rate)
            results.append((track, mixture, rate, stems))
        report = evaluate(args.dataset, args.subset, estimates=folder, sources=model.sources,
                          max_tracks=args.max_tracks, progress=False)
    return report["summary"], sum_to_mixture_db(results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--subset", default="test")
    parser.add_argument("--model", default="band")
    parser.add_argument("--max-tracks", type=int, default=30)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()

    from tfsep import providers
    from tfsep.models import load_model

    model = load_model(providers.resolve(args.model))
    rows = {}
    for variant in args.variants:
        rows[variant] = score(args, model, variant)
        print(variant, json.dumps(rows[variant][0]["mean"]), f"sum vs mixture {rows[variant][1]:.1f} dB", flush=True)
    sources = list(model.sources)
    print(f"\n{args.model} on {args.dataset} ({args.subset}, first {args.max_tracks} tracks), BSSEval v4 SDR (dB)\n")
    print("| stems | " + " | ".join(sources) + " | mean | global SDR | SIR | SAR | sum vs mixture (dB) |")
    print("| --- |" + " ---: |" * (len(sources) + 5))
    for variant, (summary, consistency) in rows.items():
        cells = [f"{summary[s]['SDR']:.2f}" for s in sources]
        mean = summary["mean"]
        print(f"| {variant} | " + " | ".join(cells) + f" | {mean['SDR']:.2f} | {mean['global_SDR']:.2f} | "
              f"{mean['SIR']:.2f} | {mean['SAR']:.2f} | {consistency:.1f} |")


if __name__ == "__main__":
    main()
