"""Untrusted input to the exported graphs: the SavedModel signature and LiteRT refuse it without crashing."""

import numpy as np
import pytest
import tensorflow as tf


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 100, 3), np.float32), "wrong rank or channel count"),
    (np.zeros((100, 2), np.float32), "wrong rank or channel count"),
    (np.zeros((0, 100, 2), np.float32), "the batch is empty"),
    (np.zeros((1, 0, 2), np.float32), "no samples"),
    (np.zeros((2, 4001, 2), np.float32), "exceeds the limit of 8000 samples per request"),  # 1 s at 8 kHz
    (np.zeros((1, 100, 2), np.float64), "expected to be a float tensor"),
])
def test_bad_input_fails_with_a_clear_message(signatures, bad, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signatures["serving_default"](waveform=tf.constant(bad))


GOOD = {"clip": {"waveform": np.random.default_rng(0).uniform(-0.5, 0.5, (1, 800, 2)).astype(np.float32)},
        "stream": {"block": np.random.default_rng(1).uniform(-0.5, 0.5, (1, 832, 2)).astype(np.float32),
                   "state": np.zeros((1, 896, 2), np.float32)}}


@pytest.mark.slow
@pytest.mark.parametrize("form, inputs, message", [
    ("clip", {"waveform": np.zeros((1, 500, 3), np.float32)}, r"RESHAPE\) failed to invoke"),  # 3 channels
    ("clip", {"waveform": np.zeros((500, 2), np.float32)}, r"PAD\) failed to prepare"),  # no batch axis
    ("clip", {"waveform": np.zeros((1, 0, 2), np.float32)}, r"failed to prepare"),  # no samples
    ("clip", {"waveform": np.zeros((1, 500, 2), np.float64)}, r"expected type FLOAT32"),
    ("stream", {"block": np.zeros((1, 100, 2), np.float32), "state": np.zeros((1, 896, 2), np.float32)},
     r"failed to (prepare|invoke)"),  # a block of the wrong length
    ("stream", {"block": np.zeros((1, 832, 3), np.float32), "state": np.zeros((1, 896, 3), np.float32)},
     r"RESHAPE\) failed to invoke"),
])
def test_litert_refuses_bad_input_to_both_forms_and_then_runs_good_input_unchanged(form, inputs, message, tiny_model,
                                                                                 tmp_path_factory):
    """LiteRT's kernels refuse each bad input in their own words (a device app checks shapes first, as
    `Separator` does), and the interpreter is not left broken."""
    from tfsep import formats
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    folder = tmp_path_factory.getbasetemp() / "bad-input-forms"
    path = folder / f"{form}.tflite"
    if not path.exists():
        folder.mkdir(exist_ok=True)
        formats.write("tflite", tiny_model, path, block_seconds=0.1 if form == "stream" else None)
    runner = litert.Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    before = runner(**GOOD[form])
    with pytest.raises((ValueError, RuntimeError), match=message):
        runner(**inputs)
    after = runner(**GOOD[form])
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    assert any(np.abs(value).max() > 0 for value in after.values())
