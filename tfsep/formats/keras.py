"""A `.keras` file saved from a SeparationModel: described from its config, run as one traced `tf.function`,
written with Keras's own `save`."""

from pathlib import Path

from tfsep import files
from tfsep.backends import Backend, asked


def describe(path):
    """The model's description from the archive's config.json, without building it."""
    from tfsep.models import describe_config, load_model, stored_config

    files.check_regular_file(path, missing="no such model file")
    try:
        config = stored_config(path)
    except ValueError:
        load_model(path)  # says precisely why it is not a tfsep model: a Lambda layer, a foreign class, ...
        raise
    try:
        return describe_config(config)
    except ValueError as error:  # an option out of its range, or unknown: the message names it
        raise ValueError(f"{path}: {error}") from None
    except (KeyError, TypeError, AttributeError):
        raise ValueError(f"{path}: not a .keras model file with a tfsep model's config") from None


def open(path, description, threads, options):  # noqa: A001 (the formats interface)
    """A KerasBackend of the file `path`, built in its inference form (`models.inference_changes`) from the start."""
    import tensorflow as tf

    from tfsep.models import inference_changes, load_model, stored_config

    cpu = not tf.config.list_physical_devices("GPU")
    return KerasBackend(load_model(path, **inference_changes(stored_config(path), cpu, **asked(options))), **options)


def write(model, path):
    """Save `model` as a `.keras` file at `path`, atomically; returns the path."""
    path = Path(path)
    files.replace_atomically(path, model.save, suffix=".keras")
    return path


class KerasBackend(Backend):
    """A SeparationModel run as one traced `tf.function`, in the form TensorFlow runs fastest on the devices at hand
    (`models.inference_model`).

    Args:
        model: a SeparationModel.
        options: weightless options (`backends.OPTIONS`); those given, and not None, rebuild the
            model with them (`models.reconfigure`).
    """

    def __init__(self, model, **options):
        import tensorflow as tf

        from tfsep.models import chunk_model, describe, inference_model

        self.model = inference_model(model, cpu=not tf.config.list_physical_devices("GPU"), **asked(options))
        self.description = describe(self.model)
        form = chunk_model(self.model) if self.description["segment_frames"] else self.model
        spec = tf.TensorSpec((None, None, self.description["channels"]), tf.float32)
        self._run = tf.function(form, input_signature=[spec], reduce_retracing=True)
        self._constant = tf.constant

    def __call__(self, batch):
        return {source: stem.numpy() for source, stem in self._run(self._constant(batch)).items()}
