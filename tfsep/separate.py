"""Separator: a SeparationModel applied to arrays and files of any length, in chunks.

Memory depends on the chunk length, never on the file's. There are two ways to chunk:

- Crossfaded chunks (most networks): the mixture is cut into chunks of `chunk_seconds` that
  overlap by `overlap_seconds`; each chunk goes through the model on its own, and
  neighbouring chunks are crossfaded linearly over their overlap. Chunks start on
  multiples of the STFT hop, so their frames are the whole file's frames: away from chunk
  borders (farther than the network's receptive field), chunked and whole-file results agree.
- Summed chunks (networks that cut the frames into independent segments, such as
  Spleeter's U-Nets): each chunk is a whole number of segments of the whole file's frame
  grid, `chunk_seconds` rounded to segments, with the n_fft − hop samples its frames need
  beyond it. The model's `valid` form (`models.chunk_model`) separates exactly those
  frames, and the chunks' outputs are summed where their frames overlap, which is the
  whole file's inverse STFT: the stems equal the whole-file result (to float rounding) at
  every sample, with no overlap recomputed.

Channels: the model takes `channels` (2) at a time. A mono file is given to the model as
two identical channels and its stems are mono. A file with more channels is separated in
groups of two channels ((1, 2), (3, 4), ...), an odd last channel as mono; the stems have
the file's channels.

Files are read, resampled (soxr), separated, resampled back to the file's own rate and
written block by block into temporary files that are renamed into place only when the
whole file has been separated.
"""

import json
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import soxr
import tensorflow as tf
from tqdm.auto import tqdm

from tfsep import audio, files, pretrained, quiet
from tfsep.layers import leading_pad, num_frames, window_array
from tfsep.models import check_model_file, chunk_model, describe, load_model, reconfigure

def _default_model():
    """The shipped model: inside the installed package (a wheel), else in the source checkout."""
    package = Path(__file__).resolve().parent
    packaged = package / "saved_models" / "band" / "model.keras"
    return packaged if packaged.is_file() else package.parent / "saved_models" / "band" / "model.keras"


DEFAULT_MODEL = _default_model()
DEFAULT_TEMPLATE = "{track}/{source}.wav"
RESIDUAL = "residual"
BLOCK_SAMPLES = 441000  # file I/O block, 10 s at 44.1 kHz
# 1 s of crossfade: the default model's mean test SDR is the same with 2 s, 1 s or 0.5 s (2.487, 2.487 and
# 2.489 dB global SDR on 30 held-out tracks), and 7 s chunks then recompute 17 % of the audio instead of 40 %.
DEFAULT_OVERLAP_SECONDS = 1.0
MAX_AMPLITUDE = 1000.0  # +60 dB over full scale: beyond it, samples are not audio at this scale


class SeparationError(Exception):
    """A file that cannot be separated, or an output that cannot be written; the message names it."""


def _own(stems):
    """`stems` as a float32 array that may be changed in place: copied unless it is already one that owns its
    memory (a view could be the caller's input)."""
    stems = np.asarray(stems, np.float32)
    return stems if stems.flags.owndata and stems.flags.writeable else stems.copy()


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
            stems = _own(separate_chunk(buffer[:chunk]))
            if pending is not None:
                stems[:, :overlap] = stems[:, :overlap] * fade_in + pending
            if last:
                yield stems
                buffer = None
            else:
                pending = stems[:, step:] * (1.0 - fade_in) if overlap else None
                yield stems[:, :step]
                buffer = buffer[step:]


def _window_sums(squared_window, hop, pad, positions, frames=None):
    """Σ_k w²[p + pad − k·hop] at each position p over every frame k that covers it, and over the frames
    present, 0 <= k < frames (no upper bound if None): the steady-state and the actual window sums."""
    index = positions + pad
    k = index[:, None] // hop - np.arange(-(-len(squared_window) // hop))  # every frame that may cover p
    offset = index[:, None] - k * hop
    values = np.where(offset < len(squared_window), squared_window[np.minimum(offset, len(squared_window) - 1)], 0.0)
    present = (k >= 0) & (k < (frames if frames is not None else np.inf))
    return values.sum(1), np.where(present, values, 0.0).sum(1)


def summed_chunks(separate_chunk, blocks, chunk_frames, n_fft, hop, framing, window="hann"):
    """Separate a stream of mixture blocks in chunks of whole frames of the stream's STFT, summing their outputs.

    The stream's STFT has frame k at samples [k·hop − pad, k·hop − pad + n_fft), with pad and
    the number of frames as `framing` says (`layers.STFT`). Chunk j holds frames
    [j·C, (j+1)·C), C = `chunk_frames` (the last chunk fewer): the (frames − 1)·hop + n_fft
    samples those frames span, zeros outside the stream.

    Args:
        separate_chunk: float32 (samples, channels) -> (stems, samples, channels), the model's
            `valid` form (`models.chunk_model`): the chunk's overlap-added frames divided by
            the steady-state window sum.
        blocks: iterable of float32 (n, channels) arrays, the mixture in order.

    Yields (stems, n, channels) arrays whose concatenation is as long as the mixture: the
    chunks' outputs summed where they overlap, and divided again where the stream's frames
    do not all cover a sample (the first and last samples of a `center`-framed stream).
    """
    pad = leading_pad(n_fft, framing)
    squared = window_array(window, n_fft).astype(np.float64) ** 2
    step, span = chunk_frames * hop, (chunk_frames - 1) * hop + n_fft
    start, total, emitted = -pad, 0, 0  # stream positions of buffer[0] and of the next sample to yield
    buffer, pending = None, None  # the input from `start`; the output summed so far from `start`

    def final(stems, stop, frames=None):
        """The summed output at positions [emitted, stop) (from `stems`, which start at `start`), normalised."""
        first = max(emitted, 0)
        block = stems[:, first - start:stop - start]
        # Only within n_fft of the stream's ends may frames be missing.
        edges = np.arange(first, min(stop, n_fft))
        if frames is not None:
            edges = np.union1d(edges, np.arange(max(first, total - n_fft), stop))
        steady, present = _window_sums(squared, hop, pad, edges, frames)
        block[:, edges - first] *= (steady / present).astype(np.float32)[:, None]
        return block

    def run(frames):
        """The chunk of `frames` frames at `start`, separated and added to what is pending there."""
        length = (frames - 1) * hop + n_fft
        chunk = np.zeros((length, buffer.shape[1]), np.float32)
        chunk[: min(length, len(buffer))] = buffer[:length]
        stems = _own(separate_chunk(chunk))
        if pending is not None:
            stems[:, : pending.shape[1]] += pending
        return stems

    for block in blocks:
        total += len(block)
        buffer = np.concatenate([np.zeros((pad, block.shape[1]), np.float32) if buffer is None else buffer, block])
        while len(buffer) >= span:
            stems = run(chunk_frames)
            if start + step > emitted:
                yield final(stems, start + step)
                emitted = start + step
            buffer, pending, start = buffer[step:], stems[:, step:], start + step
    if buffer is None:
        return
    frames = num_frames(total, hop, n_fft, framing)
    while (remaining := frames - (start + pad) // hop) > 0:
        stems = run(min(chunk_frames, remaining))
        if remaining <= chunk_frames:
            pending = stems
            break
        if start + step > emitted:
            yield final(stems, start + step, frames)
            emitted = start + step
        buffer, pending, start = buffer[step:], stems[:, step:], start + step
    if emitted < total:
        yield final(pending, total, frames)


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


def model_path(spec=None):
    """The model file for `spec`: a path, a pretrained name (`pretrained.resolve`), or None for the shipped model."""
    path = pretrained.resolve(spec) if spec is not None else DEFAULT_MODEL
    if path == DEFAULT_MODEL and not path.is_file():
        raise FileNotFoundError(f"{path}: the default model is not there; pass a model file (--model)")
    return path


def model_sources(path):
    """The source names of the model file at `path`, read without building the model; None if unreadable
    (loading it then says why)."""
    from tfsep.export import tflite_metadata

    if files.not_a_file(path):
        return None
    try:
        if Path(path).suffix.lower() == ".tflite":
            return tuple(tflite_metadata(path)["sources"])
        with zipfile.ZipFile(path) as archive:
            return tuple(json.loads(archive.read("config.json"))["config"]["sources"])
    except Exception:  # anything unreadable: load_model and from_tflite report it in their own words
        return None


class Separator:
    """Separates mixtures with a SeparationModel, or its TFLite export (`from_tflite`), in chunks.

    Args:
        model: a SeparationModel.
        chunk_seconds: chunk length, rounded to the STFT hop (crossfaded chunks) or to whole
            segments, at least one (summed chunks, for networks that cut frames into segments).
        overlap_seconds: crossfade between chunks, rounded to the hop, shorter than the chunk
            (default 1 s, or half a shorter chunk); summed chunks need none and refuse one.
        wiener_iterations, griffin_lim_iterations: if given, the model is rebuilt with this many
            Wiener EM iterations, or Griffin-Lim iterations from the mixture's phase.
    """

    def __init__(self, model, chunk_seconds=7.0, overlap_seconds=None, wiener_iterations=None,
                 griffin_lim_iterations=None):
        model = reconfigure(model, wiener_iterations=wiener_iterations, griffin_lim_iterations=griffin_lim_iterations)
        self.model = model
        description = describe(model)
        form = chunk_model(model) if description["segment_frames"] else model
        run = tf.function(form, input_signature=[tf.TensorSpec((None, None, description["channels"]), tf.float32)],
                          reduce_retracing=True)
        self._run = lambda batch: {source: stem.numpy() for source, stem in run(tf.constant(batch)).items()}
        self._set_chunking(description, chunk_seconds, overlap_seconds)

    def _set_chunking(self, description, chunk_seconds, overlap_seconds):
        """Chunk plan and model facts from a `models.describe` dictionary."""
        self.sources, self.sample_rate = tuple(description["sources"]), description["sample_rate"]
        self.channels, self.description = description["channels"], description
        hop, segment, n_fft = description["hop"], description.get("segment_frames", 0), description["n_fft"]
        shortest = 2 * n_fft / self.sample_rate
        if not (math.isfinite(chunk_seconds) and chunk_seconds >= shortest):
            raise ValueError(f"chunk ({chunk_seconds} s) must be a finite length of at least two FFT frames "
                             f"({shortest:.3f} s)")
        if overlap_seconds is not None and not (math.isfinite(overlap_seconds) and 0 <= overlap_seconds):
            raise ValueError(f"overlap ({overlap_seconds} s) must be finite and >= 0")
        if segment:
            if overlap_seconds is not None:
                raise ValueError(f"this model separates summed chunks of whole {segment}-frame segments, which "
                                 "need no overlap; leave the overlap out")
            segments = max(1, int(round(chunk_seconds * self.sample_rate / (segment * hop))))
            self.chunk_frames, self.chunk, self.overlap = segments * segment, segments * segment * hop, 0
            return
        self.chunk_frames = None
        self.chunk = max(hop, int(round(chunk_seconds * self.sample_rate / hop)) * hop)
        if overlap_seconds is None:  # the default: 1 s (DEFAULT_OVERLAP_SECONDS), or half a shorter chunk
            default = int(round(DEFAULT_OVERLAP_SECONDS * self.sample_rate / hop))
            self.overlap = min(default, self.chunk // hop // 2) * hop
            return
        self.overlap = int(round(overlap_seconds * self.sample_rate / hop)) * hop
        if self.overlap >= self.chunk:
            raise ValueError(f"overlap ({overlap_seconds} s) must be shorter than the chunk ({chunk_seconds} s)")

    @classmethod
    def load(cls, path=None, **options):
        """A Separator for a `.keras` model, a whole-clip `.tflite` file or a pretrained name such as
        `spleeter:2stems` (`pretrained.resolve`); no path: the shipped model."""
        path = model_path(path)
        if path.suffix.lower() == ".tflite":
            return cls.from_tflite(path, **options)
        return cls(load_model(path), **options)

    @classmethod
    def from_tflite(cls, path, chunk_seconds=7.0, overlap_seconds=None, wiener_iterations=None,
                    griffin_lim_iterations=None, threads=2):
        """A Separator that runs a whole-clip TFLite file (`tfsep export --format tflite`) in LiteRT.

        Its Wiener and Griffin-Lim iterations were fixed at export; asking for others raises ValueError. A
        model that cuts frames into segments runs the file's `chunk` signature, its `valid` form.
        """
        from tfsep.export import tflite_metadata

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ImportError("running .tflite files needs LiteRT: pip install 'tfsep[litert]'") from None
        check_model_file(path)
        description = tflite_metadata(path)
        if "block_samples" in description:
            raise ValueError(f"{path}: is the streaming form; separating files needs the whole-clip form")
        for key, flag, asked in (("wiener_iterations", "--wiener", wiener_iterations),
                                 ("griffin_lim_iterations", "--griffin-lim", griffin_lim_iterations)):
            exported = description.get(key, 0)
            if asked is not None and asked != exported:
                raise ValueError(f"{path}: was exported with {exported} {key.split('_iter')[0].replace('_', '-')} "
                                 f"iterations; export it again with {flag} {asked}")
        separator = cls.__new__(cls)
        separator.model = None
        signature = "chunk" if description.get("segment_frames") else "serving_default"
        try:
            runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner(signature)
            with quiet.native_output():  # LiteRT's INFO line at the first run
                runner(waveform=np.zeros((1, 2 * description["n_fft"], description["channels"]), np.float32))
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{path}: not a runnable TFLite model ({audio.error_reason(error)})") from None
        separator._run = lambda batch: runner(waveform=batch)
        separator._set_chunking(description, chunk_seconds, overlap_seconds)
        return separator

    def _separate_chunk(self, mixture):
        """(samples, channels) at the model's rate -> (sources, samples, channels)."""
        channels = mixture.shape[1]
        groups = _channel_groups(channels, self.channels)
        batch = np.stack([mixture[:, group] for group in groups])  # (groups, samples, model channels)
        estimates = self._run(batch)
        if groups == [list(range(channels))]:  # the model's own channel count: one group, in order
            return np.stack([estimates[source][0] for source in self.sources])
        stems = np.zeros((len(self.sources), len(mixture), channels), np.float32)
        for k, source in enumerate(self.sources):
            estimate = estimates[source]
            for g, group in enumerate(groups):
                for i, column in enumerate(group):
                    if column not in group[:i]:
                        stems[k, :, column] = estimate[g, :, i]
        return stems

    def _chunked(self, blocks):
        """Stem blocks (sources, n, channels) for mixture blocks at the model's rate, by the model's chunk plan."""
        if self.chunk_frames:
            d = self.description
            return summed_chunks(self._separate_chunk, blocks, self.chunk_frames, d["n_fft"], d["hop"], d["framing"],
                                 d["window"])
        return crossfade_chunks(self._separate_chunk, blocks, self.chunk, self.overlap)

    def _stream(self, blocks, rate, channels, residual, name):
        """Stem blocks (stems, n, channels) at `rate` for mixture blocks at `rate`; the last one pads or crops
        the total to the mixture's length. With `residual`, the last stem is the mixture minus the others."""
        counted = _Counted(blocks, name)
        at_model_rate = _resampled(counted, rate, self.sample_rate, channels)
        recorded = []  # with a residual: the mixture at the model's rate that no stem block has matched yet

        def recording(blocks):
            for block in blocks:
                recorded.append(block)
                yield block

        def with_residual(stems):
            for block in stems:
                mixture = np.concatenate(recorded)
                recorded[:] = [mixture[block.shape[1]:]]
                yield np.concatenate([block, (mixture[: block.shape[1]] - block.sum(0))[None]])

        if residual:
            at_model_rate = recording(at_model_rate)
        stems = self._chunked(at_model_rate)
        if residual:
            stems = with_residual(stems)
        count = len(self.sources) + residual
        if rate != self.sample_rate:  # resampled as one (n, stems · channels) stream, then split again
            flat = (block.transpose(1, 0, 2).reshape(block.shape[1], -1) for block in stems)
            stems = (block.reshape(len(block), count, channels).transpose(1, 0, 2)
                     for block in _resampled(flat, self.sample_rate, rate, count * channels))
        written = 0
        for block in stems:
            block = block[:, : max(0, counted.samples - written)]
            written += block.shape[1]
            yield block
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
        """{source: output path} for input `path` (see the module's `output_paths`)."""
        return output_paths(self.sources, path, outdir, template, residual)

    def separate_file(self, path, outdir, template=DEFAULT_TEMPLATE, bits=None, residual=False,
                      overwrite=False, progress=False):
        """Separate the audio file `path` into `outdir`; returns {source: written path}.

        The stems are written at the file's rate with `bits` ("16", "24" or "float"; by default
        float for wav and 24 for flac, which holds no float samples), in
        the format of the template's suffix (.wav or .flac), into temporary files that are
        committed as one set (`files.commit_set`): on any error, or if another run commits
        first, every existing output stays as it was. Existing outputs are refused unless
        `overwrite`, before any work and again at the commit; so are outputs that collide
        (`check_outputs`).
        """
        path = Path(path)
        targets = self.output_paths(path, outdir, template, residual)
        check_outputs({path: targets})
        existing = [str(target) for target in targets.values() if target.exists()]
        if existing and not overwrite:
            raise SeparationError(f"{existing[0]}: already exists (use --overwrite to replace it)")
        found, blocks = audio.blocks(path, BLOCK_SAMPLES)
        suffix = Path(template).suffix.lower()
        bits = ("24" if suffix == ".flac" else "float") if bits is None else str(bits)
        subtype = audio.SUBTYPES.get(bits)
        if subtype is None:
            raise ValueError(f"bits must be one of {list(audio.SUBTYPES)}, got {bits!r}")
        if suffix == ".flac" and bits == "float":
            raise ValueError("FLAC holds 16- or 24-bit samples, not float: use --bits 16 or --bits 24, or a .wav "
                             "template")
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
            staged = {writer.close(): writer.path for writer in writers}
            try:
                files.commit_set(staged, overwrite)
            except FileExistsError as error:
                raise SeparationError(f"{error} (another run wrote it meanwhile)") from None
        except BaseException:
            for writer in writers:
                writer.discard()
            for folder in sorted(new_folders, key=lambda f: len(f.parts), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):  # made for this file, and left empty
                    folder.rmdir()
            raise
        return targets
