"""Export a SeparationModel as a SavedModel in TF Serving's versioned layout.

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
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

import tfsep
from tfsep.models import reconfigure


def metadata(model, chunk_samples, version):
    """The exported model's description: a dict of plain values."""
    config = model.get_config()
    return {
        "sources": list(model.sources), "sample_rate": model.sample_rate, "channels": config["channels"],
        "n_fft": config["n_fft"], "hop": config["hop"], "window": config["window"],
        "wiener_iterations": config["wiener_iterations"], "architecture": config["architecture"],
        "chunk_samples": chunk_samples, "model_version": version, "tfsep_version": tfsep.__version__,
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
    description = metadata(model, chunk_samples, int(version))
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
