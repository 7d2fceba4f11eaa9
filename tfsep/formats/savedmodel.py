"""A TF Serving SavedModel version folder written by `tfsep export` (e.g. `serving/band/1`; `write`, in
`savedmodel_writer`), run through its `serving_default` signature as a server would; its description is the
export's `assets.extra/tfsep.json`."""

import json
from pathlib import Path

from tfsep import audio
from tfsep.backends import Backend, check_fixed_options

DESCRIPTION = Path("assets.extra") / "tfsep.json"


def describe(path):
    try:
        return json.loads((Path(path) / DESCRIPTION).read_text())
    except (OSError, ValueError):
        raise ValueError(f"{path}: not a tfsep SavedModel export (no readable {DESCRIPTION})") from None


def open(path, description, threads, options):  # noqa: A001 (the formats interface)
    return SavedModelBackend(path, description, **options)


def __getattr__(name):
    """`write`, from `savedmodel_writer`, imported (with TensorFlow) when asked for."""
    if name == "write":
        from tfsep.formats.savedmodel_writer import write

        return write
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SavedModelBackend(Backend):
    """A SavedModel export's `serving_default` signature.

    Its weightless options (`backends.OPTIONS`) were fixed at export. Models that cut frames into
    segments are refused: the SavedModel holds their whole-clip form only, not the `valid`
    form that exact chunking needs (use the `.keras` or `.tflite` file).
    """

    def __init__(self, path, description, **options):
        import tensorflow as tf

        check_fixed_options(path, description, options)
        if description.get("segment_frames"):
            raise ValueError(f"{path}: this model cuts its frames into segments, which the SavedModel cannot chunk "
                             "exactly; separate with its .keras or .tflite file")
        try:
            self._serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        except Exception as error:
            raise ValueError(f"{path}: not a loadable SavedModel ({audio.error_reason(error)})") from None
        self.description = description
        self._constant = tf.constant

    def __call__(self, batch):
        return {source: stem.numpy() for source, stem in self._serve(waveform=self._constant(batch)).items()}
