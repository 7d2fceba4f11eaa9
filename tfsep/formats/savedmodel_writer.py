"""Writing the TF Serving SavedModel form (`savedmodel.write`): the model and its signatures as a tf.Module."""

import json
from pathlib import Path

import tensorflow as tf

from tfsep import files
from tfsep.formats import exported_description
from tfsep.formats.savedmodel import DESCRIPTION
from tfsep.framing import whole_hops
from tfsep.models import inference_model


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
            tf.debugging.assert_less_equal(
                shape[0] * shape[1], self.description["max_samples"],
                message=f"{expected}: batch × samples exceeds the limit of {self.description['max_samples']} "
                f"samples per request; send longer audio as several requests (see the chunk signature)"),
        ]
        with tf.control_dependencies(checks):
            waveform = tf.ensure_shape(waveform, [None, None, self.channels])  # static channels for the network
        return dict(self.model(waveform, training=False))

    def _metadata(self):
        return {key: tf.constant(value) for key, value in self.description.items()}


def write(model, path, *, version=1, chunk_seconds=10.0, wiener_iterations=None, max_seconds=120.0,
          griffin_lim_iterations=None, mixture_consistent=None):
    """Write `model` to `path/<version>/` for TF Serving; returns that folder.

    A request may hold at most `max_seconds` of audio (batch × samples, at the model's
    rate); a longer one is refused inside the graph rather than exhausting the server's
    memory (`bandconv` base holds about 30 MB per second of stereo audio). The folder is
    written beside its target and renamed into place, so an existing export is never
    half-replaced; an existing `path/<version>` is refused. The graph takes the model's
    `bitcast` spectral form (`models.inference_model`), TensorFlow's fastest.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"--version must be a positive integer, got {version}")
    model = inference_model(model, wiener_iterations=wiener_iterations, griffin_lim_iterations=griffin_lim_iterations,
                            mixture_consistent=mixture_consistent)
    hop = model.get_config()["hop"]
    chunk_samples = whole_hops(chunk_seconds, model.sample_rate, hop)
    target = Path(path) / str(version)
    if target.exists():
        raise FileExistsError(f"{target}: already exists; export another --version or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not max_seconds * model.sample_rate >= chunk_samples:
        raise ValueError(f"max_seconds ({max_seconds}) must allow at least one chunk ({chunk_seconds} s)")
    description = {**exported_description(model), "chunk_samples": chunk_samples, "model_version": int(version),
                   "max_samples": int(max_seconds * model.sample_rate)}
    module = _Serving(model, chunk_samples, description)
    signatures = {"serving_default": module.serve, "chunk": module.serve_chunk, "metadata": module.describe}

    def save(folder):
        tf.saved_model.save(module, str(folder), signatures=signatures)
        (folder / DESCRIPTION).parent.mkdir()
        (folder / DESCRIPTION).write_text(json.dumps(description, indent=2))

    return files.write_folder(target, save)
