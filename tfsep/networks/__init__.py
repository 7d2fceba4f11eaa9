"""Mask estimators, selectable by name and size: one module per network, each with its `Network` entry.

A network maps the band-limited mixture magnitude (batch, frames, bins, channels) to mask
logits (batch, frames, bins, channels, sources), for any number of frames; its entry
(`common.Network`) says how to build it, its sizes, the bounds of its options, its
receptive field and segment length, and what the TFLite export changes.

- `umx`: Open-Unmix-like: dense encoder, three BiLSTM layers with a skip, dense decoder.
- `unet`: Spleeter-like 2-D convolutional U-Net (six levels, 5×5 kernels, stride 2), one per source.
- `bandconv`: the fast one: mel-spaced bands, dilated depthwise convolutions over time, dense
  mixing across bands.

Adding a network is one module with its `NETWORK` entry, and one line in `NETWORKS`.
"""

from tfsep.networks import bandconv, umx, unet

NETWORKS = {"umx": umx.NETWORK, "unet": unet.NETWORK, "bandconv": bandconv.NETWORK}
SIZES = sorted({size for network in NETWORKS.values() for size in network.sizes})


def network(architecture):
    """The `Network` entry named `architecture`; ValueError naming the known ones if there is none."""
    if architecture not in NETWORKS:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(NETWORKS)}")
    return NETWORKS[architecture]


def network_options(architecture, size="base", options=None):
    """The keyword options of network `architecture` at preset `size`, updated by `options`.

    Raises ValueError naming the architecture, size or option that is unknown, or an option out of
    its range (`Network.ranges`).
    """
    entry = network(architecture)
    if size not in entry.sizes:
        raise ValueError(f"unknown size {size!r} for {architecture!r}; choose one of {sorted(entry.sizes)}")
    known = list(entry.options())
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for architecture {architecture!r}; known options: {known}")
    options = {**entry.sizes[size], **(options or {})}
    for key, (low, high) in entry.ranges.items():
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            raise ValueError(f"network option {key!r} of {architecture} must be an integer from {low} to {high}, "
                             f"got {value!r}")
    return options


def receptive_field(architecture, options):
    """Frames on each side of a frame that its masks depend on, given the network's `options`; None where
    that reach is unbounded (umx's recurrences) or the network is not shift-equivariant in time (unet's
    strided levels), so that no finite context reproduces whole-signal results exactly."""
    entry = network(architecture)
    return entry.receptive_field({**entry.options(), **options})


def segment_frames(architecture, options):
    """The length in frames of the independent segments that the network cuts its input into, or None."""
    entry = network(architecture)
    return entry.segment_frames({**entry.options(), **options})


def tflite_options(architecture, options, fixed=False):
    """The network's `options` as the TFLite export builds it: the same weights, in ops TFLite converts; `fixed`:
    as its fixed-shape form for LiteRT.js builds it."""
    entry = network(architecture)
    return {**options, **entry.tflite_options, **(entry.fixed_options if fixed else {})}


def cpu_options(architecture, options):
    """The network's `options` as TensorFlow runs it fastest on a CPU: the same weights, in faster ops there."""
    return {**options, **network(architecture).cpu_options}
