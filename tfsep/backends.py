"""The runtimes that run a separation model on a batch of chunks: Keras, a TF Serving SavedModel, and LiteRT.

A backend holds what running the model takes, `description` (`models.describe`: sources,
rate, channels, STFT settings, segment length), and is called on float32
(batch, samples, channels) at the model's rate, returning {source: (batch, samples,
channels)} as numpy. For models that cut frames into segments it runs their `valid` form
(`models.chunk_model`), which `chunking.summed_chunks` needs.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfsep import audio, files, quiet
from tfsep.models import chunk_model, describe, inference_model, load_model, tflite_metadata


class Backend:
    """What a Separator runs its chunks on: `description`, the Keras `model` if there is one, and
    `backend(batch)`: float32 (batch, samples, channels) -> {source: (batch, samples, channels)}."""

    model = None
    description = None

    def __call__(self, batch):
        raise NotImplementedError


def load(path, threads=2, wiener_iterations=None, griffin_lim_iterations=None):
    """The backend for a model file: `.tflite` (LiteRT), a SavedModel folder (`tfsep export`), else `.keras`."""
    path = Path(path)
    if path.suffix.lower() == ".tflite":
        return LiteRTBackend(path, threads, wiener_iterations, griffin_lim_iterations)
    if path.is_dir():
        return SavedModelBackend(path, wiener_iterations, griffin_lim_iterations)
    return KerasBackend(load_model(path), wiener_iterations, griffin_lim_iterations)


def _check_fixed_iterations(path, description, wiener_iterations, griffin_lim_iterations):
    """Refuse Wiener or Griffin-Lim iterations other than those an export was made with."""
    for key, flag, asked in (("wiener_iterations", "--wiener", wiener_iterations),
                             ("griffin_lim_iterations", "--griffin-lim", griffin_lim_iterations)):
        exported = description.get(key, 0)
        if asked is not None and asked != exported:
            raise ValueError(f"{path}: was exported with {exported} {key.split('_iter')[0].replace('_', '-')} "
                             f"iterations; export it again with {flag} {asked}")


class KerasBackend(Backend):
    """A SeparationModel run as one traced `tf.function`, in its fastest TensorFlow form (`models.inference_model`).

    Args:
        model: a SeparationModel.
        wiener_iterations, griffin_lim_iterations: if given, the model is rebuilt with this many
            Wiener EM iterations, or Griffin-Lim iterations from the mixture's phase.
    """

    def __init__(self, model, wiener_iterations=None, griffin_lim_iterations=None):
        self.model = inference_model(model, wiener_iterations=wiener_iterations,
                                     griffin_lim_iterations=griffin_lim_iterations)
        self.description = describe(self.model)
        form = chunk_model(self.model) if self.description["segment_frames"] else self.model
        spec = tf.TensorSpec((None, None, self.description["channels"]), tf.float32)
        self._run = tf.function(form, input_signature=[spec], reduce_retracing=True)

    def __call__(self, batch):
        return {source: stem.numpy() for source, stem in self._run(tf.constant(batch)).items()}


class LiteRTBackend(Backend):
    """A whole-clip TFLite file (`tfsep export --format tflite`) run in LiteRT's interpreter.

    Its Wiener and Griffin-Lim iterations were fixed at export; asking for others raises
    ValueError, as does the streaming form. A model that cuts frames into segments runs the
    file's `chunk` signature, its `valid` form.
    """

    def __init__(self, path, threads=2, wiener_iterations=None, griffin_lim_iterations=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ImportError("running .tflite files needs LiteRT: pip install 'tfsep[litert]'") from None
        files.check_regular_file(path, missing="no such model file")
        description = tflite_metadata(path)
        if "block_samples" in description:
            raise ValueError(f"{path}: is the streaming form; separating files needs the whole-clip form")
        _check_fixed_iterations(path, description, wiener_iterations, griffin_lim_iterations)
        signature = "chunk" if description.get("segment_frames") else "serving_default"
        try:
            self._runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner(signature)
            with quiet.native_output():  # LiteRT's INFO line at the first run
                self(np.zeros((1, 2 * description["n_fft"], description["channels"]), np.float32))
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{path}: not a runnable TFLite model ({audio.error_reason(error)})") from None
        self.description = description

    def __call__(self, batch):
        return self._runner(waveform=batch)


class SavedModelBackend(Backend):
    """A TF Serving SavedModel version folder (`tfsep export`, e.g. `serving/1`) run through its `serving_default`
    signature, as a server would; its description is the export's `assets.extra/tfsep.json`.

    Its Wiener and Griffin-Lim iterations were fixed at export. Models that cut frames into
    segments are refused: the SavedModel holds their whole-clip form only, not the `valid`
    form that exact chunking needs (use the `.keras` or `.tflite` file).
    """

    def __init__(self, path, wiener_iterations=None, griffin_lim_iterations=None):
        try:
            description = json.loads((Path(path) / "assets.extra" / "tfsep.json").read_text())
        except (OSError, ValueError):
            raise ValueError(f"{path}: not a tfsep SavedModel export (no readable assets.extra/tfsep.json)") from None
        _check_fixed_iterations(path, description, wiener_iterations, griffin_lim_iterations)
        if description.get("segment_frames"):
            raise ValueError(f"{path}: this model cuts its frames into segments, which the SavedModel cannot chunk "
                             "exactly; separate with its .keras or .tflite file")
        try:
            self._serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        except Exception as error:
            raise ValueError(f"{path}: not a loadable SavedModel ({audio.error_reason(error)})") from None
        self.description = description

    def __call__(self, batch):
        return {source: stem.numpy() for source, stem in self._serve(waveform=tf.constant(batch)).items()}
