"""tfsep: music source separation as one Keras 3 graph, waveform in, stems out."""

import os

# Before TensorFlow or Keras load: Keras on the TensorFlow backend, and TensorFlow's C++ log
# quiet (TF 2.17 logs spurious cuFFT/cuDNN "errors" at import; real errors still raise).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfsep._version import __version__  # noqa: E402 (after the environment above)

_LAZY = {
    "build_model": "tfsep.models",
    "load_model": "tfsep.models",
    "SeparationModel": "tfsep.models",
    "Separator": "tfsep.separate",
    "train": "tfsep.train",
}


def __getattr__(name):
    """Import TensorFlow only when the model API is first used, so the CLI starts quickly."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfsep' has no attribute {name!r}")


__all__ = ["build_model", "load_model", "SeparationModel", "Separator", "train", "__version__"]
