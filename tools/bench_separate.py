"""Chunked separation of long files: peak memory and time per chunk length, and chunked-vs-whole agreement.

    python tools/bench_separate.py [--model M.keras] [--minutes 2 10] [--chunks 10 30 60]

Part 1 runs `tfsep separate` on stereo 44.1 kHz noise files of each length with each chunk
length, each in its own process, and reports wall time and peak resident memory (the
child's maxrss): memory should depend on the chunk, not on the file.
Part 2 separates 60 s whole and in chunks in this process and reports the largest
difference away from chunk borders (beyond the network's receptive field) and overall.
Without --model, a `bandconv` base model with random weights stands in (same graph cost).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import bench
import numpy as np
import soundfile


def write_noise(path, minutes, rate=44100):
    """A stereo float wav of `minutes`, written block by block."""
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, 2, "FLOAT") as file:
        for _ in range(int(minutes * 6)):
            file.write(rng.uniform(-0.3, 0.3, (rate * 10, 2)).astype(np.float32))


def agreement(model, seconds=60.0, chunk=10.0, overlap=2.0):
    """(max |difference| away from chunk borders, overall) between chunked and whole separation."""
    from tfsep.models import load_model
    from tfsep.separate import Separator

    model = load_model(model)
    rate = model.sample_rate
    mixture = np.random.default_rng(1).uniform(-0.3, 0.3, (int(seconds * rate), 2)).astype(np.float32)
    whole = model.predict(mixture[None], verbose=0)
    separator = Separator(model, chunk_seconds=chunk, overlap_seconds=overlap)
    chunked = separator.separate(mixture, rate)
    step = separator.plan.chunk - separator.plan.overlap
    interior = np.ones(len(mixture), bool)
    margin = int(3.5 * rate)  # bandconv base's receptive field is about 3 s
    for border in range(step, len(mixture), step):
        interior[max(0, border - margin): border + separator.plan.overlap + margin] = False
    differences = [np.abs(chunked[s] - whole[s][0]) for s in model.sources]
    return max(d[interior].max() for d in differences), max(d.max() for d in differences), interior.mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 10])
    parser.add_argument("--chunks", type=float, nargs="+", default=[10, 30, 60])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = args.model
        if model is None:
            from tfsep.models import build_model

            model = folder / "bandconv.keras"
            build_model("bandconv").save(model)
        rows = []
        for minutes in sorted(args.minutes):
            path = folder / f"noise {minutes:g} min.wav"
            write_noise(path, minutes)
            for chunk in sorted(args.chunks):
                elapsed, peak = bench.run_command([sys.executable, "-m", "tfsep.cli", "separate", path, "--model",
                                                   model, "-o", folder / "out", "--chunk", chunk, "--overwrite",
                                                   "--quiet"])
                rows.append([f"{minutes:g} min", f"{chunk:g} s", f"{elapsed:.1f} s", f"{minutes * 60 / elapsed:.1f}×",
                             f"{peak / 2**30:.2f} GiB"])
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
            path.unlink()
        inside, overall, share = agreement(model)
        print(f"{bench.machine()}\n")
        print(bench.table(["file", "chunk", "time", "real-time factor", "peak RSS"], rows))
        print(f"\nchunked (10 s, 2 s overlap) vs whole, 60 s: max |difference| {inside:.2e} away from chunk borders "
              f"({share:.0%} of samples), {overall:.2e} overall")


if __name__ == "__main__":
    main()
