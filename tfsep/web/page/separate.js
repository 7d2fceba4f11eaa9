// tfsepSeparate(file): a song in, stems out, at the file's rate, as `tfsep separate --model DIR` gives them.
//
// The file is decoded by the browser at its own rate (read from a WAV, FLAC, MP3 or Ogg header; other formats,
// such as AAC, are decoded at the model's rate, the one rate known), resampled to the model's rate with an
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

// MPEG audio's sample rates by version (bits 19-20 of a frame header: 0 MPEG 2.5, 2 MPEG 2, 3 MPEG 1) and index.
const MPEG_RATES = { 0: [11025, 12000, 8000], 2: [22050, 24000, 16000], 3: [44100, 48000, 32000] };

/** The sample rate in a WAV (RIFF, RF64), FLAC, MP3 or Ogg (Vorbis, Opus) file's header, or null: decodeAudioData
 * resamples to its context's rate and does not say the file's own. */
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
  if (bytes.length >= 28 && tag(0) === "OggS") {  // the first page holds the codec's identification packet
    const packet = 27 + bytes[26];
    const magic = String.fromCharCode(...bytes.subarray(packet, packet + 8));
    if (magic.startsWith("\x01vorbis") && packet + 16 <= bytes.length) return view.getUint32(packet + 12, true);
    if (magic === "OpusHead") return 48000;  // Opus always decodes at 48 kHz
    return null;
  }
  return mpegRate(bytes);
}

/** The sample rate of the first MPEG audio frame (after an ID3v2 tag) that a second frame follows, or null. */
function mpegRate(bytes) {
  let offset = 0;
  if (bytes.length >= 10 && String.fromCharCode(...bytes.subarray(0, 3)) === "ID3") {  // syncsafe size, footer
    offset = 10 + ((bytes[6] << 21) | (bytes[7] << 14) | (bytes[8] << 7) | bytes[9]) + (bytes[5] & 0x10 ? 10 : 0);
  }
  for (const end = Math.min(bytes.length - 4, offset + 65536); offset < end; offset++) {
    const frame = mpegFrame(bytes, offset);
    if (frame && mpegFrame(bytes, offset + frame.length)) return frame.rate;
  }
  return null;
}

/** {rate, length} of a Layer III frame header at `offset`, or null where none is. */
function mpegFrame(bytes, offset) {
  if (offset + 4 > bytes.length || bytes[offset] !== 0xff || (bytes[offset + 1] & 0xe0) !== 0xe0) return null;
  const version = (bytes[offset + 1] >> 3) & 3, layer = (bytes[offset + 1] >> 1) & 3;
  const bitrateIndex = bytes[offset + 2] >> 4, rateIndex = (bytes[offset + 2] >> 2) & 3;
  if (!(version in MPEG_RATES) || layer !== 1 || bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) {
    return null;
  }
  const kbps = (version === 3 ? [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    : [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160])[bitrateIndex - 1];
  const rate = MPEG_RATES[version][rateIndex], padding = (bytes[offset + 2] >> 1) & 1;
  return { rate, length: Math.floor((version === 3 ? 144000 : 72000) * kbps / rate) + padding };
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
