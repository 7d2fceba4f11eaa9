"""Time of `tfsep evaluate` on N tracks of S seconds, with museval in 1 process or in parallel.

    python tools/bench_evaluate.py data/band20 [--tracks 10] [--seconds 30] [--jobs 1 2]

The tracks are the first S seconds of the data set's train tracks (repeated if there are
too few), written as a temporary test subset. Each case evaluates the oracle IRM (so that
the time is the metrics, not a network) with every report file; the same metrics come out
whatever the number of jobs.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import soundfile

from tfsep import data
from tfsep.evaluate import evaluate

SOURCES = ("vocals", "drums", "bass", "other")


def crop_tracks(root, folder, tracks, seconds):
    found = data.find_tracks(root, "train", SOURCES)
    for i in range(tracks):
        track = found[i % len(found)]
        target = folder / "test" / f"{i:02d}_{track.name}"
        target.mkdir(parents=True)
        for name, path in track.files.items():
            audio, rate = soundfile.read(path, frames=int(seconds * soundfile.info(path).samplerate))
            soundfile.write(target / f"{name}.wav", audio, rate, subtype="FLOAT")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--tracks", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        crop_tracks(args.dataset, folder, args.tracks, args.seconds)
        print(f"{args.tracks} tracks × {args.seconds:g} s, 4 stereo stems, oracle IRM, full report")
        print("| museval processes | time | per track |\n| ---: | ---: | ---: |")
        summaries = []
        for jobs in args.jobs:
            start = time.perf_counter()
            report = evaluate(folder, "test", oracle="irm", report=folder / f"report{jobs}", jobs=jobs,
                              progress=False)
            elapsed = time.perf_counter() - start
            summaries.append(json.dumps(report["summary"], sort_keys=True))
            print(f"| {jobs} | {elapsed:.1f} s | {elapsed / args.tracks:.2f} s |", flush=True)
        print(f"\nsame metrics for every job count: {len(set(summaries)) == 1}; "
              f"mean SDR {report['summary']['mean']['SDR']:.2f} dB")


if __name__ == "__main__":
    main()
