// The page: a file chosen or dropped, separated in the worker, each stem played and downloadable as WAV.
// `window.tfsepSeparate(file)` is what the interface calls, and what tests and scripts call.
//
// Query options: `?threads=N` (default: the CPU's cores where the page is cross-origin isolated, else 1;
// one thread takes LiteRT's plain WebAssembly build), `?accelerator=webgpu` (default wasm).

import { MAX_SECONDS, separateFile, startWorker } from "./separate.js";
import { wavBlob } from "./wav.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const isolated = self.crossOriginIsolated;
const threads = isolated ? Number(query.get("threads") ?? Math.min(navigator.hardwareConcurrency || 1, 4)) : 1;
const accelerator = query.get("accelerator") ?? "wasm";
const config = await (await fetch("model.json")).json();
let queue = Promise.resolve();

$("model").textContent = `${config.name}: ${config.sources.join(", ")}, ${config.sample_rate} Hz`;
$("provenance").textContent = config.provenance;
$("limits").textContent = `Songs up to ${MAX_SECONDS / 60} minutes, in any format this browser decodes. ` +
  `Separated here, in ${(config.chunk_samples / config.sample_rate).toFixed(1)} s chunks, on ${threads} ` +
  `thread${threads > 1 ? "s" : ""}${isolated ? "" : " (this page is not cross-origin isolated, so one thread)"}; ` +
  "nothing is uploaded.";
const loading = startWorker(config, threads, accelerator);
loading.then(() => { $("status").textContent = "Ready: choose or drop a song."; },
             (error) => { $("status").textContent = `LiteRT.js did not load: ${error.message}`; });

/** Separate a File or Blob: {sampleRate, sources: {name: [Float32Array per channel]}, seconds}; one at a time. */
window.tfsepSeparate = (file, onProgress) => {
  const run = queue.then(() => separateFile(file, config, onProgress));
  queue = run.catch(() => {});
  return run;
};

function clock(seconds) {
  return `${Math.floor(seconds / 60)}:${String(Math.round(seconds % 60)).padStart(2, "0")}`;
}

async function chosen(file) {
  if (!file) return;
  $("stems").replaceChildren();
  $("progress").value = 0;
  $("status").textContent = `Separating ${file.name}…`;
  $("status").className = "";
  try {
    const result = await window.tfsepSeparate(file, (fraction, left) => {
      $("progress").value = fraction;
      $("status").textContent = `Separating ${file.name}: ${Math.round(fraction * 100)} %, ${clock(left)} left`;
    });
    const duration = result.sources[config.sources[0]][0].length / result.sampleRate;
    $("status").textContent = `${file.name}: ${clock(duration)} separated in ${result.seconds.total.toFixed(1)} s ` +
      `(${(duration / result.seconds.total).toFixed(1)}× real time).`;
    $("progress").value = 1;
    for (const [name, channels] of Object.entries(result.sources)) {
      const url = URL.createObjectURL(wavBlob(channels, result.sampleRate));
      const row = document.createElement("li");
      const label = Object.assign(document.createElement("span"), { textContent: name });
      const audio = Object.assign(document.createElement("audio"), { controls: true, src: url });
      const link = Object.assign(document.createElement("a"), {
        href: url, download: `${file.name.replace(/\.[^.]*$/, "")}_${name}.wav`, textContent: "download WAV",
      });
      row.append(label, audio, link);
      $("stems").append(row);
    }
  } catch (error) {
    $("status").textContent = error.message;
    $("status").className = "error";
  }
}

$("file").addEventListener("change", (event) => chosen(event.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  chosen(event.dataTransfer.files[0]);
});
