"""The browser form: a folder that any static host serves, which separates songs in the page with LiteRT.js.

`tfsep export MODEL --format web --output DIR` writes (`write`, in `web_writer`):

- `model.tflite`: the whole-clip TFLite form built at one shape, (1, fixed_samples, channels)
  (`tflite_writer.write(fixed_seconds=...)`), since LiteRT.js cannot resize an input; its
  metadata is the description, with `fixed_samples` and `overlap_samples`;
- `model.json`: what the page needs of that description: name, sources, sample rate,
  channels, chunk and overlap in samples, and a line of provenance;
- `index.html` and its ES modules (`tfsep.web.PAGE`), and `litert/`, the LiteRT.js runtime
  (`tfsep.web.runtime`);
- `serve.py`, a static server that sends the cross-origin headers threads need (`tfsep.web.serve`).

The page cuts the song into the chunks `tfsep separate` cuts (`chunking.crossfade_chunks`
with the file's chunk and overlap), pads the last one to the fixed length as `LiteRTBackend`
does, and crossfades them alike, so that both give the same stems. `describe` and `open` read
and run the folder's `model.tflite`, so `tfsep separate --model DIR` separates as the page does.
"""

from pathlib import Path

from tfsep.formats import tflite

MODEL, CONFIG = "model.tflite", "model.json"  # the folder's model and the page's view of it


def describe(path):
    """The description in the folder's `model.tflite` (`tflite.describe`)."""
    return tflite.describe(Path(path) / MODEL)


def open(path, description, threads, options):  # noqa: A001 (the formats interface)
    return tflite.LiteRTBackend(Path(path) / MODEL, description, threads, **options)


def __getattr__(name):
    """`write`, from `web_writer`, imported (with TensorFlow) when asked for."""
    if name == "write":
        from tfsep.formats.web_writer import write

        return write
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
