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


# The weightless options that a separation may ask of a model (`models.reconfigure`): the flag that asks for each,
# and its value in a model that does not say.
OPTIONS = {"wiener_iterations": ("--wiener", 0), "griffin_lim_iterations": ("--griffin-lim", 0),
           "mixture_consistent": ("--consistent", False)}


def asked(options):
    """The options of `OPTIONS` in `options` that were asked for (not None); ValueError for any other key."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown separation options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    return {key: value for key, value in options.items() if value is not None}


def differing(description, options):
    """The asked `options` whose value differs from the one `description` (an export's) was made with."""
    return {key: value for key, value in asked(options).items() if description.get(key, OPTIONS[key][1]) != value}


def check_fixed_options(path, description, options):
    """Refuse options other than those an export was made with, saying how to export it again."""
    for key, value in differing(description, options).items():
        flag, default = OPTIONS[key]
        exported = description.get(key, default)
        if isinstance(default, bool):
            raise ValueError(f"{path}: was exported {'with' if exported else 'without'} {flag}; export it again "
                             f"{'with' if value else 'without'} it")
        raise ValueError(f"{path}: was exported with {exported} {flag[2:]} iterations; export it again with "
                         f"{flag} {value}")
