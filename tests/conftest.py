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
