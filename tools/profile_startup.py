"""What `tfsep separate` of a 1 s file costs before it separates anything, and where it goes.

    python tools/profile_startup.py --rounds 5

Times, in fresh processes taken in turn, the command with the shipped model as it runs by default
(its TFLite form in LiteRT) and with its Keras form (`--model saved_models/band/model.keras`, what
the default ran before 2026-12-07), from start to written stems of a 1 s stereo file; then, in
one process each, the stages of both paths. Separating 1 s itself takes a few hundredths of a
second, so the whole time is the fixed cost.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
KERAS_FORM = ROOT / "saved_models" / "band" / "model.keras"
PATHS = {"default (TFLite form, LiteRT)": [], "Keras form": ["--model", str(KERAS_FORM)]}

STAGES = r"""
import json, sys, time
import numpy as np
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
form = sys.argv[1]
import soundfile, soxr
from tfsep import formats, pretrained
mark("import numpy, soundfile, soxr, tfsep")
path = pretrained.separation_model() if form == "tflite" else pretrained.resolve()
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
    backend = formats.backend(path)
    mark("open 2 LiteRT interpreters (and run each once)")
chunk = np.zeros((1, 44100, 2), np.float32)
backend(chunk)
mark("first call, 1 s")
backend(chunk)
mark("second call, 1 s")
print(json.dumps([(name, b - a) for (_, a), (name, b) in zip(marks, marks[1:])]))
"""


def command_seconds(arguments, wav, folder):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfsep.cli", "separate", str(wav), "-o", str(folder), "-q",
                    "--overwrite", *arguments], check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "one.wav"
        noise = np.random.default_rng(0).uniform(-0.3, 0.3, (44100, 2)).astype(np.float32)
        soundfile.write(wav, noise, 44100, subtype="PCM_16")
        times = {name: [] for name in PATHS}
        for _ in range(args.rounds):
            for name, arguments in PATHS.items():
                times[name].append(command_seconds(arguments, wav, Path(scratch) / "out"))
        print(f"`tfsep separate` of a 1 s stereo file, median of {args.rounds} fresh processes taken in turn:\n")
        print("| model | wall time | rounds |\n| --- | ---: | --- |")
        for name, values in times.items():
            print(f"| {name} | {statistics.median(values):.2f} s | {', '.join(f'{v:.2f}' for v in values)} |")
        for form in ("keras", "tflite"):
            result = subprocess.run([sys.executable, "-c", STAGES, form], capture_output=True, text=True, check=True)
            stages = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"\nStages of the {form} path, one process:\n\n| stage | seconds |\n| --- | ---: |")
            for name, seconds in stages:
                print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
