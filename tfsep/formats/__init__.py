"""The on-disk forms of a separation model, one module each: `keras` (a `.keras` file), `savedmodel` (a TF Serving
version folder written by `tfsep export`) and `tflite` (a whole-clip `.tflite` file, run in LiteRT).

Each offers `describe(path)`, the model's description (`models.describe`: sources, rate,
channels, STFT settings, segment length, and the options an export fixed) read without
building the model where the form allows, and `backend(path, threads, options)`, the
`backends.Backend` that runs it with the weightless `options` asked (`backends.OPTIONS`).
The functions here pick the module by the path. Only `keras` and `savedmodel` import
TensorFlow, and only when used.
"""

import importlib
from pathlib import Path

from tfsep import backends


def format_of(path):
    """The form of the model at `path`: `tflite` by its suffix, `savedmodel` for a folder, else `keras`."""
    path = Path(path)
    if path.suffix.lower() == ".tflite":
        return "tflite"
    return "savedmodel" if path.is_dir() else "keras"


def _module(path):
    return importlib.import_module(f"{__name__}.{format_of(path)}")


def describe(path):
    """The description of the model at `path`; ValueError or FileNotFoundError, naming it, if it is none."""
    return _module(path).describe(path)


def backend(path, threads=2, **options):
    """The `backends.Backend` that runs the model at `path` with `threads` CPU threads. `options`
    (`backends.OPTIONS`: wiener_iterations, griffin_lim_iterations, mixture_consistent; None: the model's
    own) other than the model's rebuild a `.keras` model and are refused by exports, which fixed them."""
    return _module(path).backend(path, threads, backends.asked(options))
