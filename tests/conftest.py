"""Shared settings: tiny STFTs and models so that the suite stays fast on 2 CPU cores."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# A small STFT at 8 kHz: 129 bins, 8 ms hop.
TINY = {"sample_rate": 8000, "n_fft": 256, "hop": 64, "size": "tiny"}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny `bandconv` SeparationModel at 8 kHz (random weights), shared by the tests that only run it."""
    import tfsep

    return tfsep.build_model("bandconv", **TINY)


@pytest.fixture(scope="session")
def tiny_model_file(tiny_model, tmp_path_factory):
    """`tiny_model` saved as a .keras file, for the command-line tests."""
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model.save(path)
    return path
