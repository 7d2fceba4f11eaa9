"""The on-disk forms of a separation model, one module each, behind one interface.

- `keras`: a `.keras` file saved from a SeparationModel (training, `tfsep convert`, providers);
- `savedmodel`: a TF Serving version folder (`tfsep export --format savedmodel`);
- `tflite`: a `.tflite` file with builtin ops only, whole clips or streaming, run in LiteRT;
- `web`: a folder for the browser: a fixed-shape `.tflite`, the page and LiteRT.js (`tfsep export --format web`).

Each module offers:

- `describe(path)`: the model's description (`models.describe`: sources, rate, channels,
  STFT settings, segment length, and the options an export fixed), read without building
  the model where the form allows;
- `open(path, description, threads, options) -> backends.Backend`, which runs it with the
  weightless `options` asked (`backends.OPTIONS`);
- `write(model, path, **options)`, which writes a SeparationModel in that form, atomically,
  and returns what it wrote. Where writing needs TensorFlow, `write` lives in a
  `<form>_writer` module that the form's module hands out when asked for it (a module
  `__getattr__`): describing and opening a TFLite model imports no TensorFlow.

The functions here pick the module by the path or by name, and describe each file once per
process (`describe` remembers a file until it changes). Adding a form is one module with
these three functions and one entry in `FORMATS`.
"""

import functools
import importlib
import inspect
import os
from pathlib import Path

from tfsep import backends

FORMATS = ("keras", "savedmodel", "tflite", "web")  # the modules here
EXPORTS = ("savedmodel", "tflite", "web")  # the forms that `tfsep export` writes


def format_of(path):
    """The form of the model at `path`: `tflite` by its suffix, `web` for a folder with the page's model.json,
    `savedmodel` for another folder, else `keras`."""
    path = Path(path)
    if path.suffix.lower() == ".tflite":
        return "tflite"
    if path.is_dir():
        return "web" if (path / "model.json").is_file() else "savedmodel"
    return "keras"


def module(form):
    """The module of the form named `form` (one of `FORMATS`)."""
    if form not in FORMATS:
        raise ValueError(f"unknown model format {form!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(f"{__name__}.{form}")


def describe(path):
    """The description of the model at `path`; ValueError or FileNotFoundError, naming it, if it is none."""
    form = format_of(path)
    return dict(_described(str(path), form, _version(path)))


def _version(path):
    """What tells one version of a file (or a SavedModel folder, written whole) from another; None if it cannot be
    read (the form's describe says why)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _described(path, form, version):
    return module(form).describe(path)


def open(path, threads=2, **options):  # noqa: A001 (the interface's name for making a model's backend)
    """The `backends.Backend` that runs the model at `path` with `threads` CPU threads. `options`
    (`backends.OPTIONS`: wiener_iterations, griffin_lim_iterations, mixture_consistent; None: the model's
    own) other than the model's rebuild a `.keras` model and are refused by exports, which fixed them."""
    return module(format_of(path)).open(path, describe(path), threads, backends.asked(options))


def write(form, model, path, **options):
    """Write the SeparationModel `model` to `path` in the form `form`, with that form's keyword `options`
    (`writer_options`); returns the path written."""
    return module(form).write(model, path, **options)


def writer_options(form):
    """The keyword options that the form's `write` takes."""
    parameters = inspect.signature(module(form).write).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]


def exported_description(model):
    """What an exported model says about itself: `models.describe` and the tfsep version."""
    from tfsep._version import __version__
    from tfsep.models import describe as describe_model

    return {**describe_model(model), "tfsep_version": __version__}
