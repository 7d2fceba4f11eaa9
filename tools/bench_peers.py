"""Real-time factor and peak memory of the shipped model against its peers, side by side in one run.

    python tools/bench_peers.py [--model saved_models/band] [--seconds 60] [--rounds 18] [--threads 2]

Systems, each in a worker process of its own (so its peak RSS is its own), taking turns,
one separation of `--seconds` of stereo 44.1 kHz each per round, so all are timed under
the same machine conditions; times are medians over the rounds, after a warm-up:

- tfsep's shipped model as Keras (`model.keras`), SavedModel (`1/`, `serving_default`)
  and TFLite (`band.tflite` in LiteRT), the three forms `tools/bench_export.py` times;
- a Keras re-creation of Spleeter's 4-stem U-Net (tfsep's `unet` base: six 5×5 stride-2
  levels of 16–512 filters per source, 39.3 M parameters, the lowest 1024 bins, masks
  zero above them), random weights: a re-creation, not the spleeter package;
- Open-Unmix's `umxhq` with its own `Separator` (openunmix from PyPI in `.venv-openunmix`,
  `tools/peers.py`), random weights, with soft masks (niter 0) and with its default
  Wiener step (niter 1).
"""

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
from bench_export import ProcessWorker  # noqa: E402
from peers import openunmix_python  # noqa: E402


class _OpenUnmixWorker:
    """`openunmix_recipe.py bench` in the Open-Unmix environment, one line per message; the
    interface of bench_export's `ProcessWorker`."""

    def __init__(self, niter, seconds, threads):
        command = [str(openunmix_python()), str(TOOLS / "openunmix_recipe.py"), "bench", "--niter", str(niter),
                   "--seconds", str(seconds), "--threads", str(threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self):
        return self.process.stdout.readline().strip() == "ready"

    def run(self):
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def stop(self):
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        peak = int(self.process.stdout.readline())
        self.process.wait()
        return peak


def spleeter_recreation(folder):
    """The Spleeter 4-stem U-Net re-creation, random weights, saved as a .keras file in `folder`."""
    import tfsep

    model = tfsep.build_model("unet", size="base", bandwidth=11020.0, mask_activation="softmax",
                              mask_extension="zeros")
    assert tfsep.models.max_bin(44100, 4096, 11020.0) == 1024
    path = Path(folder) / "spleeter-4stems-recreation.keras"
    model.save(path)
    return str(path), model.count_params()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("saved_models/band"), help="the shipped model's folder")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=18)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        maker = context.Pool(1)  # TensorFlow stays out of this process
        spleeter, spleeter_params = maker.apply(spleeter_recreation, (folder,))
        maker.close()
        tflite = next(args.model.glob("*.tflite"))
        workers = {
            "tfsep default, Keras": ProcessWorker(context, "keras", str(args.model / "model.keras"), args.seconds,
                                                   args.threads),
            "tfsep default, SavedModel": ProcessWorker(context, "savedmodel", str(args.model / "1"), args.seconds,
                                                        args.threads),
            "tfsep default, TFLite (LiteRT)": ProcessWorker(context, "tflite", str(tflite), args.seconds,
                                                             args.threads),
            f"Spleeter 4stems U-Net, Keras re-creation ({spleeter_params / 1e6:.1f} M)":
                ProcessWorker(context, "keras", spleeter, args.seconds, args.threads),
            "Open-Unmix umxhq, soft masks (niter 0)": _OpenUnmixWorker(0, args.seconds, args.threads),
            "Open-Unmix umxhq, Wiener (niter 1, its default)": _OpenUnmixWorker(1, args.seconds, args.threads),
        }
        assert all(worker.ready() for worker in workers.values())
        times = {name: [] for name in workers}
        for round_ in range(args.rounds):
            for name, worker in workers.items():
                times[name].append(worker.run())
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
        peaks = {name: worker.stop() for name, worker in workers.items()}

    medians = {name: float(np.median(t)) for name, t in times.items()}
    fastest_peer = min(t for name, t in medians.items() if not name.startswith("tfsep"))
    print(f"{args.seconds:g} s of stereo 44.1 kHz, {args.threads} threads each, median of {args.rounds} rounds run "
          "side by side; random weights for the peers\n")
    print("| system | time | real-time factor | peak RSS | speed vs the fastest peer |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, median in medians.items():
        print(f"| {name} | {median:.2f} s | {args.seconds / median:.1f}× | {peaks[name] / 2**30:.2f} GiB | "
              f"{fastest_peer / median:.2f}× |")


if __name__ == "__main__":
    main()
