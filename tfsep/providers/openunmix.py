"""The `openunmix` provider: Open-Unmix's published weights (sigsep) as tfsep SeparationModels that compute what
Open-Unmix's `Separator` computes.

`openunmix:umxhq` and `openunmix:umxl` (also plain `umxhq` and `umxl`) are four PyTorch state dicts each, one
per target, on Zenodo (`MODELS`). `fetch` downloads them through `download.fetch` (which honours `TFSEP_MIRROR`)
into a temporary folder, checks that each file's SHA-256 begins with the 8 hex digits in its name (torch.hub's
rule), converts them and writes the `.keras` file atomically; an interrupted or failed fetch leaves nothing.
Files fetched by hand convert with `tfsep convert openunmix vocals-….pth drums-….pth bass-….pth other-….pth`.

A file's target is its name up to the first `-` or `.` (`vocals-b62c91ce.pth` and `vocals.pth` are both
`vocals`). It is read by `pth.load` (numpy, no torch, no pickled code run) and must hold an `OpenUnmix` state
dict (openunmix 1.x, `model.py`); its hidden size, its input bins (`max_bin`), its output bins (hence n_fft),
its channels and its LSTM layers are read from the shapes. Sample rate (44.1 kHz) and hop (n_fft / 4) are not
in the weights: they are Open-Unmix's for every published 44.1 kHz model.

The model that `convert` builds is a tfsep `umx` SeparationModel with Open-Unmix's options, each a general
model or network option:

- `framing="center_reflect"`: torch.stft(center=True, pad_mode="reflect") with a periodic Hann window, frames
  = 1 + samples // hop; the inverse is torch.istft's window-sum normalisation, cropped to the input;
- the magnitude |X| of each channel (Open-Unmix's `ComplexNorm(mono=False)`), the network seeing the
  bins below `max_bin` (`bandwidth`);
- network `per_source` (one whole network per target), standardised input (x − mean) / scale with
  mean = −`input_mean` and scale = 1 / `input_scale` (Open-Unmix stores (x + input_mean) · input_scale);
  fc1 (no bias) → bn1 → tanh → BiLSTM ×3 (hidden / 2 each way) → skip concatenation → fc2 (no bias) → bn2
  → ReLU → fc3 (no bias) → bn3 over every output bin (`output_bins`), then `output_affine` (Open-Unmix's
  `output_scale`, `output_mean`); batch norms with ε = 1e-5 (`batch_norm_epsilon`);
- `mask_activation="relu_unbounded"`: ReLU of that, times |X|: a non-negative "mask" that is not bounded
  by 1, applied with the mixture's phase;
- Wiener EM as Open-Unmix's `Separator` defaults to (niter=1, softmask=False, residual=False): one
  iteration (`wiener_iterations`, 0 gives Open-Unmix's niter=0), on windows of 300 frames filtered
  independently (`wiener_window`, its `wiener_win_len`), loaded by √eps alone (`wiener_relative_load=0`).

Weights map one to one: torch's Linear (out, in) weights transposed, with fc1's inputs and fc3's outputs
reordered from Open-Unmix's (channel, bin) to tfsep's (bin, channel) flattening; torch's LSTM gates (i, f, g,
o) are Keras's (i, f, c, o), kernel = weight_ih.T, recurrent kernel = weight_hh.T, bias = bias_ih + bias_hh.
"""

import re
import tempfile
from pathlib import Path

import numpy as np

from tfsep import formats
from tfsep.providers import Card, PretrainedError, download, pth

SAMPLE_RATE = 44100  # of every published 44.1 kHz Open-Unmix model; not in the weights
BATCH_NORM_EPSILON = 1e-5  # torch.nn.BatchNorm1d's
WIENER_ITERATIONS, WIENER_WINDOW = 1, 300  # openunmix.umxhq() / umxl(): Separator(niter=1, wiener_win_len=300)
SOURCES = ("vocals", "drums", "bass", "other")
# Published scores: MUSDB18 test set, SDR in dB, BSSEval v4 median over frames then tracks (sigsep's figures).
MODELS = {
    "umxhq": {
        "record": "https://zenodo.org/records/3370489",
        "files": ("vocals-b62c91ce", "drums-9619578f", "bass-8d85a5bd", "other-b52fbbf7"),
        "hidden": 512,
        "licence": "see https://zenodo.org/records/3370489 (the record's own terms; not quoted here, since the "
                   "record could not be read where this was written)",
        "scores": {"vocals": 6.25, "drums": 6.04, "bass": 5.07, "other": 4.28, "mean": 5.41},
    },
    "umxl": {
        "record": "https://zenodo.org/records/5069601",
        "files": ("vocals-bccbd9aa", "drums-69e0ebd4", "bass-2ca1ce51", "other-c8c5b3e6"),
        "hidden": 1024,
        "licence": "CC BY-NC-SA 4.0: non-commercial use only (https://zenodo.org/records/5069601)",
        "scores": {"vocals": 7.21, "drums": 7.15, "bass": 6.02, "other": 4.89, "mean": 6.32},
    },
}


def _scores(name):
    return " / ".join(f"{MODELS[name]['scores'][source]:.2f}" for source in SOURCES)


# What `tfsep models` lists; download sizes are about those of the float32 weights of the four target models
# (UMX-HQ 35.6 M parameters, UMX-L 113 M).
NAMES = {
    "umxhq": Card(SOURCES, 142, "see https://zenodo.org/records/3370489", _scores("umxhq")),
    "umxl": Card(SOURCES, 452, "CC BY-NC-SA 4.0, non-commercial use only", _scores("umxl")),
}

_TARGET = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_BATCH_NORM = ("weight", "bias", "running_mean", "running_var")  # Keras: gamma, beta, moving mean and variance


class OpenUnmixError(ValueError):
    """A file that is not a convertible Open-Unmix state dict, or files that do not make one model; the message
    names the file."""


def urls(name):
    """The Zenodo addresses of the four files of published model `name` (a key of `MODELS`)."""
    model = MODELS[name]
    return [f"{model['record']}/files/{stem}.pth" for stem in model["files"]]


def fetch(name, target, log):
    """Fetch, verify and convert `name` (one of `NAMES`) into the `.keras` file `target`; PretrainedError for an
    unknown name or a download that fails (its message says how to fetch the files by hand)."""
    if name not in MODELS:
        raise PretrainedError(f"openunmix:{name}: unknown pretrained model; tfsep fetches "
                              f"{', '.join(f'openunmix:{known}' for known in MODELS)}, and converts other "
                              "Open-Unmix weights with tfsep convert openunmix TARGET.pth ...")
    model = MODELS[name]
    files = " ".join(f"{stem}.pth" for stem in model["files"])
    hint = (f"download {files} from {model['record']} by hand, then run: tfsep convert openunmix {files} "
            f"--output {name}.keras, and pass --model {name}.keras")
    log(f"fetching Open-Unmix's {name} weights (sigsep; licence: {model['licence']}) from {model['record']} and "
        f"converting them to {target}")
    with tempfile.TemporaryDirectory(prefix="tfsep-openunmix-") as scratch:
        paths = [download.fetch(url, Path(scratch) / Path(url).name, sha256_prefix=download.sha256_prefix_of(url),
                                log=log, hand_hint=hint)
                 for url in urls(name)]
        formats.write("keras", convert(paths, name), target)


def target_name(path):
    """The target a weight file is for: its name up to the first `-` or `.` (`vocals-b62c91ce.pth` -> `vocals`)."""
    path = Path(path)
    if path.suffix.lower() != ".pth":
        raise OpenUnmixError(f"{path}: not a .pth file; Open-Unmix's weights are one TARGET.pth (or "
                             "TARGET-HASH.pth) per target")
    target = re.split(r"[-.]", path.name, maxsplit=1)[0]
    if not _TARGET.match(target):
        raise OpenUnmixError(f"{path}: the target {target!r} (the name before its first - or .) must start with a "
                             "letter and hold only letters, digits and _")
    return target


def read_state_dict(path):
    """The weights of the Open-Unmix target model in `path` and its sizes: (state dict, sizes), where sizes are
    {hidden, bins, channels, output_bins, layers}. Raises OpenUnmixError (one line naming the file) for keys or
    shapes that an `OpenUnmix` state dict does not have."""
    state = pth.load(path)
    for key in ("fc1.weight", "input_mean", "output_mean"):
        if key not in state or np.ndim(state[key]) != (2 if key == "fc1.weight" else 1):
            raise OpenUnmixError(f"{path}: not an Open-Unmix state dict (no {key} of the right rank; found "
                                 f"{_some_keys(state)})")
    hidden, inputs = state["fc1.weight"].shape
    bins, output_bins = len(state["input_mean"]), len(state["output_mean"])
    layers = 0
    while f"lstm.weight_ih_l{layers}" in state:
        layers += 1
    if not bins or inputs % bins or hidden % 2:
        raise OpenUnmixError(f"{path}: fc1.weight {state['fc1.weight'].shape} does not fit {bins} input bins and an "
                             "even hidden size")
    if layers and "lstm.weight_ih_l0_reverse" not in state:
        raise OpenUnmixError(f"{path}: a unidirectional Open-Unmix model; tfsep converts the bidirectional ones")
    sizes = {"hidden": hidden, "bins": bins, "channels": inputs // bins, "output_bins": output_bins, "layers": layers}
    for key, shape in expected_shapes(**sizes).items():
        if key not in state:
            raise OpenUnmixError(f"{path}: not an Open-Unmix state dict of hidden size {hidden}: it lacks {key}")
        if tuple(state[key].shape) != shape:
            raise OpenUnmixError(f"{path}: {key} has shape {tuple(state[key].shape)}, not the {shape} of an "
                                 f"Open-Unmix state dict of hidden size {hidden}, {bins} input bins")
        if not np.issubdtype(state[key].dtype, np.floating):
            raise OpenUnmixError(f"{path}: {key} holds {state[key].dtype}, not floating-point weights")
    return state, sizes


def _some_keys(state):
    keys = sorted(state)
    return ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "") if keys else "no tensors"


def expected_shapes(hidden, bins, channels, output_bins, layers):
    """{key: shape} of an `OpenUnmix(nb_bins=output_bins, nb_channels=channels, hidden_size=hidden,
    nb_layers=layers, max_bin=bins)` state dict (its batch norms' `num_batches_tracked` aside)."""
    half = hidden // 2
    shapes = {"input_mean": (bins,), "input_scale": (bins,), "output_scale": (output_bins,),
              "output_mean": (output_bins,), "fc1.weight": (hidden, channels * bins),
              "fc2.weight": (hidden, 2 * hidden), "fc3.weight": (channels * output_bins, hidden)}
    for norm, size in (("bn1", hidden), ("bn2", hidden), ("bn3", channels * output_bins)):
        shapes.update({f"{norm}.{key}": (size,) for key in _BATCH_NORM})
    for layer in range(layers):
        for suffix in ("", "_reverse"):
            shapes.update({f"lstm.weight_ih_l{layer}{suffix}": (4 * half, hidden if layer == 0 else 2 * half),
                           f"lstm.weight_hh_l{layer}{suffix}": (4 * half, half),
                           f"lstm.bias_ih_l{layer}{suffix}": (4 * half,),
                           f"lstm.bias_hh_l{layer}{suffix}": (4 * half,)})
    return shapes


def model_options(sources, sizes):
    """The SeparationModel arguments that compute what Open-Unmix's `Separator` (as `umxhq()` builds it) computes
    with target models of these `sizes` (`read_state_dict`)."""
    n_fft = 2 * (sizes["output_bins"] - 1)
    if n_fft < 2 or n_fft & (n_fft - 1) or sizes["bins"] > sizes["output_bins"]:
        raise OpenUnmixError(f"{sizes['output_bins']} output bins and {sizes['bins']} input bins are not the "
                             "spectrum of a power-of-two n_fft")
    return {
        "architecture": "umx", "sources": list(sources), "sample_rate": SAMPLE_RATE, "channels": sizes["channels"],
        "n_fft": n_fft, "hop": n_fft // 4, "window": "hann", "framing": "center_reflect",
        "bandwidth": (sizes["bins"] - 0.5) * SAMPLE_RATE / n_fft,  # max_bin() gives exactly `bins`
        "mask_activation": "relu_unbounded", "ratio_mask_exponent": None, "mask_extension": "zeros",
        "wiener_iterations": WIENER_ITERATIONS, "wiener_window": WIENER_WINDOW, "wiener_relative_load": 0.0,
        "size": "base", "network": {
            "hidden": sizes["hidden"], "lstm_layers": sizes["layers"], "per_source": True,
            "output_bins": sizes["output_bins"], "output_affine": True, "batch_norm_epsilon": BATCH_NORM_EPSILON,
        },
    }


def convert(inputs, config=None):
    """A SeparationModel holding the Open-Unmix target models in the `.pth` files `inputs`, one per target.

    inputs: paths (or one path) of `OpenUnmix` state dicts, each named TARGET.pth or TARGET-HASH.pth; the
    model's sources are the targets in that order. config: None, or the published name (`umxhq`, `umxl`) the
    files are, which names the model and checks their hidden size. Raises OpenUnmixError (or pth.PthError),
    naming the file, for anything that does not fit.
    """
    from tfsep.models import SeparationModel

    paths = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(path) for path in inputs]
    if not paths:
        raise OpenUnmixError("no Open-Unmix weight files given; pass one TARGET.pth per target")
    if config is not None and config not in MODELS:
        raise OpenUnmixError(f"{config!r} is not a published Open-Unmix model ({', '.join(MODELS)}); leave --config "
                             "out for other weights")
    targets = {}
    for path in paths:
        target = target_name(path)
        if target in targets:
            raise OpenUnmixError(f"{path}: a second file for target {target!r} (the first: {targets[target][0]})")
        targets[target] = (path, *read_state_dict(path))
    (first, _, sizes), *others = targets.values()
    for path, _, other in others:
        if other != sizes:
            raise OpenUnmixError(f"{path}: its sizes {other} differ from those of {first} ({sizes}); tfsep converts "
                                 "target models of one shape")
    if config is not None and sizes["hidden"] != MODELS[config]["hidden"]:
        raise OpenUnmixError(f"{first}: hidden size {sizes['hidden']}, but {config} has "
                             f"{MODELS[config]['hidden']}; these are not {config}'s weights")
    model = SeparationModel(**model_options(targets, sizes), name=f"openunmix_{config or 'custom'}")
    for target, (path, state, sizes) in targets.items():
        _load_target(model, f"umx_{target}", state, sizes)
    return model


def _load_target(model, prefix, state, sizes):
    """Set one target's Open-Unmix weights `state` into the layers of `model` named `prefix`_*."""
    def weights(key):
        return np.asarray(state[key], np.float32)

    def batch_norm(key, reorder=lambda values: values):
        return [reorder(weights(f"{key}.{name}")) for name in _BATCH_NORM]

    hidden, bins, channels, output_bins = sizes["hidden"], sizes["bins"], sizes["channels"], sizes["output_bins"]

    def by_bin(values):  # Open-Unmix's (channel, bin) order of fc3's outputs -> tfsep's (bin, channel)
        return values.reshape(channels, output_bins, *values.shape[1:]).swapaxes(0, 1).reshape(values.shape)

    fc1 = weights("fc1.weight").reshape(hidden, channels, bins).transpose(2, 1, 0).reshape(bins * channels, hidden)
    model.get_layer(f"{prefix}_standardize").set_weights([-weights("input_mean"), 1.0 / weights("input_scale")])
    model.get_layer(f"{prefix}_fc1").set_weights([fc1])
    model.get_layer(f"{prefix}_bn1").set_weights(batch_norm("bn1"))
    for layer in range(sizes["layers"]):
        bidirectional = model.get_layer(f"{prefix}_bilstm{layer + 1}")
        for lstm, suffix in ((bidirectional.forward_layer, ""), (bidirectional.backward_layer, "_reverse")):
            key = f"l{layer}{suffix}"
            lstm.set_weights([weights(f"lstm.weight_ih_{key}").T, weights(f"lstm.weight_hh_{key}").T,
                              weights(f"lstm.bias_ih_{key}") + weights(f"lstm.bias_hh_{key}")])
    model.get_layer(f"{prefix}_fc2").set_weights([weights("fc2.weight").T])
    model.get_layer(f"{prefix}_bn2").set_weights(batch_norm("bn2"))
    model.get_layer(f"{prefix}_fc3").set_weights([by_bin(weights("fc3.weight")).T])
    model.get_layer(f"{prefix}_bn3").set_weights(batch_norm("bn3", by_bin))
    model.get_layer(f"{prefix}_output_affine").set_weights([weights("output_scale"), weights("output_mean")])
