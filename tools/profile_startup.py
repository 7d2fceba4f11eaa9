"""What `tfsep separate` of a 1 s file costs before it separates anything, and where it goes.

    python tools/profile_startup.py --rounds 5

Times, in fresh processes taken in turn, the command with the shipped model as it runs by default
(its TFLite form in LiteRT) and with its Keras form (`--model saved_models/band/model.keras`, what
the default ran before 2026-12-07), from start to written stems of a 1 s stereo file; then, in
one process each, the stages of both paths. Separating 1 s itself takes a few hundredths of a
second, so the whole time is the fixed cost.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import bench
import soundfile
from bench.separation import noise

KERAS_FORM = bench.TOOLS.parent / "saved_models" / "band" / "model.keras"
PATHS = {"default (TFLite form, LiteRT)": [], "Keras form": ["--model", str(KERAS_FORM)]}

STAGES = r"""
import json, sys, time
import numpy as np
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
form = sys.argv[1]
import soundfile, soxr
from tfsep import formats, providers
mark("import numpy, soundfile, soxr, tfsep")
path = providers.separation_model() if form == "tflite" else providers.resolve()
if form == "keras":
    import tensorflow as tf
    mark("import TensorFlow and Keras")
    from tfsep.models import inference_model, load_model
    model = load_model(path)
    mark("load the .keras model")
    model = inference_model(model)
    mark("rebuild it in its inference form")
    from tfsep.formats.keras import KerasBackend
    backend = KerasBackend(model)
    backend._run.get_concrete_function()
    mark("trace the tf.function")
else:
    backend = formats.open(path)
    mark("open 2 LiteRT interpreters (and run each once)")
chunk = np.zeros((1, 44100, 2), np.float32)
backend(chunk)
mark("first call, 1 s")
backend(chunk)
mark("second call, 1 s")
print(json.dumps([(name, b - a) for (_, a), (name, b) in zip(marks, marks[1:])]))
"""


def command_seconds(arguments, wav, folder):
    """Wall seconds of `tfsep separate` of `wav` into `folder` with `arguments`, in a fresh process."""
    return bench.run_command([sys.executable, "-m", "tfsep.cli", "separate", wav, "-o", folder, "-q", "--overwrite",
                              *arguments])[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "one.wav"
        soundfile.write(wav, noise(1, 0.3), 44100, subtype="PCM_16")
        out = Path(scratch) / "out"
        times = bench.take_turns({name: lambda arguments=arguments: command_seconds(arguments, wav, out)
                                  for name, arguments in PATHS.items()}, args.rounds, warm_up=False)
        medians = bench.medians(times)
        print(f"{bench.machine()}\n`tfsep separate` of a 1 s stereo file, median of {args.rounds} fresh processes "
              "taken in turn:\n")
        print(bench.table(["model", "wall time", "rounds"], [
            [name, f"{medians[name]:.2f} s", ", ".join(f"{v:.2f}" for v in values)] for name, values in times.items()]))
        for form in ("keras", "tflite"):
            stages = bench.run_json([sys.executable, "-c", STAGES, form])
            print(f"\nStages of the {form} path, one process:\n")
            print(bench.table(["stage", "seconds"], [[name, f"{seconds:.2f}"] for name, seconds in stages]))


if __name__ == "__main__":
    main()
