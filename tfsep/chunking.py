"""Cutting a stream of mixture blocks into the chunks a model separates, and joining their stems again.

Memory depends on the chunk length, never on the stream's. There are two ways to chunk
(`chunk_plan` picks the one the model needs):

- Crossfaded chunks (most networks): the mixture is cut into chunks of `chunk_seconds` that
  overlap by `overlap_seconds`; each chunk goes through the model on its own, and
  neighbouring chunks are crossfaded linearly over their overlap. Chunks start on
  multiples of the STFT hop, so their frames are the whole stream's frames: away from chunk
  borders (farther than the network's receptive field), chunked and whole-stream results agree.
- Summed chunks (networks that cut the frames into independent segments, such as
  Spleeter's U-Nets): each chunk is a whole number of segments of the whole stream's frame
  grid, `chunk_seconds` rounded to segments, with the n_fft − hop samples its frames need
  beyond it. The model's `valid` form (`models.chunk_model`) separates exactly those
  frames, and the chunks' outputs are summed where their frames overlap, which is the
  whole stream's inverse STFT: the stems equal the whole-stream result (to float rounding)
  at every sample, with no overlap recomputed.
"""

import dataclasses
import math

import numpy as np

from tfsep import names
from tfsep.layers import leading_pad, num_frames, whole_hops, window_array


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How a model's input stream is cut, in samples at the model's rate.

    chunk: samples per chunk; overlap: crossfade between neighbouring chunks (0 for summed
    chunks); chunk_frames: frames per summed chunk, or None for crossfaded chunks.
    """

    chunk: int
    overlap: int
    chunk_frames: int | None


def chunk_plan(description, chunk_seconds, overlap_seconds=None):
    """The ChunkPlan for a model described by `models.describe`; ValueError for impossible lengths.

    Crossfaded chunks: `chunk_seconds` rounded to the hop, `overlap_seconds` too (default
    `names.OVERLAP_SECONDS`, or half a shorter chunk), shorter than the chunk. Summed chunks
    (a model with `segment_frames`): `chunk_seconds` rounded to whole segments, at least
    one; they need no overlap and refuse one.
    """
    rate, hop, n_fft = description["sample_rate"], description["hop"], description["n_fft"]
    segment = description.get("segment_frames", 0)
    shortest = 2 * n_fft / rate
    if not (math.isfinite(chunk_seconds) and chunk_seconds >= shortest):
        raise ValueError(f"chunk ({chunk_seconds} s) must be a finite length of at least two FFT frames "
                         f"({shortest:.3f} s)")
    if overlap_seconds is not None and not (math.isfinite(overlap_seconds) and 0 <= overlap_seconds):
        raise ValueError(f"overlap ({overlap_seconds} s) must be finite and >= 0")
    if segment:
        if overlap_seconds is not None:
            raise ValueError(f"this model separates summed chunks of whole {segment}-frame segments, which "
                             "need no overlap; leave the overlap out")
        chunk = whole_hops(chunk_seconds, rate, segment * hop)
        return ChunkPlan(chunk, 0, chunk // hop)
    chunk = whole_hops(chunk_seconds, rate, hop)
    if overlap_seconds is None:
        overlap = min(whole_hops(names.OVERLAP_SECONDS, rate, hop, minimum=0), chunk // hop // 2 * hop)
        return ChunkPlan(chunk, overlap, None)
    overlap = whole_hops(overlap_seconds, rate, hop, minimum=0)
    if overlap >= chunk:
        raise ValueError(f"overlap ({overlap_seconds} s) must be shorter than the chunk ({chunk_seconds} s)")
    return ChunkPlan(chunk, overlap, None)


def chunked(plan, description, separate_chunk, blocks):
    """Stem blocks (stems, n, channels) for a stream of mixture blocks (n, channels), by `plan`.

    `separate_chunk` maps one chunk, float32 (samples, channels), to its stems (stems,
    samples, channels): the model itself for crossfaded chunks, its `valid` form for summed ones.
    """
    if plan.chunk_frames:
        return summed_chunks(separate_chunk, blocks, plan.chunk_frames, description["n_fft"], description["hop"],
                             description["framing"], description["window"])
    return crossfade_chunks(separate_chunk, blocks, plan.chunk, plan.overlap)


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
