"""The end-to-end separation model: one Keras functional graph, waveform in, stems out.

    X = STFT(mixture)                       spectrum (batch, frames, bins, channels, 2)
    M = masks(network(|X| below the cutoff)), optionally as ratio masks, extended to every bin
    Ȳ_k = M_k ⊙ X = |Ŷ_k| ⊙ exp(j∠X)       stem magnitudes M_k ⊙ |X| with the mixture's phase,
                                            then optional Wiener EM
    ŝ_k = iSTFT(Ȳ_k), cropped to the mixture's length
"""

import inspect
import json
import re
import zipfile
from pathlib import Path

from tfsep import files, networks
from tfsep._keras import keras
from tfsep.framing import check_stft_settings
from tfsep.layers import (
    RELATIVE_LOAD,
    STFT,
    ApplyMasks,
    CropBins,
    ExtendMasks,
    GriffinLim,
    InverseSTFT,
    Magnitude,
    MaskMagnitude,
    Masks,
    MixtureConsistency,
    RatioMasks,
    SplitSources,
    WienerFilter,
)
from tfsep.names import SOURCES

_SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def max_bin(sample_rate, n_fft, bandwidth):
    """Number of bins whose centre frequency is at most `bandwidth` Hz (all bins if None)."""
    bins = n_fft // 2 + 1
    if bandwidth is None:
        return bins
    return min(bins, int(bandwidth * n_fft / sample_rate) + 1)


# Bounds on what sizes a model's tensors: a config from a file is checked against them before anything is built.
LIMITS = {"sources": (1, 64), "sample_rate": (1000, 384000), "channels": (1, 32)}


def _check_model_settings(sources, sample_rate, channels, bandwidth):
    """Raise ValueError naming the key of a setting out of its range (`LIMITS`)."""
    if not sources or len(set(sources)) != len(sources):
        raise ValueError(f"sources must be a non-empty list of distinct names, got {list(sources)}")
    if len(sources) > LIMITS["sources"][1]:
        raise ValueError(f"sources must hold at most {LIMITS['sources'][1]} names, got {len(sources)}")
    for source in sources:
        if not isinstance(source, str) or not _SOURCE_NAME.match(source):
            raise ValueError(f"source name {source!r} must start with a letter and hold only letters, digits and _")
    for key, value in (("sample_rate", sample_rate), ("channels", channels)):
        low, high = LIMITS[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    if bandwidth is not None and not bandwidth > 0:
        raise ValueError(f"bandwidth must be a positive frequency in Hz or None, got {bandwidth!r}")


@keras.saving.register_keras_serializable(package="tfsep")
class SeparationModel(keras.Model):
    """Mask-based source separation as one Keras graph.

    Input `waveform`: float32 (batch, samples, channels) at `sample_rate`, any samples >= 1.
    Output: a dict {source: (batch, samples, channels)}.

    The config is exactly the constructor's arguments, so sources, sample rate and STFT
    settings travel with a saved model, and loading rebuilds the same graph.

    Args:
        architecture: mask network, one of `networks.NETWORKS`.
        sources: source names; they name the outputs.
        sample_rate, channels: what the model expects at its input.
        n_fft, hop, window: STFT settings (n_fft a power of two, hop <= n_fft // 2).
        framing: how the STFT frames the waveform (`layers.STFT`): `center`, `pad_end`
            (n_fft zeros before the signal, as Spleeter frames it) or `center_reflect` (the signal
            reflected at its ends, torch.stft(center=True) as Open-Unmix frames it).
        bandwidth: the network sees bins up to this frequency (Hz); None for all bins.
        mask_activation: `sigmoid` (each mask in [0, 1]), `softmax` (masks sum to 1) or
            `relu_unbounded` (ReLU of the logits: non-negative, not bounded by 1, so a stem
            magnitude M_k ⊙ |X| may exceed the mixture's; Open-Unmix's ReLU(...) · |X|).
        ratio_mask_exponent: None, or p: the masks M_k become ratio masks of the masked
            magnitudes, (M_k|X|)^p / Σ_j (M_j|X|)^p (`layers.RatioMasks`; Spleeter's p = 2).
        mask_extension: how masks cover the bins above `bandwidth`: `average`, `edge` or `zeros`.
        wiener_iterations: multichannel Wiener EM iterations after masking; 0 for none.
        wiener_window: None to Wiener-filter the whole signal at once, or a number of frames:
            consecutive windows of that many frames are filtered independently (Open-Unmix's
            `wiener_win_len`, 300); see `layers.WienerFilter`.
        wiener_relative_load: the Wiener filter's diagonal loading of the mixture covariance
            relative to its mean eigenvalue (`layers.RELATIVE_LOAD`, 1e-4); 0 loads by √eps
            alone, as Open-Unmix and norbert do.
        griffin_lim_iterations: Griffin-Lim iterations after that, started from the mixture's
            phase (`layers.GriffinLim`); 0 keeps the mixture's phase.
        mixture_consistent: stems that sum to the mixture, each taking an equal share of the
            residual after the inverse STFT (`layers.MixtureConsistency`).
        inverse_fft: the form of the spectral ops, the same values in each: `signal` (tf.signal's
            inverse STFT, the form training and XLA take), `bitcast` (that inverse, the STFT and the
            mask product on complex tensors read in place: the fastest in TensorFlow without XLA,
            which `inference_model` gives) or `builtin` (the inverse STFT from TFLite builtin ops,
            the form TFLite exports take); see `layers.InverseSTFT`.
        size: network size preset, `tiny`, `small` or `base`.
        network: network options that override the preset, e.g. {"hidden": 256} for umx.
    """

    def __init__(
        self,
        architecture="bandconv",
        sources=SOURCES,
        sample_rate=44100,
        channels=2,
        n_fft=4096,
        hop=1024,
        window="hann",
        framing="center",
        bandwidth=16000.0,
        mask_activation="sigmoid",
        ratio_mask_exponent=None,
        mask_extension="average",
        wiener_iterations=0,
        wiener_window=None,
        wiener_relative_load=RELATIVE_LOAD,
        griffin_lim_iterations=0,
        mixture_consistent=False,
        inverse_fft="signal",
        size="base",
        network=None,
        name="tfsep",
    ):
        sources = tuple(sources)
        _check_model_settings(sources, sample_rate, channels, bandwidth)
        check_stft_settings(n_fft, hop, window, framing)
        options = networks.network_options(architecture, size, network)

        mixture = keras.Input(shape=(None, channels), name="waveform")
        bitcast = inverse_fft == "bitcast"
        spectrum = STFT(n_fft, hop, window, framing, bitcast, name="stft")(mixture)
        magnitude = Magnitude(name="magnitude")(spectrum)
        processed = CropBins(max_bin(sample_rate, n_fft, bandwidth), name="crop_bins")(magnitude)
        logits = networks.network(architecture).build(processed, sources, sample_rate / n_fft, **options)
        if logits.shape[2] > n_fft // 2 + 1:
            raise ValueError(f"the network's masks cover {logits.shape[2]} bins, more than the {n_fft // 2 + 1} "
                             f"of n_fft {n_fft}")
        masks = Masks(mask_activation, name="masks")(logits)
        if ratio_mask_exponent is not None:
            masks = RatioMasks(ratio_mask_exponent, name="ratio_masks")([masks, processed])
        masks = ExtendMasks(mask_extension, name="extend_masks")([masks, magnitude])
        stem_spectra = ApplyMasks(bitcast, name="apply_masks")([masks, spectrum])
        stem_spectra = WienerFilter(wiener_iterations, window=wiener_window, relative_load=wiener_relative_load,
                                    name="wiener")([stem_spectra, spectrum])
        stem_spectra = GriffinLim(n_fft, hop, window, framing, griffin_lim_iterations, inverse_fft,
                                  name="griffin_lim")([stem_spectra, mixture])
        stems = InverseSTFT(n_fft, hop, window, framing, inverse_fft, name="istft")([stem_spectra, mixture])
        stems = MixtureConsistency(mixture_consistent, name="mixture_consistency")([stems, mixture])
        outputs = dict(zip(sources, SplitSources(len(sources), name="split_sources")(stems)))
        super().__init__(inputs=mixture, outputs=outputs, name=name)

        self._tfsep_config = {
            "architecture": architecture,
            "sources": list(sources),
            "sample_rate": sample_rate,
            "channels": channels,
            "n_fft": n_fft,
            "hop": hop,
            "window": window,
            "framing": framing,
            "bandwidth": bandwidth,
            "mask_activation": mask_activation,
            "ratio_mask_exponent": ratio_mask_exponent,
            "mask_extension": mask_extension,
            "wiener_iterations": wiener_iterations,
            "wiener_window": wiener_window,
            "wiener_relative_load": wiener_relative_load,
            "griffin_lim_iterations": griffin_lim_iterations,
            "mixture_consistent": bool(mixture_consistent),
            "inverse_fft": inverse_fft,
            "size": size,
            "network": dict(network or {}),
        }

    @property
    def sources(self):
        return tuple(self._tfsep_config["sources"])

    @property
    def sample_rate(self):
        return self._tfsep_config["sample_rate"]

    def get_config(self):
        config = {key: value for key, value in self._tfsep_config.items()}
        config["network"] = dict(config["network"])
        return {**config, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


_MODEL_ARGUMENTS = set(inspect.signature(SeparationModel.__init__).parameters) - {"self", "network"}


def build_model(architecture="bandconv", sources=SOURCES, sample_rate=44100, **options):
    """Build a `SeparationModel`.

    `options` are the model's other arguments (n_fft, hop, window, framing, bandwidth,
    channels, mask_activation, ratio_mask_exponent, mask_extension, wiener_iterations, wiener_window,
    wiener_relative_load, griffin_lim_iterations, size) and the network's own options (e.g. `hidden` for umx,
    `filters` for unet, `bands`/`features`/`blocks` for bandconv), which override the size preset.
    Unknown options raise ValueError.
    """
    model_options = {key: value for key, value in options.items() if key in _MODEL_ARGUMENTS}
    network_options = {key: value for key, value in options.items() if key not in _MODEL_ARGUMENTS}
    return SeparationModel(architecture, sources, sample_rate, network=network_options, **model_options)


def describe(model):
    """What running `model` takes: sources, rate, channels, STFT settings and segment length (0: none)."""
    return describe_config(model.get_config())


def describe_config(config):
    """`describe` of the model that `config` (a SeparationModel's `get_config()`) builds, without building it."""
    defaults = {name: parameter.default for name, parameter in inspect.signature(SeparationModel).parameters.items()}
    config = {**defaults, **config}
    options = networks.network_options(config["architecture"], config["size"], config["network"])
    keys = ("sample_rate", "channels", "n_fft", "hop", "window", "framing", "wiener_iterations",
            "griffin_lim_iterations", "mixture_consistent", "architecture")
    return {"sources": list(config["sources"]), **{key: config[key] for key in keys},
            "segment_frames": networks.segment_frames(config["architecture"], options) or 0}


def spectrogram_model(model):
    """The spectrogram-domain part of `model`, sharing its weights, for magnitude losses.

    Input: waveform (batch, samples, channels). Output: a dict with `magnitude` |X|
    (batch, frames, bins, channels), `masks` M and `stem_magnitudes` M ⊙ |X|, both
    (batch, frames, bins, channels, sources).
    """
    outputs = {
        "magnitude": model.get_layer("magnitude").output,
        "masks": model.get_layer("extend_masks").output,
        "stem_magnitudes": stem_magnitudes(model),
    }
    return keras.Model(model.input, outputs, name=f"{model.name}_spectrogram")


def stem_magnitudes(model):
    """M ⊙ |X| in `model`'s graph, a symbolic (batch, frames, bins, channels, sources) tensor for magnitude losses.

    The model's own outputs apply the masks to the complex spectrum directly (`ApplyMasks`).
    """
    return MaskMagnitude(name="stem_magnitudes")([model.get_layer("extend_masks").output,
                                                  model.get_layer("magnitude").output])


def chunk_model(model):
    """`model` framed `valid` (`layers.STFT`), sharing its layers and weights: the form for summed chunks.

    It takes waveform chunks (batch, samples >= n_fft, channels) and computes the frames that
    lie inside each, so a chunk's frames are frames of the whole signal wherever it starts
    on the whole signal's frame grid; its stems have the chunk's length, the first and last
    n_fft − hop samples partial, and the stems of chunks that tile the grid, summed where they
    overlap, are the stems of the whole signal (see `chunking.summed_chunks`).
    """
    config = model.get_config()
    if config["griffin_lim_iterations"]:
        raise ValueError("Griffin-Lim needs whole signals, not summed chunks; use the mixture's phase with this model")
    if config["mixture_consistent"]:
        raise ValueError("mixture consistency shares the residual of whole signals, not of summed chunks; a model "
                         "that cuts its frames into segments sums to the mixture with ratio masks instead")
    stft = (config["n_fft"], config["hop"], config["window"], "valid")
    core = keras.Model(model.get_layer("stft").output, model.get_layer("wiener").output, name=f"{model.name}_core")
    waveform = keras.Input(shape=(None, config["channels"]), name="waveform")
    stem_spectra = core(STFT(*stft, config["inverse_fft"] == "bitcast", name="stft_valid")(waveform))
    stems = InverseSTFT(*stft, config["inverse_fft"], name="istft_valid")([stem_spectra, waveform])
    outputs = dict(zip(model.sources, SplitSources(len(model.sources), name="split_sources")(stems)))
    return keras.Model(waveform, outputs, name=f"{model.name}_chunks")


def reconfigure(model, **changes):
    """A copy of `model` with changed weightless options (e.g. `wiener_iterations`), same weights.

    Options given as None, or equal to the model's own, change nothing; with no change the
    model itself is returned.
    """
    config = model.get_config()
    changes = {key: value for key, value in changes.items() if value is not None and value != config.get(key)}
    if not changes:
        return model
    rebuilt = SeparationModel.from_config({**model.get_config(), **changes})
    if [weight.shape for weight in rebuilt.weights] != [weight.shape for weight in model.weights]:
        raise ValueError(f"the changes {sorted(changes)} change the model's weights")
    for new, old in zip(rebuilt.weights, model.weights):  # variable to variable: no copy of all weights at once
        new.assign(old)
    return rebuilt


def inference_changes(config, cpu=False, **changes):
    """`changes` and those that put a model of `config` (`get_config()`) in the spectral form TensorFlow runs fastest
    without XLA (`bitcast`; a model in the `builtin` form, as for TFLite, keeps it), and with `cpu`, in the
    network's form that a CPU runs fastest (`networks.cpu_options`)."""
    if config.get("inverse_fft", "signal") == "signal":
        changes["inverse_fft"] = "bitcast"
    if cpu:
        changes["network"] = networks.cpu_options(config["architecture"], config.get("network", {}))
    return changes


def inference_model(model, cpu=False, **changes):
    """`reconfigure(model, **changes)` in TensorFlow's fastest form (`inference_changes`). Same weights, same stems."""
    return reconfigure(model, **inference_changes(model.get_config(), cpu, **changes))


def stored_config(path):
    """The SeparationModel config (`get_config()`) in the `.keras` file `path`, read without building anything.
    Raises ValueError, naming the file, for anything else."""
    not_ours = f"{path}: not a .keras model file with a tfsep model's config"
    try:
        with zipfile.ZipFile(path) as archive:
            stored = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise ValueError(not_ours) from None
    if not isinstance(stored, dict) or stored.get("registered_name") != "tfsep>SeparationModel" or \
            not isinstance(stored.get("config"), dict):
        raise ValueError(not_ours)
    return stored["config"]


def load_model(path, **changes):
    """Load a `.keras` file saved from a `SeparationModel`, with Keras's `safe_mode=True`.

    Only `.keras` zip files are read (Keras's safe mode guards that format, not legacy
    HDF5), and nothing in them runs as code: a Lambda layer or a class that is neither
    Keras's nor tfsep's is refused. Raises FileNotFoundError if there is no such file and
    ValueError, in one line naming the file, for anything else that is not a tfsep model.

    With `changes` (weightless options, as `reconfigure` takes), the model is built from the file's config
    (`stored_config`: tfsep's options, nothing Keras deserialises) with them, and the file's weights are loaded
    into it: `reconfigure(load_model(path), **changes)` without building the stored form first, whose freed
    weights a process keeps (umxhq: 143 MB).
    """
    path = Path(path)
    files.check_regular_file(path, missing="no such model file")
    if path.suffix.lower() != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .keras model file (tfsep loads only Keras 3 .keras zip files)")
    if changes:
        try:
            config = stored_config(path)
        except ValueError:  # loading it says precisely why it is not a tfsep model
            return reconfigure(load_model(path), **changes)
        model = SeparationModel.from_config({**config, **{key: value for key, value in changes.items()
                                                           if value is not None}})
        try:
            model.load_weights(path)
        except (ValueError, KeyError, OSError) as error:
            raise ValueError(f"{path}: not a loadable tfsep model ({str(error).splitlines()[0][:200]})") from None
        return model
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        message = str(error)
        if "Lambda" in message:
            raise ValueError(f"{path}: refused: it holds a Lambda layer, i.e. Python code, which tfsep never "
                             f"loads") from None
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", message)
        if unknown:
            raise ValueError(f"{path}: refused: it holds {unknown[1]!r}, which is neither a Keras nor a tfsep "
                             f"class") from None
        raise ValueError(f"{path}: not a loadable tfsep model ({message.splitlines()[0][:200]})") from None
    if not isinstance(model, SeparationModel):
        raise ValueError(f"{path}: holds a {type(model).__name__}, not a tfsep SeparationModel")
    return model
