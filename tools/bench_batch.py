"""Throughput of `tfsep batch` (Apache Beam, local runner) against `tfsep separate` on the same files, in one run.

    python tools/bench_batch.py [--model M] [--files 20] [--seconds 30] [--long-minutes 10] [--rounds 1]

Both are run as users run them, as commands in fresh processes, with default settings,
on `--files` copies of the example song stretched to `--seconds` each (44.1 kHz stereo,
each shifted and scaled differently). Reports seconds of audio per second of wall time
and each command's peak RSS. With `--long-minutes`, `tfsep batch` also separates one file
of that length alone, to show that its memory is bounded by the chunk, not the file.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
SONG = ROOT / "examples" / "song.flac"


def make_files(folder, count, seconds, seed=0):
    """`count` stereo 44.1 kHz files of `seconds` each from the example song, tiled, rolled and scaled."""
    song, rate = soundfile.read(SONG, dtype="float32", always_2d=True)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples = int(seconds * rate)
    for k in range(count):
        tiled = np.tile(song, (samples // len(song) + 2, 1))
        start = int(rng.integers(len(song)))
        soundfile.write(folder / f"track{k:03d}.flac", rng.uniform(0.5, 1.0) * tiled[start:start + samples], rate,
                        subtype="PCM_16")
    return sorted(folder.iterdir())


def timed(command):
    """(wall seconds, peak RSS in GiB) of `command` run in a fresh process (through a small wrapper that reports
    its children's peak RSS)."""
    wrapper = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", wrapper, *map(str, command)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{command[1]} failed: {result.stderr[-2000:]}")
    return seconds, int(result.stdout.split()[-1]) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a model for both commands (default: the shipped model)")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="0: skip the long-file run")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    tfsep = Path(sys.executable).parent / "tfsep"
    model = ["--model", args.model] if args.model else []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as folder:
        folder = Path(folder)
        inputs = make_files(folder / "in", args.files, args.seconds)
        audio_seconds = args.files * args.seconds
        rows = {"tfsep separate": [], "tfsep batch": []}
        for round_ in range(args.rounds):
            out = folder / f"out{round_}"
            rows["tfsep separate"].append(timed([tfsep, "separate", *inputs, "-o", out / "separate", "-q", *model]))
            rows["tfsep batch"].append(timed([tfsep, "batch", folder / "in", "-o", out / "batch", *model]))
        print(f"{args.files} files of {args.seconds:g} s (44.1 kHz stereo), {args.rounds} round(s), median\n")
        print("| command | wall time | audio s per s | peak RSS |\n| --- | ---: | ---: | ---: |")
        base = np.median([seconds for seconds, _ in rows["tfsep separate"]])
        for name, runs in rows.items():
            seconds, rss = np.median([s for s, _ in runs]), max(r for _, r in runs)
            print(f"| `{name}` | {seconds:.1f} s ({base / seconds:.2f}×) | {audio_seconds / seconds:.1f} | "
                  f"{rss:.2f} GiB |")
        if args.long_minutes:
            long = make_files(folder / "long", 1, 60 * args.long_minutes, seed=1)
            seconds, rss = timed([tfsep, "batch", long[0], "-o", folder / "long-out", *model])
            print(f"\none file of {args.long_minutes:g} min through `tfsep batch`: {seconds:.1f} s, peak RSS "
                  f"{rss:.2f} GiB")


if __name__ == "__main__":
    main()
