// The separation worker (a classic worker, so that LiteRT.js can importScripts its WebAssembly loader).
//
// Messages in:  {type: "load", config, threads, accelerator}, once: load LiteRT.js and compile model.tflite;
//               {type: "separate", channels: [Float32Array per model channel]} at the model's rate.
// Messages out: {type: "ready", threads, accelerator}; {type: "progress", done, total} after each chunk;
//               {type: "stems", sources: {name: [Float32Array per channel]}, seconds}; {type: "error", message}.
// The mixture is cut into the model's crossfaded chunks (chunking.js); each is padded with zeros to the
// model's fixed length, run as one (1, fixed, channels) tensor, and its stems cropped again.

const here = new URL(".", self.location.href);
const wasmFolder = new URL("litert/core/wasm/", here).href;
let litert, chunking, model, config, accelerator;
let invokeErrors = [];  // what LiteRT printed of a failed run: model.run resolves all the same, with zeros

async function load(message) {
  config = message.config;
  chunking = await import("./chunking.js");
  litert = await import("./litert/core/dist/index.js");
  // WebGPU runs the graph's parts it cannot take in WebAssembly, awaiting the GPU in between: that takes the
  // JSPI build, which has no threads.
  const jspi = message.accelerator === "webgpu", threaded = !jspi && message.threads > 1;
  // In a worker, LiteRT's loader would take this script's address for its own: tell it where it lives,
  // for its .wasm and for the threads it starts.
  const build = threaded ? "litert_wasm_threaded_internal" : jspi ? "litert_wasm_jspi_internal" : "litert_wasm_internal";
  self.Module = {
    locateFile: (file) => wasmFolder + file,
    mainScriptUrlOrBlob: `${wasmFolder}${build}.js`,
    printErr: (line) => {
      if (/failed to invoke/i.test(line)) invokeErrors.push(line);
      console.warn(line);
    },
  };
  await litert.loadLiteRt(wasmFolder, jspi ? { jspi } : { threads: threaded });
  accelerator = message.accelerator;
  const options = { accelerator };
  if (message.accelerator === "wasm") options.cpuOptions = { numThreads: message.threads };
  // Float32, as the wasm path computes: a GPU delegate may otherwise take float16, too coarse for FFTs of 4096.
  if (message.accelerator === "webgpu") options.gpuOptions = { precision: "fp32" };
  model = await litert.loadAndCompile(new URL("model.tflite", here).href, options);
  const shape = Array.from(model.getInputDetails()[0].shape);
  if (shape.join() !== [1, config.fixed_samples, config.channels].join()) {
    throw new Error(`model.tflite takes [${shape}], not [1, ${config.fixed_samples}, ${config.channels}]`);
  }
  postMessage({ type: "ready", threads: message.threads, accelerator: message.accelerator });
}

async function runChunk(channels, start, length) {
  const { fixed_samples: fixed, channels: count } = config;
  const input = new Float32Array(fixed * count);  // zeros after `length`: the padding
  for (let c = 0; c < count; c++) for (let i = 0; i < length; i++) input[i * count + c] = channels[c][start + i];
  const tensor = new litert.Tensor(input, [1, fixed, count]);
  let outputs;
  invokeErrors = [];
  try {
    outputs = await model.run({ waveform: tensor });
  } finally {
    tensor.delete();
  }
  if (invokeErrors.length) {
    throw new Error(`LiteRT.js could not run model.tflite on ${accelerator}: ${invokeErrors[0].trim()}`);
  }
  const stems = {};
  for (const [name, output] of Object.entries(outputs)) {
    const values = (output.accelerator === "wasm" ? output : await output.copyTo("wasm")).toTypedArray();
    stems[name] = Array.from({ length: count }, (_, c) => {
      const channel = new Float32Array(length);
      for (let i = 0; i < length; i++) channel[i] = values[i * count + c];
      return channel;
    });
    output.delete();
  }
  return stems;
}

async function separate(channels) {
  const began = performance.now();
  const total = channels[0].length, { chunk_samples: chunk, overlap_samples: overlap } = config;
  const starts = chunking.chunkStarts(total, chunk, overlap), fade = chunking.fadeIn(overlap);
  const sources = Object.fromEntries(config.sources.map((name) => [name, channels.map(() => new Float32Array(total))]));
  for (let k = 0; k < starts.length; k++) {
    const length = Math.min(chunk, total - starts[k]);
    const stems = await runChunk(channels, starts[k], length);
    for (const name of config.sources) {
      if (!stems[name]) throw new Error(`model.tflite has no output ${name}`);
      stems[name].forEach((stem, c) => chunking.addChunk(sources[name][c], stem, starts[k], k === 0,
                                                          k === starts.length - 1, fade));
    }
    postMessage({ type: "progress", done: k + 1, total: starts.length });
  }
  const transfer = Object.values(sources).flat().map((channel) => channel.buffer);
  postMessage({ type: "stems", sources, seconds: (performance.now() - began) / 1000 }, transfer);
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === "load") await load(data);
    else if (data.type === "separate") await separate(data.channels);
  } catch (error) {
    postMessage({ type: "error", message: String(error?.message ?? error) });
  }
};
