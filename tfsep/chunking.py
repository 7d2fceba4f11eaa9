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

import collections
import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfsep import names
from tfsep.framing import leading_pad, num_frames, whole_hops, window_array


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


def chunked(plan, description, separate_chunks, blocks, workers=1, batch=1):
    """Stem blocks (stems, n, channels) for a stream of mixture blocks (n, channels), by `plan`.

    `separate_chunks` maps a list of chunks of one length, float32 (samples, channels), to
    the list of their stems (stems, samples, channels): the model itself for crossfaded
    chunks, its `valid` form for summed ones. It is given up to `batch` chunks at a time (one
    model call), and with `workers` > 1 runs on that many lists at once, from as many threads
    (a backend with one interpreter per thread), ahead of the chunk being joined; the result
    is the same, and at most (`workers` + 1) · `batch` chunks are alive.
    """
    if plan.chunk_frames:
        return summed_chunks(separate_chunks, blocks, plan.chunk_frames, description["n_fft"], description["hop"],
                             description["framing"], description["window"], workers, batch)
    return crossfade_chunks(separate_chunks, blocks, plan.chunk, plan.overlap, workers, batch)


def _grouped(items, batch):
    """Lists of up to `batch` consecutive (chunk, tag) items whose chunks have one shape."""
    group = []
    for item in items:
        if group and (len(group) == batch or np.shape(item[0]) != np.shape(group[0][0])):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _mapped(function, items, workers, batch=1):
    """(stems, tag) for each (chunk, tag) of `items`, in order, from `function` called on lists of up to `batch`
    chunks (`_grouped`); with `workers` > 1 the calls run in a thread pool, up to `workers` ahead of the one being
    consumed."""
    groups = _grouped(items, batch)
    if workers <= 1:
        for group in groups:
            yield from zip(function([chunk for chunk, _ in group]), (tag for _, tag in group))
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfsep-chunk") as pool:
        running = collections.deque()
        try:
            for group in groups:
                running.append((pool.submit(function, [chunk for chunk, _ in group]), [tag for _, tag in group]))
                if len(running) > workers:
                    future, tags = running.popleft()
                    yield from zip(future.result(), tags)
            while running:
                future, tags = running.popleft()
                yield from zip(future.result(), tags)
        finally:
            for future, _ in running:  # the consumer stopped early, or a chunk failed: start no more
                future.cancel()


def _own(stems):
    """`stems` as a float32 array that may be changed in place: copied unless it is already one that owns its
    memory (a view could be the caller's input)."""
    stems = np.asarray(stems, np.float32)
    return stems if stems.flags.owndata and stems.flags.writeable else stems.copy()


def _crossfade_inputs(blocks, chunk, step):
    """(chunk, last) for the chunks of a stream of blocks: `chunk` samples starting every `step`, the last shorter."""
    buffer, finished = None, False
    iterator = iter(blocks)
    while not finished:
        block = next(iterator, None)
        if block is None:
            finished = True
        else:
            buffer = block if buffer is None else np.concatenate([buffer, block])
        while buffer is not None and (len(buffer) > chunk or (finished and len(buffer))):
            last = finished and len(buffer) <= chunk
            yield buffer[:chunk], last
            buffer = None if last else buffer[step:]


def crossfade_chunks(separate_chunks, blocks, chunk, overlap, workers=1, batch=1):
    """Separate a stream of mixture blocks chunk by chunk, yielding stem blocks as they become final.

    Args:
        separate_chunks: [float32 (samples, channels)] -> [(stems, samples, channels)] (`chunked`).
        blocks: iterable of float32 (n, channels) arrays, the mixture in order.
        chunk, overlap: in samples, 0 <= overlap < chunk; chunk k starts at k·(chunk − overlap).
        workers, batch: calls at once, chunks per call (`chunked`).

    Yields (stems, n, channels) arrays whose concatenation is as long as the mixture. In
    an overlap, the earlier chunk fades out and the later one fades in, linearly.
    """
    step = chunk - overlap
    fade_in = ((np.arange(overlap) + 0.5) / overlap).astype(np.float32)[:, None] if overlap else None
    pending = None
    for stems, last in _mapped(separate_chunks, _crossfade_inputs(blocks, chunk, step), workers, batch):
        stems = _own(stems)
        if pending is not None:
            stems[:, :overlap] = stems[:, :overlap] * fade_in + pending
        if last:
            yield stems
        else:
            pending = stems[:, step:] * (1.0 - fade_in) if overlap else None
            yield stems[:, :step]


def _window_sums(squared_window, hop, pad, positions, frames=None):
    """Σ_k w²[p + pad − k·hop] at each position p over every frame k that covers it, and over the frames
    present, 0 <= k < frames (no upper bound if None): the steady-state and the actual window sums."""
    index = positions + pad
    k = index[:, None] // hop - np.arange(-(-len(squared_window) // hop))  # every frame that may cover p
    offset = index[:, None] - k * hop
    values = np.where(offset < len(squared_window), squared_window[np.minimum(offset, len(squared_window) - 1)], 0.0)
    present = (k >= 0) & (k < (frames if frames is not None else np.inf))
    return values.sum(1), np.where(present, values, 0.0).sum(1)


def _summed_inputs(blocks, chunk_frames, n_fft, hop, pad, framing, ends):
    """(chunk, tail) for the chunks of whole frames that `summed_chunks` separates: each chunk the samples its
    frames span, zeros outside the stream; `tail` is None while the stream lasts, then whether it is the last.
    Once the stream has ended, `ends` holds its length (`total`) and frame count (`frames`)."""
    step, span = chunk_frames * hop, (chunk_frames - 1) * hop + n_fft
    buffer, total, done = None, 0, 0  # the input from frame `done` on

    def cut(frames):
        length = (frames - 1) * hop + n_fft
        chunk = np.zeros((length, buffer.shape[1]), np.float32)
        chunk[: min(length, len(buffer))] = buffer[:length]
        return chunk

    for block in blocks:
        total += len(block)
        buffer = np.concatenate([np.zeros((pad, block.shape[1]), np.float32) if buffer is None else buffer, block])
        while len(buffer) >= span:
            yield cut(chunk_frames), None
            buffer, done = buffer[step:], done + chunk_frames
    if buffer is None:
        return
    ends.update(total=total, frames=num_frames(total, hop, n_fft, framing))
    while (remaining := ends["frames"] - done) > 0:
        yield cut(min(chunk_frames, remaining)), remaining <= chunk_frames
        buffer, done = buffer[step:], done + chunk_frames


def summed_chunks(separate_chunks, blocks, chunk_frames, n_fft, hop, framing, window="hann", workers=1, batch=1):
    """Separate a stream of mixture blocks in chunks of whole frames of the stream's STFT, summing their outputs.

    The stream's STFT has frame k at samples [k·hop − pad, k·hop − pad + n_fft), with pad and
    the number of frames as `framing` says (`layers.STFT`). Chunk j holds frames
    [j·C, (j+1)·C), C = `chunk_frames` (the last chunk fewer): the (frames − 1)·hop + n_fft
    samples those frames span, zeros outside the stream.

    Args:
        separate_chunks: [float32 (samples, channels)] -> [(stems, samples, channels)], the
            model's `valid` form (`models.chunk_model`): each chunk's overlap-added frames divided
            by the steady-state window sum.
        blocks: iterable of float32 (n, channels) arrays, the mixture in order.
        workers, batch: calls at once, chunks per call (`chunked`).

    Yields (stems, n, channels) arrays whose concatenation is as long as the mixture: the
    chunks' outputs summed where they overlap, and divided again where the stream's frames
    do not all cover a sample (the first and last samples of a `center`-framed stream).
    """
    pad = leading_pad(n_fft, framing)
    squared = window_array(window, n_fft).astype(np.float64) ** 2
    step = chunk_frames * hop
    start, emitted, pending, ends = -pad, 0, None, {}  # stream positions of the chunk and of the next sample to yield

    def final(stems, stop, frames=None):
        """The summed output at positions [emitted, stop) (from `stems`, which start at `start`), normalised."""
        first = max(emitted, 0)
        block = stems[:, first - start:stop - start]
        # Only within n_fft of the stream's ends may frames be missing.
        edges = np.arange(first, min(stop, n_fft))
        if frames is not None:
            edges = np.union1d(edges, np.arange(max(first, ends["total"] - n_fft), stop))
        steady, present = _window_sums(squared, hop, pad, edges, frames)
        block[:, edges - first] *= (steady / present).astype(np.float32)[:, None]
        return block

    inputs = _summed_inputs(blocks, chunk_frames, n_fft, hop, pad, framing, ends)
    for stems, tail in _mapped(separate_chunks, inputs, workers, batch):
        stems = _own(stems)
        if pending is not None:
            stems[:, : pending.shape[1]] += pending
        if tail:  # the last chunk: everything it holds is final
            pending = stems
            break
        if start + step > emitted:
            yield final(stems, start + step, None if tail is None else ends["frames"])
            emitted = start + step
        pending, start = stems[:, step:], start + step
    if ends and emitted < ends["total"]:
        yield final(pending, ends["total"], ends["frames"])
