"""Export a SeparationModel for serving: a SavedModel for TF Serving, a builtin-only TFLite model.

`export_savedmodel(model, PATH)` writes `PATH/<version>/` (saved_model.pb, variables/,
assets.extra/tfsep.json) with three signatures, none of which needs tfsep to load:

- `serving_default`: input `waveform` float32 [batch, samples, channels] at the model's
  rate, any samples >= 1; one output per source, named by the source.
- `chunk`: the same for fixed-length chunks [batch, chunk_samples, channels], for clients
  that stream (overlap the chunks and crossfade, as `tfsep.separate` does).
- `metadata`: no input; sources, sample rate, channels, STFT settings, chunk length and
  versions as constant tensors.

Bad input (channel count, an empty batch or no samples) fails inside the graph with a
message that says what the signature expects; wrong rank or dtype are refused by the
signature itself.

`export_tflite(model, PATH)` writes one `.tflite` file that converts with TFLite builtin
ops only (no Flex), with a resizable input length and batch: signature `serving_default`,
input `waveform`, outputs named by the sources, and the same description as a "tfsep"
JSON entry in the flatbuffer's metadata (`tflite_metadata(PATH)` reads it back).
"""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

import tfsep
from tfsep import audio
from tfsep.models import reconfigure

QUANTIZATIONS = ("none", "float16", "dynamic-int8")
TFLITE_METADATA = "tfsep"


def metadata(model):
    """What an exported model needs to say about itself: sources, rate, channels, STFT, versions."""
    config = model.get_config()
    return {
        "sources": list(model.sources), "sample_rate": model.sample_rate, "channels": config["channels"],
        "n_fft": config["n_fft"], "hop": config["hop"], "window": config["window"],
        "wiener_iterations": config["wiener_iterations"], "architecture": config["architecture"],
        "tfsep_version": tfsep.__version__,
    }


class _Serving(tf.Module):
    """The model and its signatures, as a tf.Module that tf.saved_model can save."""

    def __init__(self, model, chunk_samples, description):
        super().__init__(name="tfsep")
        self.model = model
        self.channels = model.get_config()["channels"]
        self.description = description
        self.serve = tf.function(self._separate, input_signature=[
            tf.TensorSpec([None, None, None], tf.float32, name="waveform")])
        self.serve_chunk = tf.function(self._separate, input_signature=[
            tf.TensorSpec([None, chunk_samples, None], tf.float32, name="waveform")])
        self.describe = tf.function(self._metadata, input_signature=[])

    def _separate(self, waveform):
        expected = f"waveform must be float32 [batch, samples, {self.channels}] at {self.description['sample_rate']} Hz"
        # A server feeds the graph without enforcing the signature's rank; padding the shape lets a
        # rank-1 or rank-2 input reach the channel check instead of failing in a slice.
        shape = tf.concat([tf.shape(waveform), [0, 0, 0]], 0)
        checks = [
            tf.debugging.assert_equal(shape[2], self.channels, message=f"{expected}: wrong rank or channel count"),
            tf.debugging.assert_positive(shape[0], message=f"{expected}: the batch is empty"),
            tf.debugging.assert_positive(shape[1], message=f"{expected}: no samples"),
        ]
        with tf.control_dependencies(checks):
            waveform = tf.ensure_shape(waveform, [None, None, self.channels])  # static channels for the network
        return dict(self.model(waveform, training=False))

    def _metadata(self):
        return {key: tf.constant(value) for key, value in self.description.items()}


def export_savedmodel(model, path, version=1, chunk_seconds=10.0, wiener_iterations=None):
    """Write `model` to `path/<version>/` for TF Serving; returns that folder.

    The folder is written beside its target and renamed into place, so an existing export
    is never half-replaced; an existing `path/<version>` is refused.
    """
    if wiener_iterations is not None:
        model = reconfigure(model, wiener_iterations=wiener_iterations)
    hop = model.get_config()["hop"]
    chunk_samples = max(1, int(round(chunk_seconds * model.sample_rate / hop))) * hop
    target = Path(path) / str(int(version))
    if target.exists():
        raise FileExistsError(f"{target}: already exists; export another --version or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    description = {**metadata(model), "chunk_samples": chunk_samples, "model_version": int(version)}
    module = _Serving(model, chunk_samples, description)
    temporary = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part"))
    try:
        signatures = {"serving_default": module.serve, "chunk": module.serve_chunk, "metadata": module.describe}
        tf.saved_model.save(module, str(temporary), signatures=signatures)
        (temporary / "assets.extra").mkdir()
        (temporary / "assets.extra" / "tfsep.json").write_text(json.dumps(description, indent=2))
        os.replace(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


def export_tflite(model, path, quantize="none", wiener_iterations=None):
    """Convert `model` to a TFLite file at `path` with builtin ops only; returns the path.

    quantize: "none" (float32), "float16" (weights stored as float16) or "dynamic-int8"
    (dynamic-range quantisation: int8 weights, float activations). The file is written
    atomically.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {list(QUANTIZATIONS)}, got {quantize!r}")
    if wiener_iterations is not None:
        model = reconfigure(model, wiener_iterations=wiener_iterations)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # the converter's own message names the ops it could not map
        raise ValueError(f"{model.get_config()['architecture']} does not convert to TFLite builtin ops "
                         f"({_conversion_failure(str(error))})") from None
    description = {**metadata(model), "quantize": quantize}
    flatbuffer = _with_metadata(flatbuffer, TFLITE_METADATA, json.dumps(description).encode())
    path = Path(path)
    audio.replace_atomically(path, lambda temporary: Path(temporary).write_bytes(flatbuffer))
    return path


def _conversion_failure(message):
    """The line of a converter error that says what failed: the TF Select ops it needed, or the first error."""
    lines = message.splitlines()
    for line in lines:
        if line.startswith("TF Select ops:"):
            return line.strip()
    errors = [re.sub(r"^loc\(.*\)\): ", "", line.split("error: ", 1)[1]) for line in lines if "error: " in line]
    return errors[0].strip() if errors else (lines[0] if lines else "unknown error")


def _with_metadata(flatbuffer, name, value):
    """The TFLite flatbuffer with one more metadata entry `name` holding the bytes `value`."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_metadata(path):
    """The description that `export_tflite` embedded in the TFLite file at `path`."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
    for entry in model.metadata or []:
        if entry.name in (TFLITE_METADATA, TFLITE_METADATA.encode()):
            return json.loads(bytes(model.buffers[entry.buffer].data))
    raise ValueError(f"{path}: has no tfsep metadata")
