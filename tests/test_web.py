"""The browser form (`tfsep export --format web`): the fixed-shape model, the runtime fetch, the server, and the
page itself, driven in Debian's Chromium by Playwright, against `tfsep separate` on the same folder."""

import base64
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import publish, run_tfsep, synthetic_song

from tfsep import formats, providers
from tfsep.chunking import chunk_plan
from tfsep.names import CHUNK_SECONDS
from tfsep.providers.download import DownloadError
from tfsep.separate import Separator
from tfsep.web import runtime, serve

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
RATE = 44100


@pytest.fixture(scope="session")
def web_home(tmp_path_factory):
    """A TFSEP_HOME for this session holding the verified LiteRT.js tarballs: copied from the user's cache where
    they are there (checked again on use), else fetched once from registry.npmjs.org."""
    home = tmp_path_factory.mktemp("tfsep-home")
    (home / "downloads").mkdir()
    for package in runtime.PACKAGES:
        cached = providers.home() / "downloads" / f"litertjs-{package}-{runtime.VERSION}.tgz"
        if cached.is_file():
            shutil.copy(cached, home / "downloads" / cached.name)
    before = os.environ.get("TFSEP_HOME")
    os.environ["TFSEP_HOME"] = str(home)
    runtime.tarballs(progress=False)
    yield home
    if before is None:
        os.environ.pop("TFSEP_HOME")
    else:
        os.environ["TFSEP_HOME"] = before


@pytest.fixture(scope="session")
def band_web(web_home, tmp_path_factory):
    """The shipped model exported for the web."""
    from tfsep.models import load_model

    model = load_model(ROOT / "saved_models" / "band" / "model.keras")
    return formats.write("web", model, tmp_path_factory.mktemp("web") / "band", name="band")


@pytest.fixture(scope="session")
def umx_web(web_home, tmp_path_factory):
    """A small random-weight umx model at 44.1 kHz (its LSTMs become FusedLSTMs) exported for the web."""
    import tfsep

    model = tfsep.build_model("umx", ("vocals", "accompaniment"), RATE, n_fft=1024, hop=256, size="tiny")
    return formats.write("web", model, tmp_path_factory.mktemp("web") / "umx", name="umx-tiny")


@pytest.fixture(scope="session")
def chromium():
    """launch(*flags): headless Chromium (the system's; Playwright downloads none), closed at the session's end."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = []

        def launch(*flags):
            launched.append(playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", *flags]))
            return launched[-1]

        yield launch
        for browser in launched:
            browser.close()


@pytest.fixture(scope="session")
def browser(chromium):
    return chromium()


class Served:
    """A folder served on 127.0.0.1 with the cross-origin headers (`serve.server`), in a thread."""

    def __init__(self, folder):
        self.httpd = serve.server(folder, port=0)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def open_page(browser, folder, query="threads=2"):
    """(page, server): the folder's page loaded in a new tab, its model ready."""
    served = Served(folder)
    page = browser.new_page()
    page.goto(f"{served.url}index.html?{query}")
    page.wait_for_function("['Ready', 'LiteRT'].some(s => document.getElementById('status').textContent"
                           ".startsWith(s))", timeout=120_000)
    assert page.text_content("#status").startswith("Ready"), page.text_content("#status")
    assert page.evaluate("crossOriginIsolated")
    return page, served


SEPARATE_CHOSEN = """async () => {
  const result = await window.tfsepSeparate(document.getElementById('file').files[0]);
  const encode = (array) => {
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  const sources = {};
  for (const [name, channels] of Object.entries(result.sources)) sources[name] = channels.map(encode);
  return {sampleRate: result.sampleRate, sources};
}"""


def separate_in_page(page, path):
    """{source: (samples, channels)} and the rate from `window.tfsepSeparate` on the file at `path`."""
    page.set_input_files("#file", str(path))  # the page separates it too, queued after this call
    result = page.evaluate(SEPARATE_CHOSEN)
    stems = {name: np.stack([np.frombuffer(base64.b64decode(channel), np.float32) for channel in channels], 1)
             for name, channels in result["sources"].items()}
    return stems, result["sampleRate"]


def song_file(tmp_path, seconds=20):
    """A stereo 44.1 kHz 16-bit WAV of the synthetic song, and its samples as read back."""
    path = tmp_path / "song.wav"
    soundfile.write(path, synthetic_song(seconds, RATE), RATE, subtype="PCM_16")
    return path, soundfile.read(path, dtype="float32")[0]


def check_page_matches_separate(browser, folder, tmp_path):
    """The page's stems of a 20 s song equal `Separator` on the folder's model.tflite, within 1e-4; the page."""
    path, song = song_file(tmp_path)
    page, served = open_page(browser, folder)
    try:
        stems, rate = separate_in_page(page, path)
        page.wait_for_function("document.querySelectorAll('#stems audio').length > 0", timeout=120_000)
        expected = Separator.load(folder / "model.tflite").separate(song, RATE)
        assert rate == RATE and set(stems) == set(expected)
        for source in expected:
            assert stems[source].shape == song.shape
            np.testing.assert_allclose(stems[source], expected[source], atol=1e-4, err_msg=source)
        assert max(np.abs(stems[source]).max() for source in stems) > 1e-3  # stems, not silence
        return page, served
    except BaseException:
        served.close()
        raise


def fixed_input_shape(path):
    from ai_edge_litert.interpreter import Interpreter

    return list(Interpreter(model_path=str(path)).get_input_details()[0]["shape"])


@pytest.mark.slow
def test_the_shipped_model_separates_in_the_browser_as_tfsep_separate_does(browser, band_web, tmp_path):
    description = formats.describe(band_web)
    plan = chunk_plan(description, CHUNK_SECONDS)
    assert fixed_input_shape(band_web / "model.tflite") == [1, plan.chunk, 2]
    config = json.loads((band_web / "model.json").read_text())
    assert (config["name"], config["chunk_samples"], config["overlap_samples"]) == ("band", plan.chunk, plan.overlap)
    assert config["sources"] == ["vocals", "drums", "bass", "other"] and "tfsep" in config["provenance"]

    page, served = check_page_matches_separate(browser, band_web, tmp_path)
    try:
        page.wait_for_function("document.getElementById('status').textContent.includes('separated in')")
        folder = Path(os.environ.get("TFSEP_ARTIFACTS") or tmp_path)
        folder.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 820, "height": 560})
        page.screenshot(path=str(folder / "web.png"), full_page=True)
        assert (folder / "web.png").stat().st_size > 10_000
        assert [link.get_attribute("download") for link in page.query_selector_all("#stems a")] == [
            f"song_{source}.wav" for source in config["sources"]]
    finally:
        served.close()

    # The fixed-shape file computes what the shipped dynamic one does: the two agree up to the last chunk, where
    # the fixed one sees the zeros it was padded with.
    song = song_file(tmp_path)[1]
    fixed = Separator.load(band_web / "model.tflite").separate(song, RATE)
    dynamic = Separator.load(ROOT / "saved_models" / "band" / "band.tflite").separate(song, RATE)
    last = (len(song) - plan.chunk - 1) // (plan.chunk - plan.overlap) * (plan.chunk - plan.overlap)
    for source in fixed:
        np.testing.assert_allclose(fixed[source][:last], dynamic[source][:last], atol=1e-5)


@pytest.mark.slow
def test_a_umx_model_separates_in_the_browser_through_its_lstms(browser, umx_web, tmp_path):
    """LiteRT.js loads no variable tensors, hence no fused LSTM: the fixed form's LSTMs are WHILE loops."""
    from tfsep.formats import flatbuffer

    converted = flatbuffer.read((umx_web / "model.tflite").read_bytes())
    operators = {max(code.builtinCode, code.deprecatedBuiltinCode) for code in converted.operatorCodes}
    assert flatbuffer.schema().BuiltinOperator.WHILE in operators
    assert not any(tensor.isVariable for subgraph in converted.subgraphs for tensor in subgraph.tensors)
    page, served = check_page_matches_separate(browser, umx_web, tmp_path)
    served.close()


@pytest.mark.slow
def test_bad_files_get_a_message_in_the_page(browser, band_web, tmp_path):
    page, served = open_page(browser, band_web)
    try:
        (tmp_path / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(20_000))
        (tmp_path / "empty.wav").write_bytes(b"")
        hour = np.zeros((3600 * 8000, 1), np.float32)  # an hour, kept small: mono 8-bit at 8 kHz (29 MB)
        soundfile.write(tmp_path / "hour.wav", hour, 8000, subtype="PCM_U8")
        for name, message in (("noise.mp3", "is not audio this browser can decode"), ("empty.wav", "is empty"),
                              ("hour.wav", "lasts 60.0 minutes; the page takes songs up to 20 minutes")):
            page.set_input_files("#file", str(tmp_path / name))
            page.wait_for_function("document.getElementById('status').className === 'error'", timeout=60_000)
            assert page.text_content("#status") == f"{name} {message}" or message in page.text_content("#status")
            assert page.text_content("#status").startswith(name)
            page.evaluate("document.getElementById('status').className = ''")
        rejected = page.evaluate("window.tfsepSeparate(new Blob([new Uint8Array([1, 2, 3])])).then(() => 'resolved',"
                                 " (error) => error.message)")
        assert rejected == "the file is not audio this browser can decode"
    finally:
        served.close()


@pytest.mark.slow
def test_compressed_files_come_back_at_their_own_rate(browser, band_web, tmp_path):
    """decodeAudioData resamples to its context's rate; the page reads MP3's and Ogg's own from their headers."""
    wav = tmp_path / "song.wav"
    soundfile.write(wav, synthetic_song(3, 48000), 48000, subtype="PCM_16")
    page, served = open_page(browser, band_web)
    try:
        for name, codec, rate in (("song.mp3", "libmp3lame", 48000), ("song.ogg", "libvorbis", 32000),
                                  ("song.opus", "libopus", 48000)):
            encoded = tmp_path / name
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-ar", str(rate), "-c:a", codec, str(encoded)],
                           check=True)
            stems, found = separate_in_page(page, encoded)
            assert found == rate, name
            assert abs(len(stems["vocals"]) / rate - 3.0) < 0.1 and stems["vocals"].shape[1] == 2, name
    finally:
        served.close()


@pytest.mark.slow
def test_a_run_the_runtime_fails_is_an_error_never_silent_stems(chromium, band_web, tmp_path):
    """LiteRT.js's webgpu accelerator takes part of the graph here and then fails to invoke it, and model.run
    resolves with zeros all the same: the page must say so, or give the wasm stems."""
    from playwright.sync_api import Error

    path, song = song_file(tmp_path, seconds=6)
    gpu = chromium("--enable-unsafe-webgpu", "--use-angle=swiftshader", "--enable-features=Vulkan")
    page, served = open_page(gpu, band_web, "threads=1&accelerator=webgpu")
    try:
        stems, _ = separate_in_page(page, path)
    except Error as error:
        assert "LiteRT.js could not run model.tflite on webgpu" in str(error)
    else:
        expected = Separator.load(band_web / "model.tflite").separate(song, RATE)
        for source in expected:
            np.testing.assert_allclose(stems[source], expected[source], atol=1e-4, err_msg=source)
    finally:
        served.close()


def test_the_server_sends_the_headers_threads_need(tmp_path):
    (tmp_path / "index.html").write_text("<p>page</p>")
    (tmp_path / "runtime.wasm").write_bytes(b"\0asm")
    served = Served(tmp_path)
    try:
        for name, kind in (("index.html", "text/html"), ("runtime.wasm", "application/wasm")):
            with urllib.request.urlopen(served.url + name) as response:
                assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
                assert response.headers.get_content_type() == kind
    finally:
        served.close()


def test_a_runtime_whose_bytes_differ_from_npms_integrity_is_refused(served, tmp_path, monkeypatch):
    folder, mirror = served
    monkeypatch.setenv("TFSEP_HOME", str(tmp_path / "home"))
    path = runtime.PACKAGES["core"][0]
    publish(folder, path.lstrip("/"), b"\x1f\x8b not the published tarball" * 1000)
    with pytest.raises(DownloadError, match="integrity sha512-.* differs from the published sha512-PlGm"):
        runtime.tarballs(mirror, progress=False)
    assert not list((tmp_path / "home").rglob("*.tgz*"))
    (folder / path.lstrip("/")).unlink()
    with pytest.raises(DownloadError, match="HTTP 404"):
        runtime.tarballs(mirror, progress=False)
    assert not [p for p in (tmp_path / "home").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_the_export_command_refuses_a_bad_runtime_in_one_line_and_leaves_nothing(served, tiny_model_file, tmp_path):
    folder, mirror = served
    path = runtime.PACKAGES["core"][0]
    publish(folder, path.lstrip("/"), b"\x1f\x8b not the published tarball")
    output = tmp_path / "out" / "web"
    env = {**os.environ, "TFSEP_HOME": str(tmp_path / "home")}
    result = run_tfsep("export", str(tiny_model_file), "--format", "web", "--output", str(output),
                       "--runtime-url", mirror, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "integrity" in result.stderr, result.stderr
    assert not output.exists() and not (output.parent.exists() and list(output.parent.iterdir()))

    output.mkdir(parents=True)
    result = run_tfsep("export", str(tiny_model_file), "--format", "web", "--output", str(output), env=env)
    assert result.returncode == 1 and "already exists (use --overwrite" in result.stderr


def test_models_of_summed_chunks_are_refused_before_any_download(tmp_path, monkeypatch):
    import tfsep

    monkeypatch.setenv("TFSEP_HOME", str(tmp_path / "home"))
    model = tfsep.build_model("unet", ("vocals", "accompaniment"), 8000, n_fft=256, hop=64, size="small",
                              framing="pad_end", segment=64)
    with pytest.raises(ValueError, match="64-frame segments .* does not support"):
        formats.write("web", model, tmp_path / "web")
    assert not (tmp_path / "web").exists() and not (tmp_path / "home").exists()
