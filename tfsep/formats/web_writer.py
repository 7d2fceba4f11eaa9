"""Writing the browser form (`web.write`): the fixed-shape model, the page, the runtime and the server, one folder."""

import json
import shutil
from pathlib import Path

from tfsep import files
from tfsep.formats import tflite, tflite_writer
from tfsep.formats.web import CONFIG, MODEL
from tfsep.models import describe
from tfsep.names import CHUNK_SECONDS
from tfsep.web import PAGE, runtime, serve


def write(model, path, *, quantize="none", wiener_iterations=None, griffin_lim_iterations=None,
          mixture_consistent=None, runtime_url=None, name=None):
    """Write the SeparationModel `model` as a browser folder at `path` (`formats.web`); returns the path.

    The LiteRT.js runtime is fetched first (`runtime.tarballs`, from the npm registry
    `runtime_url` or npmjs.org), so a failed fetch costs no conversion. The model is
    `tflite_writer.write`'s whole-clip form at the fixed chunk of `names.CHUNK_SECONDS`, with
    the other options as there; models that cut frames into segments are refused. The folder
    is built beside `path` and renamed into place (`files.write_folder`), replacing one
    already there: the caller decides whether it may. `name`: what the page calls the model
    (default: the model's own name).
    """
    tflite_writer.check_fixable(describe(model))
    tarballs = runtime.tarballs(runtime_url)

    def build(folder):
        folder = Path(folder)
        tflite_writer.write(model, folder / MODEL, quantize=quantize, wiener_iterations=wiener_iterations,
                            griffin_lim_iterations=griffin_lim_iterations, mixture_consistent=mixture_consistent,
                            fixed_seconds=CHUNK_SECONDS)
        description = tflite.describe(folder / MODEL)
        (folder / CONFIG).write_text(json.dumps(page_config(name or model.name, description), indent=2) + "\n")
        shutil.copytree(PAGE, folder, dirs_exist_ok=True)
        shutil.copy(serve.__file__, folder / "serve.py")
        runtime.unpack(tarballs, folder / "litert")

    files.write_folder(path, build, replace=True)
    return Path(path)


def page_config(name, description):
    """What the page reads of a model described by `description` (with `fixed_samples`): model.json's fields."""
    weights = "float32" if description["quantize"] == "none" else description["quantize"]
    provenance = (f"{name}: a {description['architecture']} network, {weights} weights, exported by tfsep "
                  f"{description['tfsep_version']} for LiteRT.js {runtime.VERSION}")
    return {"name": name, "sources": description["sources"], "sample_rate": description["sample_rate"],
            "channels": description["channels"], "chunk_samples": description["fixed_samples"],
            "overlap_samples": description["overlap_samples"], "fixed_samples": description["fixed_samples"],
            "provenance": provenance}
