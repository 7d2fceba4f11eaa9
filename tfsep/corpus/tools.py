"""The programs the corpus is made with (FluidSynth, mma, espeak-ng), and the one sample rate it is made at."""

import shutil

from tfsep.corpus.errors import RenderError

SAMPLE_RATE = 44100  # FluidSynth renders at it; drum samples and espeak's voices are resampled to it


def find_tool(program, name=None):
    """The path of `program` on the PATH, or RenderError naming it (as `name`) and its Debian package."""
    path = shutil.which(program)
    if path is None:
        raise RenderError(f"{name or program} is not installed: install it with `apt-get install {program}`")
    return path
