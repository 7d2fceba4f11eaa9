"""Where one input's stems go, and writing them there as one set.

`output_paths` fills the output template, `check_outputs` refuses collisions before any
work, and `StemWriter` writes a file's stems block by block into temporary files beside
their targets, committed together (`commits.commit_set`): all of them, or none, even across a kill.
"""

import os
import re
from pathlib import Path

import numpy as np

from tfsep import audio, commits, files

DEFAULT_TEMPLATE = "{track}/{source}.wav"
RESIDUAL = "residual"


class SeparationError(Exception):
    """A file that cannot be separated, or an output that cannot be written; the message names it."""


def track_name(path):
    """A safe folder name for an input file: its stem, with path separators and leading dots removed."""
    name = re.sub(r"[/\\\x00]", "_", Path(path).stem).lstrip(".").strip()
    return name or "track"


def check_outputs(outputs):
    """Refuse, before any work, outputs that would overwrite each other or an input.

    `outputs` maps each input path to its {stem: output path}. SeparationError names both
    sides of the first collision: two stems of one input on one path, two inputs on one
    output, or an output that is an input.
    """
    inputs = {_identity(path): path for path in outputs}
    claimed = {}
    for path, targets in outputs.items():
        for stem, target in targets.items():
            key = _identity(target)
            if key in inputs:
                raise SeparationError(f"{target}: the {stem} output of {path} would overwrite the input "
                                      f"{inputs[key]}; choose another output folder or template")
            if key in claimed:
                other_path, other_stem = claimed[key]
                who = f"the {other_stem} and {stem} stems of {path}" if other_path == path else \
                    f"{other_path} ({other_stem}) and {path} ({stem})"
                raise SeparationError(f"{target}: {who} would both be written there; put {{track}} and {{source}} "
                                      "in the template")
            claimed[key] = (path, stem)


def _identity(path):
    """What a path names: the file's (device, inode) where it exists, else its resolved path."""
    path = Path(path)
    try:
        stat = path.stat()
        return stat.st_dev, stat.st_ino
    except OSError:
        pass
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a loop of symbolic links
        return os.path.abspath(path)


def output_paths(sources, path, outdir, template=DEFAULT_TEMPLATE, residual=False):
    """{source: output path} for input `path`: `template` filled with {track} and {source}, inside `outdir`."""
    outdir = Path(outdir)
    if residual and RESIDUAL in sources:
        raise SeparationError(f"the model has a source named {RESIDUAL!r}: --residual would write a second one; "
                              "leave --residual out")
    paths = {}
    for source in [*sources, *[RESIDUAL] * residual]:
        try:
            target = outdir / template.format(track=track_name(path), source=source)
        except (KeyError, IndexError, ValueError):
            raise SeparationError(f"output template {template!r} may hold only {{track}} and {{source}}") from None
        try:
            inside = target.resolve().is_relative_to(outdir.resolve())
        except RuntimeError:
            raise SeparationError(f"{target}: its path runs into a loop of symbolic links") from None
        if not inside:
            raise SeparationError(f"{target}: the output template leads outside {outdir}")
        paths[source] = target
    return paths


def refuse_existing(targets, overwrite):
    """Raise SeparationError naming the first of `targets` ({stem: path}) that exists, unless `overwrite`."""
    existing = [target for target in targets.values() if Path(target).exists()]
    if existing and not overwrite:
        raise SeparationError(f"{existing[0]}: already exists (use --overwrite to replace it)")


def with_format(template, file_format=None):
    """`template` writing `file_format` files (wav, flac or mp3): the default template takes its suffix; a template
    with another suffix of its own is refused (ValueError), one with none gets it."""
    if file_format is None:
        return template
    suffix = Path(template).suffix.lower()
    if template == DEFAULT_TEMPLATE or not suffix:
        return str(Path(template).with_suffix(f".{file_format}")) if suffix else f"{template}.{file_format}"
    if suffix != f".{file_format}":
        raise ValueError(f"the template {template!r} writes {suffix} files, not {file_format}: give one of --format "
                         "and --template, or make them agree")
    return template


def subtype(template, bits=None):
    """The soundfile subtype of stems written by `template`'s format (.wav, .flac or .mp3) with `bits` ("16" by
    default, "24", or "32"/"float" for .wav; an .mp3 holds no bit depth)."""
    suffix = Path(template).suffix.lower()
    if suffix == ".mp3":
        if bits is not None:
            raise ValueError("an mp3 holds no bit depth: leave --bits out, or write .wav or .flac")
        return audio.MP3
    bits = "16" if bits is None else str(bits)
    if bits not in audio.SUBTYPES:
        raise ValueError(f"bits must be one of {list(audio.SUBTYPES)}, got {bits!r}")
    if suffix == ".flac" and audio.SUBTYPES[bits] == "FLOAT":
        raise ValueError("FLAC holds 16- or 24-bit samples, not float: use --bits 16 or --bits 24, or a .wav "
                         "template")
    return audio.SUBTYPES[bits]


class ClippingWarning(files.Notice):
    """Stems written in a format bounded by full scale held samples beyond ±1, which were limited to it."""

    prefix = "warning: "


def clipping_message(path, clipped, total, file_subtype):
    """One line on `clipped` of `total` samples limited to ±1 in the stems of `path`."""
    keep = "--bits float keeps them" if file_subtype != audio.MP3 else "a .wav with --bits float keeps them"
    return (f"{path}: {clipped} of its stems' {total} samples ({100 * clipped / total:.2g} %) went beyond full scale "
            f"and were limited to ±1 ({keep})")


class StemWriter:
    """Writes one input's stems into temporary files beside their targets, then commits them as one set.

        with StemWriter(targets, sample_rate, channels, subtype) as writer:
            for stems in blocks:     # (len(targets), samples, channels)
                writer.write(stems)
            writer.commit(overwrite)

    Leaving the block without a commit, by an error or a signal, removes every temporary
    file and the folders made for them; the outputs that existed stay as they were. The
    commit refuses existing outputs unless `overwrite`, and if another run commits first.
    Formats bounded by full scale (integer samples, mp3) get samples beyond ±1 limited to it,
    counted in `clipped`: never wrapped around.
    """

    def __init__(self, targets, sample_rate, channels, subtype):
        self.targets, self.samples, self._committed = targets, 0, False
        self.clipped, self._bounded = 0, subtype != "FLOAT"
        self._new_folders = {folder for target in targets.values() for folder in (target, *target.parents)
                             if not folder.exists()}
        self._writers = []
        try:
            for target in targets.values():
                self._writers.append(audio.BlockWriter(target, sample_rate, channels, subtype))
        except BaseException:
            self._discard()
            raise

    def __enter__(self):
        return self

    def write(self, stems):
        """Append a block of every stem: (len(targets), samples, channels)."""
        if self._bounded:
            beyond = np.count_nonzero(np.abs(stems) > 1.0)
            if beyond:
                self.clipped += beyond
                stems = np.clip(stems, -1.0, 1.0)
        for writer, stem in zip(self._writers, stems):
            writer.write(stem)
        self.samples += stems.shape[1]

    def commit(self, overwrite=False):
        staged = {writer.close(): writer.path for writer in self._writers}
        try:
            commits.commit_set(staged, overwrite)
        except FileExistsError as error:
            raise SeparationError(f"{error} (another run wrote it meanwhile)") from None
        self._committed = True

    def __exit__(self, *exception):
        if not self._committed:
            self._discard()

    def _discard(self):
        for writer in self._writers:
            writer.discard()
        for folder in sorted(self._new_folders, key=lambda f: len(f.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):  # made for this file, and left empty
                folder.rmdir()
