"""Separator: a SeparationModel applied to arrays and files of any length, in overlapping chunks.

A mixture is cut into chunks of `chunk_seconds` that overlap by `overlap_seconds`; each
chunk goes through the model on its own, and neighbouring chunks are crossfaded linearly
over their overlap, so memory depends on the chunk length, never on the file's. Chunks
start on multiples of the STFT hop, so their frames are the whole file's frames: away
from chunk borders (farther than the network's receptive field), chunked and whole-file
results agree.

Channels: the model takes `channels` (2) at a time. A mono file is given to the model as
two identical channels and its stems are mono. A file with more channels is separated in
groups of two channels ((1, 2), (3, 4), ...), an odd last channel as mono; the stems have
the file's channels.

Files are read, resampled (soxr), separated, resampled back to the file's own rate and
written block by block into temporary files that are renamed into place only when the
whole file has been separated.
"""

import re
from pathlib import Path

import numpy as np
import soxr
import tensorflow as tf
from tqdm.auto import tqdm

from tfsep import audio
from tfsep.models import load_model, reconfigure

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "saved_models" / "band" / "model.keras"
DEFAULT_TEMPLATE = "{track}/{source}.wav"
RESIDUAL = "residual"
BLOCK_SAMPLES = 441000  # file I/O block, 10 s at 44.1 kHz
MAX_AMPLITUDE = 1000.0  # +60 dB over full scale: beyond it, samples are not audio at this scale


class SeparationError(Exception):
    """A file that cannot be separated, or an output that cannot be written; the message names it."""


def crossfade_chunks(separate_chunk, blocks, chunk, overlap):
    """Separate a stream of mixture blocks chunk by chunk, yielding stem blocks as they become final.

    Args:
        separate_chunk: float32 (samples, channels) -> (stems, samples, channels).
        blocks: iterable of float32 (n, channels) arrays, the mixture in order.
        chunk, overlap: in samples, 0 <= overlap < chunk; chunk k starts at k·(chunk − overlap).

    Yields (stems, n, channels) arrays whose concatenation is as long as the mixture. In
    an overlap, the earlier chunk fades out and the later one fades in, linearly.
    """
    step = chunk - overlap
    fade_in = ((np.arange(overlap) + 0.5) / overlap).astype(np.float32)[:, None] if overlap else None
    buffer, pending, finished = None, None, False
    iterator = iter(blocks)
    while not finished:
        block = next(iterator, None)
        if block is None:
            finished = True
        else:
            buffer = block if buffer is None else np.concatenate([buffer, block])
        while buffer is not None and (len(buffer) > chunk or (finished and len(buffer))):
            last = finished and len(buffer) <= chunk
            stems = np.array(separate_chunk(buffer[:chunk]), dtype=np.float32)
            if pending is not None:
                stems[:, :overlap] = stems[:, :overlap] * fade_in + pending
            if last:
                yield stems
                buffer = None
            else:
                pending = stems[:, step:] * (1.0 - fade_in) if overlap else None
                yield stems[:, :step]
                buffer = buffer[step:]


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


def track_name(path):
    """A safe folder name for an input file: its stem, with path separators and leading dots removed."""
    name = re.sub(r"[/\\\x00]", "_", Path(path).stem).lstrip(".").strip()
    return name or "track"


class Separator:
    """Separates mixtures with a SeparationModel, or its TFLite export (`from_tflite`), in overlapping chunks.

    Args:
        model: a SeparationModel.
        chunk_seconds, overlap_seconds: chunk length and crossfade, rounded to the STFT hop.
        wiener_iterations: if given, the model is rebuilt with this many Wiener EM iterations.
    """

    def __init__(self, model, chunk_seconds=7.0, overlap_seconds=2.0, wiener_iterations=None):
        if wiener_iterations is not None and wiener_iterations != model.get_config()["wiener_iterations"]:
            model = reconfigure(model, wiener_iterations=wiener_iterations)
        self.model = model
        config = model.get_config()
        run = tf.function(model, input_signature=[tf.TensorSpec((None, None, config["channels"]), tf.float32)],
                          reduce_retracing=True)
        self._run = lambda batch: {source: stem.numpy() for source, stem in run(tf.constant(batch)).items()}
        self._set_chunking(model.sources, model.sample_rate, config["channels"], config["hop"], chunk_seconds,
                           overlap_seconds)

    def _set_chunking(self, sources, sample_rate, channels, hop, chunk_seconds, overlap_seconds):
        self.sources, self.sample_rate, self.channels = tuple(sources), sample_rate, channels
        if not chunk_seconds > 0 or not overlap_seconds >= 0:
            raise ValueError(f"chunk ({chunk_seconds} s) must be positive and overlap ({overlap_seconds} s) >= 0")
        self.chunk = max(hop, int(round(chunk_seconds * self.sample_rate / hop)) * hop)
        self.overlap = min(self.chunk - hop, int(round(overlap_seconds * self.sample_rate / hop)) * hop)

    @classmethod
    def load(cls, path=None, **options):
        """A Separator for the `.keras` model or whole-clip `.tflite` file at `path` (no path: the shipped model)."""
        path = Path(path) if path is not None else DEFAULT_MODEL
        if path == DEFAULT_MODEL and not path.is_file():
            raise FileNotFoundError(f"{path}: the default model is not there; pass a model file (--model)")
        if path.suffix.lower() == ".tflite":
            return cls.from_tflite(path, **options)
        return cls(load_model(path), **options)

    @classmethod
    def from_tflite(cls, path, chunk_seconds=7.0, overlap_seconds=2.0, wiener_iterations=None, threads=2):
        """A Separator that runs a whole-clip TFLite file (`tfsep export --format tflite`) in LiteRT.

        Its Wiener iterations were fixed at export; asking for others raises ValueError.
        """
        from tfsep.export import tflite_metadata

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ImportError("running .tflite files needs LiteRT: pip install 'tfsep[litert]'") from None
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        description = tflite_metadata(path)
        if "block_samples" in description:
            raise ValueError(f"{path}: is the streaming form; separating files needs the whole-clip form")
        if wiener_iterations is not None and wiener_iterations != description["wiener_iterations"]:
            raise ValueError(f"{path}: was exported with {description['wiener_iterations']} Wiener iterations; "
                             f"export it again with --wiener {wiener_iterations}")
        separator = cls.__new__(cls)
        separator.model = None
        runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner("serving_default")
        separator._run = lambda batch: runner(waveform=batch)
        separator._set_chunking(description["sources"], description["sample_rate"], description["channels"],
                                description["hop"], chunk_seconds, overlap_seconds)
        return separator

    def _separate_chunk(self, mixture, residual):
        """(samples, channels) at the model's rate -> (sources [+ residual], samples, channels)."""
        channels = mixture.shape[1]
        groups = _channel_groups(channels, self.channels)
        batch = np.stack([mixture[:, group] for group in groups])  # (groups, samples, model channels)
        estimates = self._run(batch)
        stems = np.zeros((len(self.sources) + residual, len(mixture), channels), np.float32)
        for k, source in enumerate(self.sources):
            estimate = estimates[source]
            for g, group in enumerate(groups):
                for i, column in enumerate(group):
                    if column not in group[:i]:
                        stems[k, :, column] = estimate[g, :, i]
        if residual:
            stems[-1] = mixture - stems[:-1].sum(0)
        return stems

    def _stream(self, blocks, rate, channels, residual, name):
        """Stem blocks (stems, n, channels) at `rate` for mixture blocks at `rate`; the last one pads or crops
        the total to the mixture's length."""
        counted = _Counted(blocks, name)
        at_model_rate = _resampled(counted, rate, self.sample_rate, channels)
        stems = crossfade_chunks(lambda chunk: self._separate_chunk(chunk, residual), at_model_rate,
                                 self.chunk, self.overlap)
        count = len(self.sources) + residual
        flat = (block.transpose(1, 0, 2).reshape(len(block[0]), -1) for block in stems)  # (n, stems · channels)
        written = 0
        for block in _resampled(flat, self.sample_rate, rate, count * channels):
            block = block[: max(0, counted.samples - written)]
            written += len(block)
            yield block.reshape(len(block), count, channels).transpose(1, 0, 2)
        if written < counted.samples:
            yield np.zeros((count, counted.samples - written, channels), np.float32)

    def separate(self, mixture, sample_rate, residual=False):
        """Separate float (samples, channels) audio at `sample_rate` -> {source: (samples, channels)} at that rate."""
        mixture = np.asarray(mixture, np.float32)
        if mixture.ndim == 1:
            mixture = mixture[:, None]
        if mixture.ndim != 2 or not mixture.size:
            raise ValueError(f"mixture must be (samples, channels) with samples and channels >= 1, got {mixture.shape}")
        blocks = (mixture[start:start + BLOCK_SAMPLES] for start in range(0, len(mixture), BLOCK_SAMPLES))
        stems = np.concatenate(list(self._stream(blocks, sample_rate, mixture.shape[1], residual, "mixture")), 1)
        names = list(self.sources) + [RESIDUAL] * residual
        return dict(zip(names, stems))

    def output_paths(self, path, outdir, template=DEFAULT_TEMPLATE, residual=False):
        """{source: output path} for input `path`: `template` filled with {track} and {source}, inside `outdir`."""
        outdir = Path(outdir)
        names = list(self.sources) + [RESIDUAL] * residual
        paths = {}
        for source in names:
            try:
                target = outdir / template.format(track=track_name(path), source=source)
            except (KeyError, IndexError, ValueError):
                raise SeparationError(f"output template {template!r} may hold only {{track}} and {{source}}") from None
            if not target.resolve().is_relative_to(outdir.resolve()):
                raise SeparationError(f"{target}: the output template leads outside {outdir}")
            paths[source] = target
        return paths

    def separate_file(self, path, outdir, template=DEFAULT_TEMPLATE, bits="float", residual=False,
                      overwrite=False, progress=False):
        """Separate the audio file `path` into `outdir`; returns {source: written path}.

        The stems are written at the file's rate with `bits` ("16", "24" or "float"), in
        the format of the template's suffix (.wav or .flac). Existing outputs are refused
        unless `overwrite`; on any error, no output is written or changed.
        """
        path = Path(path)
        targets = self.output_paths(path, outdir, template, residual)
        existing = [str(target) for target in targets.values() if target.exists()]
        if existing and not overwrite:
            raise SeparationError(f"{existing[0]}: already exists (use --overwrite to replace it)")
        found, blocks = audio.blocks(path, BLOCK_SAMPLES)
        subtype = audio.SUBTYPES.get(str(bits))
        if subtype is None:
            raise ValueError(f"bits must be one of {list(audio.SUBTYPES)}, got {bits!r}")
        writers = []
        new_folders = {folder for target in targets.values() for folder in (target, *target.parents)
                       if not folder.exists()}
        try:
            writers = [audio.BlockWriter(target, found.sample_rate, found.channels, subtype)
                       for target in targets.values()]
            bar = tqdm(total=found.samples, unit="sample", unit_scale=True, desc=path.name, leave=False,
                       disable=not progress)
            written = 0
            with bar:
                for stems in self._stream(blocks, found.sample_rate, found.channels, residual, str(path)):
                    for writer, stem in zip(writers, stems):
                        writer.write(stem)
                    written += stems.shape[1]
                    bar.update(stems.shape[1])
            if written == 0:
                raise SeparationError(f"{path}: holds no samples")
            for writer in writers:
                writer.commit()
        except BaseException:
            for writer in writers:
                writer.discard()
            for folder in sorted(new_folders, key=lambda f: len(f.parts), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):  # made for this file, and left empty
                    folder.rmdir()
            raise
        return targets
