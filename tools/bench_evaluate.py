"""Time of `tfsep evaluate` on N tracks of S seconds, with museval in 1 process or in parallel.

    python tools/bench_evaluate.py data/band20 [--tracks 10] [--seconds 30] [--jobs 1 2]

The tracks are the first S seconds of the data set's train tracks (repeated if there are
too few), written as a temporary test subset. Each case evaluates the oracle IRM (so that
the time is the metrics, not a network) with every report file; the same metrics come out
whatever the number of jobs.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import bench
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
        summaries, rows = [], []
        for jobs in args.jobs:
            report, elapsed = bench.timed(lambda: evaluate(folder, "test", oracle="irm", jobs=jobs, progress=False,
                                                           report=folder / f"report{jobs}"))
            summaries.append(json.dumps(report["summary"], sort_keys=True))
            rows.append([jobs, f"{elapsed:.1f} s", f"{elapsed / args.tracks:.2f} s"])
            print(f"{jobs} museval processes: {elapsed:.1f} s", file=sys.stderr, flush=True)
        print(f"{bench.machine()}\n{args.tracks} tracks × {args.seconds:g} s, 4 stereo stems, oracle IRM, full report")
        print(bench.table(["museval processes", "time", "per track"], rows, text_columns=0))
        print(f"\nsame metrics for every job count: {len(set(summaries)) == 1}; "
              f"mean SDR {report['summary']['mean']['SDR']:.2f} dB")


if __name__ == "__main__":
    main()
