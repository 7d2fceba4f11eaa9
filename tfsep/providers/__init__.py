"""Named models: the shipped `band` model, and pretrained ones (`spleeter:2stems`) that providers fetch,
verify, convert and cache.

`resolve(spec)` turns what a user passes as a model into a local file: `band` (or no
model at all) is the shipped default model, inside the installed package or the source
checkout; a name `KIND:NAME` such as `spleeter:2stems` goes to the provider `KIND`
(`PROVIDERS`), which makes the converted `.keras` file in the cache folder
(`$TFSEP_HOME/models`, by default `~/.cache/tfsep/models`) on first use; anything else is
a path and stays one (write `./band` for a file of that name). The bare names of `ALIASES` (`umxhq`,
`umxl`) stand for `openunmix:umxhq` and `openunmix:umxl`.

A provider is a module here that offers:

- `NAMES`: {name: Card}, the models it fetches, with what `tfsep models` lists about each
  (`catalog`);
- `fetch(name, target, log)`: download its publisher's files, verify them, convert them
  and write the `.keras` file `target` atomically (`formats.keras.write`), or raise
  PretrainedError saying what to do (an unknown name too); `log(message)` tells the user
  what is fetched, from where;
- `convert(inputs, config)`: a SeparationModel from files fetched by hand (`tfsep convert KIND`).

Adding a provider is one module and one entry in `PROVIDERS`.

"""

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tfsep import backends, formats, names

SHIPPED = "band"  # the name of the shipped default model
PROVIDERS = {"spleeter": "tfsep.providers.spleeter", "openunmix": "tfsep.providers.openunmix"}  # KIND -> its module
ALIASES = {"umxhq": "openunmix:umxhq", "umxl": "openunmix:umxl"}  # bare names that stand for KIND:NAME


class PretrainedError(RuntimeError):
    """A named model that cannot be fetched, verified or converted; the message says what to do."""


@dataclass(frozen=True)
class Card:
    """What `tfsep models` lists about a name: its sources, the size of its download in MB (about; None: nothing
    to download), the weights' licence, and its publisher's scores where published (MUSDB18 test set, BSSEval v4
    median SDR in dB, one per source in order)."""

    sources: tuple
    download_mb: float | None
    licence: str
    scores: str = ""


def home():
    """tfsep's cache folder: `$TFSEP_HOME`, by default `~/.cache/tfsep`."""
    return Path(os.environ.get("TFSEP_HOME") or Path.home() / ".cache" / "tfsep")


def shipped_model():
    """The shipped model's file: inside the installed package (a wheel), else in the source checkout."""
    package = Path(__file__).resolve().parents[1]  # tfsep/
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
    """Whether `spec` names a model (`band`, an alias of `ALIASES`, or `KIND:NAME` of a provider) rather than a
    path."""
    return isinstance(spec, str) and (spec == SHIPPED or spec in ALIASES
                                      or spec.partition(":")[0] in PROVIDERS and ":" in spec)


def provider(kind):
    """The provider module of `kind` (a key of `PROVIDERS`)."""
    if kind not in PROVIDERS:
        raise PretrainedError(f"unknown kind {kind!r}; tfsep converts {', '.join(sorted(PROVIDERS))}")
    return importlib.import_module(PROVIDERS[kind])


def resolve(spec=None, log=None):
    """The local model file for `spec`: the shipped model for None or `band`, a provider's `KIND:NAME` model from
    the cache (fetched on first use, and again where the cached file is damaged), else Path(spec)."""
    if spec is None or spec == SHIPPED:
        path = shipped_model()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the shipped model is not there; pass a model file (--model)")
        return path
    if not is_name(spec):
        return Path(spec)
    kind, _, name = ALIASES.get(spec, spec).partition(":")
    target = home() / "models" / f"{kind}-{name}.keras"
    log = log or _stderr
    if target.is_file() and not _readable(target):
        log(f"{target}: the cached {kind}:{name} is damaged (not a tfsep .keras file); deleting it and fetching "
            f"{kind}:{name} again")
        target.unlink()
    if not target.is_file():
        provider(kind).fetch(name, target, log)
    return target


def _readable(path):
    """Whether the cached `path` is a whole .keras archive with a tfsep model's config: a cut or overwritten file
    (its zip directory, at the end, gone) is not."""
    try:
        formats.describe(path)
    except ValueError:
        return False
    return True


def catalog():
    """[(name, Card, cached)] for `band` and every provider's names, as `tfsep models` lists them; cached: whether
    the converted model is in the cache (`band`: whether it is installed). Imports no TensorFlow."""
    # The shipped model separates the default sources (tests/test_spleeter_fetch.py holds it to its description,
    # which takes TensorFlow to read).
    rows = [(SHIPPED, Card(names.SOURCES, None, "MIT (tfsep)"), shipped_model().is_file())]
    for kind in PROVIDERS:
        for name, card in provider(kind).NAMES.items():
            rows.append((f"{kind}:{name}", card, (home() / "models" / f"{kind}-{name}.keras").is_file()))
    return rows


def convert(kind, inputs, config=None):
    """A SeparationModel from the files `inputs` of a `kind` model fetched by hand (`tfsep convert`)."""
    return provider(kind).convert(inputs, config)


def _stderr(message):
    print(f"tfsep: {message}", file=sys.stderr, flush=True)


def file_digest(path, algorithm="sha256"):
    """The `hashlib` digest (`algorithm`) of the file at `path`, read a MiB at a time."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest


def sha256(path):
    """The SHA-256 of the file at `path`, in hex."""
    return file_digest(path).hexdigest()
