"""What a Separator runs its chunks on: a `Backend`, made by one of `formats`' modules from a model file.

A backend holds what running the model takes, `description` (`models.describe`: sources,
rate, channels, STFT settings, segment length), and is called on float32
(batch, samples, channels) at the model's rate, returning {source: (batch, samples,
channels)} as numpy. For models that cut frames into segments it runs their `valid` form
(`models.chunk_model`), which `chunking.summed_chunks` needs. `workers` is how many calls
it can take at once from different threads (each with its own interpreter, for LiteRT).

This module imports no TensorFlow: a LiteRT model separates without it.
"""


class Backend:
    """What a Separator runs its chunks on: `description`, the Keras `model` if there is one, `workers`, and
    `backend(batch)`: float32 (batch, samples, channels) -> {source: (batch, samples, channels)}."""

    model = None
    description = None
    workers = 1

    def __call__(self, batch):
        raise NotImplementedError


def check_fixed_iterations(path, description, wiener_iterations, griffin_lim_iterations):
    """Refuse Wiener or Griffin-Lim iterations other than those an export was made with."""
    for key, flag, asked in (("wiener_iterations", "--wiener", wiener_iterations),
                             ("griffin_lim_iterations", "--griffin-lim", griffin_lim_iterations)):
        exported = description.get(key, 0)
        if asked is not None and asked != exported:
            raise ValueError(f"{path}: was exported with {exported} {key.split('_iter')[0].replace('_', '-')} "
                             f"iterations; export it again with {flag} {asked}")
