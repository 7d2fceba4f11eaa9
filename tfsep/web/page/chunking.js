// Crossfaded chunks, as tfsep's chunking.crossfade_chunks cuts and joins them.
//
// Chunk k starts at k·step, step = chunk − overlap, and holds `chunk` samples, the last one
// fewer (more than `overlap`, since the chunk before it did not reach the end). Each chunk's
// stems are added into the output: in the overlap with the next chunk, the earlier fades out
// by 1 − f and the later fades in by f, f[i] = (i + 0.5) / overlap, linear.

/** The start sample of each chunk of a `total`-sample mixture: [0, step, 2·step, …], the last reaching the end. */
export function chunkStarts(total, chunk, overlap) {
  const step = chunk - overlap;
  const starts = [0];
  while (starts[starts.length - 1] + chunk < total) starts.push(starts[starts.length - 1] + step);
  return starts;
}

/** The fade-in weights f (Float32Array of `overlap`), as float32 like tfsep's. */
export function fadeIn(overlap) {
  return Float32Array.from({ length: overlap }, (_, i) => (i + 0.5) / overlap);
}

/**
 * Add one chunk's stem channel into the output channel `out` (Float32Array of the whole mixture).
 * stem: Float32Array, this chunk's samples of one source and channel; start: its first sample;
 * first, last: whether it is the first or last chunk; fade: `fadeIn(overlap)`.
 */
export function addChunk(out, stem, start, first, last, fade) {
  const overlap = fade.length;
  for (let i = 0; i < stem.length; i++) {
    let weight = 1;
    if (!first && i < overlap) weight = fade[i];
    else if (!last && i >= stem.length - overlap) weight = Math.fround(1 - fade[i - (stem.length - overlap)]);
    out[start + i] += Math.fround(stem[i] * weight);
  }
}
