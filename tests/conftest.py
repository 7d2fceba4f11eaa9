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


def tiny_config(root, output, **sections):
    """A config that trains the tiny bandconv at 8 kHz on 1 s chunks, in seconds."""
    config = {
        "data": {"root": str(root), "sample_rate": 8000, "chunk_seconds": 1.0, "batch_size": 8,
                 "steps_per_epoch": 6, "validation_batches": 2},
        "model": {"architecture": "bandconv", "size": "tiny", "n_fft": 256, "hop": 64},
        "optimizer": {"learning_rate": 0.003},
        "schedule": {"epochs": 4, "normalization_batches": 1},
        "run": {"output": str(output), "verbose": 0, "tensorboard_every": 2},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """A rendered band set of three tracks at 44.1 kHz, for the training tests."""
    render = pytest.importorskip("tfsep.render")
    root = tmp_path_factory.mktemp("data") / "band"
    try:
        render.render_dataset(root, "band", tracks=3, seed=11, progress=False)
    except render.RenderError as error:
        pytest.skip(str(error))
    return root


@pytest.fixture(scope="session")
def exported(tiny_model, tmp_path_factory):
    """`tiny_model` as a TF Serving SavedModel (version 3, 0.5 s chunks, at most 1 s per request)."""
    from tfsep.export import export_savedmodel

    return export_savedmodel(tiny_model, tmp_path_factory.mktemp("serving") / "band", version=3, chunk_seconds=0.5,
                             max_seconds=1.0)


@pytest.fixture(scope="session")
def signatures(exported):
    """The signatures of `exported`, loaded with plain TensorFlow."""
    import tensorflow as tf

    return tf.saved_model.load(str(exported)).signatures
