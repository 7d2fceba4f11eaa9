"""Throughput of `tfsep batch` (Apache Beam, local runner) against `tfsep separate` on the same files, in one run.

    python tools/bench_batch.py [--model M] [--files 20] [--seconds 30] [--long-minutes 10] [--rounds 1]

Both are run as users run them, as commands in fresh processes, with default settings,
on `--files` copies of the example song stretched to `--seconds` each (44.1 kHz stereo,
each shifted and scaled differently). Reports seconds of audio per second of wall time
and each command's peak RSS. With `--long-minutes`, `tfsep batch` also separates one file
of that length alone, to show that its memory is bounded by the chunk, not the file.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import bench
import numpy as np
import soundfile

SONG = bench.TOOLS.parent / "examples" / "song.flac"


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


def timer(command, folder):
    """A zero-argument callable: `bench.run_command` of `command` writing to a fresh folder in `folder` (`-o`)."""
    return lambda: bench.run_command([*command, "-o", tempfile.mkdtemp(dir=folder)])


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
        runs = bench.take_turns({"tfsep separate": timer([tfsep, "separate", *inputs, "-q", *model], folder),
                                 "tfsep batch": timer([tfsep, "batch", folder / "in", *model], folder)},
                                args.rounds, warm_up=False)
        print(f"{bench.machine()}\n{args.files} files of {args.seconds:g} s (44.1 kHz stereo), {args.rounds} round(s) "
              "taken in turn, median\n")
        medians = bench.medians({name: [seconds for seconds, _ in results] for name, results in runs.items()})
        base = medians["tfsep separate"]
        print(bench.table(["command", "wall time", "audio s per s", "peak RSS"], [
            [f"`{name}`", f"{seconds:.1f} s ({base / seconds:.2f}×)", f"{audio_seconds / seconds:.1f}",
             f"{max(peak for _, peak in runs[name]) / 2**30:.2f} GiB"] for name, seconds in medians.items()]))
        if args.long_minutes:
            long = make_files(folder / "long", 1, 60 * args.long_minutes, seed=1)
            seconds, peak = bench.run_command([tfsep, "batch", long[0], "-o", folder / "long-out", *model])
            print(f"\none file of {args.long_minutes:g} min through `tfsep batch`: {seconds:.1f} s, peak RSS "
                  f"{peak / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
