// tfsepSeparate(file): a song in, stems out, at the file's rate, as `tfsep separate --model DIR` gives them.
//
// The file is decoded by the browser at its own rate (read from a WAV or FLAC header; other formats are
// decoded at the model's rate, the one rate known), resampled to the model's rate with an
// OfflineAudioContext, and separated in the worker (worker.js) in the model's chunks. Channels go to the
// model in groups of its channel count, as tfsep pairs them: a mono file as two identical channels, whose
// stems are mono; a short last group repeats its last channel. The stems are resampled back.

export const MAX_SECONDS = 20 * 60;  // longer songs are refused: their stems would not fit a tab's memory
export const MAX_BYTES = 1 << 30;  // files over 1 GiB are refused before they are read

let worker, ready;

/** The worker, loaded once with `config` (model.json) on `threads` threads and `accelerator` ("wasm", "webgpu"). */
export function startWorker(config, threads, accelerator = "wasm") {
  if (ready) return ready;
  worker = new Worker(new URL("./worker.js", import.meta.url));
  ready = call({ type: "load", config, threads, accelerator }, "ready");
  return ready;
}

/** Post `message` (transferring `transfer`) and resolve with the worker's `expected` reply; `onProgress(done, total)`. */
function call(message, expected, transfer = [], onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => {
      if (data.type === "progress") onProgress(data.done, data.total);
      else if (data.type === "error") reject(new Error(data.message));
      else if (data.type === expected) resolve(data);
    };
    worker.onerror = (event) => reject(new Error(event.message || "the separation worker failed to start"));
    worker.postMessage(message, transfer);
  });
}

/** The sample rate in a WAV (RIFF, RF64) or FLAC file's header, or null. */
export function headerRate(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.length >= 12 && ["RIFF", "RF64"].includes(tag(0)) && tag(8) === "WAVE") {
    for (let offset = 12; offset + 8 <= bytes.length;) {
      const size = view.getUint32(offset + 4, true);
      if (tag(offset) === "fmt " && offset + 16 <= bytes.length) return view.getUint32(offset + 12, true);
      offset += 8 + size + (size % 2);
    }
  }
  if (bytes.length >= 42 && tag(0) === "fLaC") return (view.getUint32(18) >>> 12) || null;  // STREAMINFO
  return null;
}

/** An AudioBuffer's channels resampled from its rate to `rate` (OfflineAudioContext); [Float32Array]. */
async function resampled(buffer, rate) {
  if (buffer.sampleRate === rate) return Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
  const length = Math.max(1, Math.round(buffer.length * rate / buffer.sampleRate));
  const context = new OfflineAudioContext(buffer.numberOfChannels, length, rate);
  const source = new AudioBufferSourceNode(context, { buffer });
  source.connect(context.destination);
  source.start();
  const rendered = await context.startRendering();
  return Array.from({ length: rendered.numberOfChannels }, (_, c) => rendered.getChannelData(c));
}

/** Float32Array channels at `from` Hz as an AudioBuffer resampled to `to` Hz, `length` samples. */
async function resampledChannels(channels, from, to, length) {
  if (from === to) return channels;
  const buffer = new AudioBuffer({ numberOfChannels: channels.length, length: channels[0].length, sampleRate: from });
  channels.forEach((channel, c) => buffer.copyToChannel(channel, c));
  return (await resampled(buffer, to)).map((channel) => channel.slice(0, length));
}

/** The file decoded: an AudioBuffer at the file's own rate where its header says it, else at `fallbackRate`. */
export async function decode(file, fallbackRate) {
  if (!(file instanceof Blob)) throw new Error("tfsepSeparate takes a File or a Blob");
  if (file.size === 0) throw new Error(`${file.name ?? "the file"} is empty (0 bytes)`);
  if (file.size > MAX_BYTES) throw new Error(`${file.name ?? "the file"} is ${(file.size / 2 ** 30).toFixed(1)} GiB; the page takes files up to 1 GiB`);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const rate = headerRate(bytes) ?? fallbackRate;
  let buffer;
  try {
    buffer = await new OfflineAudioContext(1, 1, rate).decodeAudioData(bytes.buffer);
  } catch {
    throw new Error(`${file.name ?? "the file"} is not audio this browser can decode`);
  }
  if (buffer.length === 0) throw new Error(`${file.name ?? "the file"} holds no samples`);
  if (buffer.duration > MAX_SECONDS) {
    throw new Error(`${file.name ?? "the file"} lasts ${(buffer.duration / 60).toFixed(1)} minutes; the page takes songs up to ${MAX_SECONDS / 60} minutes`);
  }
  return buffer;
}

/**
 * Separate `file` with the model of `config` (model.json) in the worker started by `startWorker`.
 * Resolves to {sampleRate, sources: {name: [Float32Array per channel]}, seconds: {decode, separate, total}}.
 * onProgress(fraction, secondsLeft) is called after each chunk.
 */
export async function separateFile(file, config, onProgress = () => {}) {
  const began = performance.now();
  await ready;
  const buffer = await decode(file, config.sample_rate);
  const rate = buffer.sampleRate, length = buffer.length, count = buffer.numberOfChannels;
  const mixture = await resampled(buffer, config.sample_rate);
  const decoded = performance.now();
  const groups = [];
  for (let first = 0; first < count; first += config.channels) {
    groups.push(Array.from({ length: config.channels }, (_, i) => Math.min(first + i, count - 1)));
  }
  const sources = Object.fromEntries(config.sources.map((name) => [name, new Array(count)]));
  let separating = 0;
  for (const [g, group] of groups.entries()) {
    const channels = group.map((c) => mixture[c].slice());
    const started = performance.now();
    const reply = await call({ type: "separate", channels }, "stems", channels.map((c) => c.buffer), (done, total) => {
      const fraction = (g + done / total) / groups.length;
      const elapsed = (performance.now() - decoded) / 1000;
      onProgress(fraction, elapsed / fraction * (1 - fraction));
    });
    separating += (performance.now() - started) / 1000;
    for (const name of config.sources) {
      const stems = await resampledChannels(reply.sources[name], config.sample_rate, rate, length);
      group.forEach((c, i) => { if (!group.slice(0, i).includes(c)) sources[name][c] = stems[i]; });
    }
  }
  const total = (performance.now() - began) / 1000;
  return { sampleRate: rate, sources, seconds: { decode: (decoded - began) / 1000, separate: separating, total } };
}
