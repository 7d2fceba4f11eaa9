"""Separator: a separation model applied to arrays and files of any length, in chunks.

The model runs in a backend (`backends`, made by `formats`: Keras, a SavedModel export, or LiteRT for a `.tflite`
file) on the chunks of `chunking`'s plan, so memory depends on the chunk length, never on the file's. This module
imports no TensorFlow: a LiteRT model, such as the shipped one's TFLite form, separates without it.

Channels: the model takes `channels` (2) at a time. A mono file is given to the model as
two identical channels and its stems are mono. A file with more channels is separated in
groups of two channels ((1, 2), (3, 4), ...), an odd last channel as mono; the stems have
the file's channels.

Files are read, resampled (soxr), separated, resampled back to the file's own rate and
written block by block by an `outputs.StemWriter`, which commits the stems as one set
only when the whole file has been separated.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import soxr
from tqdm.auto import tqdm

from tfsep import audio, backends, chunking, formats, providers
from tfsep.names import CHUNK_SECONDS
from tfsep.outputs import (
    DEFAULT_TEMPLATE,
    RESIDUAL,
    ClippingWarning,
    SeparationError,
    StemWriter,
    check_outputs,
    clipping_message,
    output_paths,
    refuse_existing,
    subtype,
)

BLOCK_SAMPLES = 441000  # file I/O block, 10 s at 44.1 kHz
MAX_AMPLITUDE = 1000.0  # +60 dB over full scale: beyond it, samples are not audio at this scale


def _resampled(blocks, rate_in, rate_out, channels):
    """The blocks resampled from `rate_in` to `rate_out` as a stream (soxr); unchanged if the rates agree."""
    if rate_in == rate_out:
        yield from blocks
        return
    stream = soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32", quality="HQ")
    for block in blocks:
        yield stream.resample_chunk(np.ascontiguousarray(block, np.float32))
    yield stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)


class _Counted:
    """Iterates over blocks, counting their samples and refusing NaN, infinite or absurdly large samples."""

    def __init__(self, blocks, name):
        self.blocks, self.name, self.samples = blocks, name, 0

    def __iter__(self):
        for block in self.blocks:
            if not np.isfinite(block).all():
                raise SeparationError(f"{self.name}: holds NaN or infinite samples")
            peak = float(np.abs(block).max(initial=0.0))
            if peak > MAX_AMPLITUDE:
                raise SeparationError(f"{self.name}: samples reach {peak:.3g}, far beyond full scale ±1 (tfsep "
                                      f"takes up to ±{MAX_AMPLITUDE:g}); rescale the file")
            self.samples += len(block)
            yield block


def _channel_groups(channels, group):
    """Column indices of the groups of `group` channels the model sees; a short last group repeats its last channel."""
    return [[min(start + i, channels - 1) for i in range(group)] for start in range(0, channels, group)]


def _version(path):
    """What tells one version of a file from another: its inode, size and modification time."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _exactly(stems, counted, count, channels):
    """The stem blocks cropped, or padded with silence at the end, to the `counted` mixture's length."""
    written = 0
    for block in stems:
        block = block[:, : max(0, counted.samples - written)]
        written += block.shape[1]
        yield block
    if written < counted.samples:
        yield np.zeros((count, counted.samples - written, channels), np.float32)


class Separator:
    """Separates mixtures with a SeparationModel, or a model file of any form (`load`), in chunks.

    Args:
        model: a SeparationModel, or a `backends.Backend` (Keras, SavedModel, LiteRT).
        chunk_seconds, overlap_seconds: the chunk plan (`chunking.chunk_plan`): chunks rounded
            to the STFT hop, crossfaded over 1 s by default; or, for networks that cut frames
            into segments, summed chunks of whole segments, which take no overlap.
        batch_size: chunks of a file given to the model in one call (a GPU keeps busy with
            several; memory grows with it).
        options: weightless options of the model (`backends.OPTIONS`): `wiener_iterations`, Wiener EM
            iterations; `griffin_lim_iterations`, Griffin-Lim iterations from the mixture's phase;
            `mixture_consistent`, stems that sum to the mixture. Those given, and not None, rebuild
            the model with them (a backend's were set when it was made).
    """

    def __init__(self, model, chunk_seconds=CHUNK_SECONDS, overlap_seconds=None, batch_size=1, **options):
        if isinstance(model, backends.Backend):
            if backends.asked(options):
                raise ValueError(f"a backend's options ({', '.join(backends.asked(options))}) are set when it is made")
            self.backend = model
        else:
            from tfsep.formats.keras import KerasBackend

            self.backend = KerasBackend(model, **options)
        self.model, self.description = self.backend.model, self.backend.description
        self.sources, self.sample_rate = tuple(self.description["sources"]), self.description["sample_rate"]
        self.channels = self.description["channels"]
        self.plan = chunking.chunk_plan(self.description, chunk_seconds, overlap_seconds)
        self.batch_size = batch_size
        fixed = self.description.get("fixed_samples")  # a fixed-shape TFLite file's one chunk length
        if fixed and self.plan.chunk > fixed:
            raise ValueError(f"chunks of {chunk_seconds} s exceed this model's fixed length of "
                             f"{fixed / self.sample_rate:g} s; choose a chunk of at most that")
        limit = self.description.get("max_samples")  # a SavedModel's limit per request
        if limit and self.plan.chunk > limit:
            raise ValueError(f"chunks of {chunk_seconds} s exceed this SavedModel's limit of "
                             f"{limit / self.sample_rate:g} s per request; choose a shorter chunk")

    @classmethod
    def load(cls, path=None, chunk_seconds=CHUNK_SECONDS, overlap_seconds=None, threads=2, batch_size=1, **options):
        """A Separator for a `.keras` model, a whole-clip `.tflite` file (run in LiteRT on `threads` threads), a
        SavedModel version folder from `tfsep export`, or a name: `band`, the shipped model (also taken when no
        path is given; run in its TFLite form where LiteRT is installed, `providers.separation_model`), or a
        pretrained one such as `spleeter:2stems` (`providers.resolve`); `options` as for `Separator`."""
        path = providers.separation_model(path, **options)
        return cls(formats.open(path, threads, **options), chunk_seconds, overlap_seconds, batch_size)

    def _separate_chunks(self, chunks):
        """[(samples, channels)] of one length at the model's rate -> [(sources, samples, channels)], in one call of
        the backend on every channel group of every chunk."""
        channels = chunks[0].shape[1]
        groups = _channel_groups(channels, self.channels)
        batch = np.stack([chunk[:, group] for chunk in chunks for group in groups])  # (chunks · groups, samples, ch)
        estimates = self.backend(batch)
        return [self._regroup(estimates, k * len(groups), groups, channels) for k in range(len(chunks))]

    def _regroup(self, estimates, first, groups, channels):
        """The (sources, samples, channels) stems of one chunk, from its groups' rows of `estimates` from `first`."""
        if groups == [list(range(channels))]:  # the model's own channel count: one group, in order
            return np.stack([estimates[source][first] for source in self.sources])
        samples = estimates[self.sources[0]].shape[1]
        stems = np.zeros((len(self.sources), samples, channels), np.float32)
        for k, source in enumerate(self.sources):
            for g, group in enumerate(groups):
                for i, column in enumerate(group):
                    if column not in group[:i]:
                        stems[k, :, column] = estimates[source][first + g, :, i]
        return stems

    def stream(self, blocks, rate, channels, residual, name):
        """Stem blocks (stems, n, channels) at `rate` for mixture blocks (n, channels) at `rate`, as they become
        final; the last one pads or crops the total to the mixture's length. With `residual`, the last stem is the
        mixture minus the others. `name` names the mixture in errors. `separate`, `separate_file` and
        `tfsep batch` all go through here.

        The residual, and for a model whose stems sum to the mixture (`mixture_consistent`) its share of
        the residual, are taken at `rate` against the mixture as given: what resampling to the model's
        rate leaves out (above its Nyquist frequency) is in them too, so consistent stems sum to the file.
        """
        counted = _Counted(blocks, name)
        recorded = []  # the mixture at `rate` that no stem block has been paired with yet

        def recording(blocks):
            for block in blocks:
                recorded.append(block)
                yield block

        at_model_rate = _resampled(recording(counted), rate, self.sample_rate, channels)
        stems = chunking.chunked(self.plan, self.description, self._separate_chunks, at_model_rate,
                                 self.backend.workers, self.batch_size)
        count = len(self.sources)
        if rate != self.sample_rate:  # resampled as one (n, stems · channels) stream, then split again
            flat = (block.transpose(1, 0, 2).reshape(block.shape[1], -1) for block in stems)
            stems = (block.reshape(len(block), count, channels).transpose(1, 0, 2)
                     for block in _resampled(flat, self.sample_rate, rate, count * channels))
        consistent = self.description.get("mixture_consistent", False)
        for block in _exactly(stems, counted, count, channels):
            if residual or consistent:
                mixture = np.concatenate(recorded)
                recorded[:] = [mixture[block.shape[1]:]]
                rest = mixture[: block.shape[1]] - block.sum(0)
                if consistent:
                    block = block + rest / count
                    rest = mixture[: block.shape[1]] - block.sum(0)
                if residual:
                    block = np.concatenate([block, rest[None]])
            else:
                recorded.clear()
            yield block

    def separate(self, mixture, sample_rate, residual=False):
        """Separate float (samples, channels) audio at `sample_rate` -> {source: (samples, channels)} at that rate."""
        mixture = np.asarray(mixture, np.float32)
        if mixture.ndim == 1:
            mixture = mixture[:, None]
        if mixture.ndim != 2 or not mixture.size:
            raise ValueError(f"mixture must be (samples, channels) with samples and channels >= 1, got {mixture.shape}")
        blocks = (mixture[start:start + BLOCK_SAMPLES] for start in range(0, len(mixture), BLOCK_SAMPLES))
        stems = np.concatenate(list(self.stream(blocks, sample_rate, mixture.shape[1], residual, "mixture")), 1)
        names = list(self.sources) + [RESIDUAL] * residual
        return dict(zip(names, stems))

    def output_paths(self, path, outdir, template=DEFAULT_TEMPLATE, residual=False):
        """{source: output path} for input `path` (`outputs.output_paths`)."""
        return output_paths(self.sources, path, outdir, template, residual)

    def separate_file(self, path, outdir, template=DEFAULT_TEMPLATE, bits=None, residual=False,
                      overwrite=False, progress=False, checked=False):
        """Separate the audio file `path` into `outdir`; returns {source: written path}.

        The stems are written at the file's rate with `bits` (`outputs.subtype`: 16-bit by
        default), in the format of the template's suffix (.wav, .flac or .mp3), by an
        `outputs.StemWriter`, which commits them as one set: on any error, or if another run
        commits first, every existing output stays as it was. Existing outputs are refused
        unless `overwrite`, before any work and again at the commit; so are outputs that collide
        (`check_outputs`). Samples beyond full scale, in formats bounded by it, are limited to
        ±1, with an `outputs.ClippingWarning` that says how many. A file that changes while it
        is read (another program rewriting it) is refused before the commit: stems of two
        versions are never written. `checked`: the caller has checked the outputs of all its
        files at once (the CLI, before the model loads); only the commit checks them again.
        """
        path = Path(path)
        targets = self.output_paths(path, outdir, template, residual)
        if not checked:
            check_outputs({path: targets})
            refuse_existing(targets, overwrite)
        found, blocks = audio.blocks(path, BLOCK_SAMPLES)
        version = _version(path)  # the file is there and readable; its samples are read from here on
        stem_subtype = subtype(template, bits)
        bar = tqdm(total=found.samples, unit="sample", unit_scale=True, desc=path.name, leave=False,
                   disable=not progress)
        with StemWriter(targets, found.sample_rate, found.channels, stem_subtype) as writer, bar:
            for stems in self.stream(blocks, found.sample_rate, found.channels, residual, str(path)):
                writer.write(stems)
                bar.update(stems.shape[1])
            if writer.samples == 0:
                raise SeparationError(f"{path}: holds no samples")
            bar.total = bar.n  # a compressed file's length was the container's estimate: end the bar at 100 %
            bar.refresh()
            if _version(path) != version:
                raise SeparationError(f"{path}: changed while it was read; nothing was written")
            writer.commit(overwrite)
        if writer.clipped:
            total = writer.samples * len(targets) * found.channels
            warnings.warn(ClippingWarning(clipping_message(path, writer.clipped, total, stem_subtype)), stacklevel=2)
        return targets
