"""The page's speed in headless Chromium (LiteRT.js on 1 and 2 WebAssembly threads) beside Python LiteRT.

    python tools/bench_web.py [--folder WEB] [--seconds 60] [--rounds 3]

WEB is a folder from `tfsep export MODEL --format web` (default: the shipped model, exported
into a temporary folder; the LiteRT.js tarballs come from $TFSEP_HOME/downloads or npm). The
song is `seconds` of stereo noise at the model's rate, as a float WAV. Each row is the median
of `rounds` runs after one warm-up:

- browser, separation: `tfsepSeparate`'s time in the worker, chunks in and stems out;
- browser, end to end: the whole `tfsepSeparate(file)` call, decoding included;
- Python LiteRT: `Separator` on the folder's model.tflite (`threads` single-thread interpreters).

Then it asks whether LiteRT.js's `webgpu` accelerator compiles and runs the model, with
Chromium's software adapter (`--enable-unsafe-webgpu --use-angle=swiftshader`), and whether its
stems match the wasm ones. The first line names the machine (`bench.machine`).
"""

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench
import numpy as np
import soundfile
from bench.separation import noise

from tfsep.separate import Separator
from tfsep.web import serve

CHROMIUM = "/usr/bin/chromium"
TIMES = """async () => {
  const result = await window.tfsepSeparate(document.getElementById('file').files[0]);
  const first = Object.values(result.sources)[0][0];
  return {...result.seconds, probe: Array.from(first.subarray(100000, 100016))};
}"""


def export_band(folder):
    """The shipped model exported for the web into `folder`/band."""
    from tfsep import formats
    from tfsep.models import load_model

    return formats.write("web", load_model("saved_models/band/model.keras"), Path(folder) / "band", name="band")


def page_runs(browser, url, song, rounds, page=None):
    """[{decode, separate, total, probe}] of `rounds` + 1 runs of tfsepSeparate on the page at `url` (the first
    a warm-up), in `page` or a new tab; or a string saying why the page did not load or separate."""
    page = page or browser.new_page()
    try:
        page.goto(url)
        page.wait_for_function("['Ready', 'LiteRT'].some(s => document.getElementById('status').textContent"
                               ".startsWith(s))", timeout=180_000)
        status = page.text_content("#status")
        if not status.startswith("Ready"):
            return status
        page.set_input_files("#file", str(song))
        page.wait_for_function("document.getElementById('status').textContent.includes('separated in') || "
                               "document.getElementById('status').className === 'error'", timeout=600_000)
        if page.get_attribute("#status", "class") == "error":
            return page.text_content("#status")
        return [page.evaluate(TIMES) for _ in range(rounds)]
    finally:
        page.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a web export (default: the shipped model, exported)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(bench.machine(("ai-edge-litert", "playwright")) + f", {CHROMIUM}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or export_band(scratch)
        rate = Separator.load(folder / "model.tflite").sample_rate
        mixture = noise(args.seconds, rate=rate)
        song = Path(scratch) / "song.wav"
        soundfile.write(song, mixture, rate, subtype="FLOAT")
        httpd = serve.server(folder, port=0)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
        rows = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            probes = {}
            for threads in (1, 2):
                runs = page_runs(browser, f"{base}?threads={threads}", song, args.rounds + 1)
                if isinstance(runs, str):
                    sys.exit(f"the page did not separate on {threads} threads: {runs}")
                probes[threads] = runs[-1]["probe"]
                for key, name in (("separate", "separation"), ("total", "end to end")):
                    seconds = statistics.median(run[key] for run in runs[1:])
                    rows.append((f"browser, LiteRT.js, {threads} thread{'s' * (threads > 1)}, {name}", seconds))
            browser.close()
            for threads in (1, 2):
                separator = Separator.load(folder / "model.tflite", threads=threads)
                separator.separate(mixture[: rate * 5], rate)
                times = []
                for _ in range(args.rounds):
                    began = time.perf_counter()
                    separator.separate(mixture, rate)
                    times.append(time.perf_counter() - began)
                rows.append((f"Python LiteRT, Separator, {threads} thread{'s' * (threads > 1)}",
                             statistics.median(times)))
            print(f"{args.seconds:g} s of stereo at {rate} Hz, {folder / 'model.tflite'}, median of {args.rounds}")
            print(bench.table(["run", "time", "real-time factor"],
                              [(name, f"{seconds:.2f} s", f"{args.seconds / seconds:.1f}×") for name, seconds in rows]))

            print(webgpu_check(playwright, f"{base}?threads=1&accelerator=webgpu", song, probes[1]))
        httpd.shutdown()


def webgpu_check(playwright, url, song, wasm_probe):
    """A line saying whether LiteRT.js's webgpu accelerator (Chromium's software adapter) runs the page's model:
    how many of its operations the delegate took, which it refused and why, and how its stems compare to the
    wasm ones (`wasm_probe`), or why the run failed."""
    from playwright.sync_api import Error

    gpu = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--enable-unsafe-webgpu", "--use-angle=swiftshader", "--enable-features=Vulkan"])
    console = []
    page = gpu.new_page()
    page.on("console", lambda message: console.append(message.text))
    try:
        runs = page_runs(gpu, url, song, 1, page)
    except Error as error:
        runs = str(error).splitlines()[0]
    finally:
        gpu.close()
    refused = sorted({line.split(":")[0] for line in console
                      if re.match(r"[A-Z][A-Z0-9_]+: ", line) and not re.match("(INFO|WARNING|ERROR):", line)})
    split = next((line for line in console if "operations will run on the GPU" in line), "no delegation line")
    line = f"WebGPU: {split.strip()} Refused: {', '.join(refused) or 'none'}. "
    if isinstance(runs, str):
        return line + f"The run: {runs}"
    difference = float(np.abs(np.subtract(runs[-1]["probe"], wasm_probe)).max())
    return line + f"It ran; its stems differ from the wasm ones by up to {difference:.2g} on 16 probed samples."


if __name__ == "__main__":
    main()
