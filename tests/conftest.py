"""Shared settings: tiny STFTs and models so that the suite stays fast on 2 CPU cores."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hashlib  # noqa: E402
import http.server  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile  # noqa: E402

# A small STFT at 8 kHz: 129 bins, 8 ms hop.
TINY = {"sample_rate": 8000, "n_fft": 256, "hop": 64, "size": "tiny"}
SOURCES = ("vocals", "drums", "bass", "other")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny `bandconv` SeparationModel at 8 kHz (random weights), shared by the tests that only run it."""
    import tfsep

    return tfsep.build_model("bandconv", **TINY)


@pytest.fixture(scope="session")
def tiny_model_file(tiny_model, tmp_path_factory):
    """`tiny_model` saved as a .keras file, for the command-line tests."""
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model.save(path)
    return path


@pytest.fixture(scope="module")
def separator(tiny_model):
    """A Separator of `tiny_model` in 2 s chunks that overlap by 0.5 s."""
    from tfsep.separate import Separator

    return Separator(tiny_model, chunk_seconds=2.0, overlap_seconds=0.5)


def run_tfsep(*args, cwd=None, env=None, timeout=300, limit_file_size=None, console_script=False):
    """`tfsep ARGS` in a process of its own: the CompletedProcess, its stdout and stderr as text.

    console_script: run the console script of the environment running the tests, as a user runs it (not
    whichever `tfsep` PATH finds first), where it has one; else `python -m tfsep.cli`.
    limit_file_size: the most bytes the process may write to a file (RLIMIT_FSIZE), to make its writes fail.
    """
    script = Path(sys.executable).with_name("tfsep")
    command = [str(script)] if console_script and script.is_file() else [sys.executable, "-m", "tfsep.cli"]

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=cwd, preexec_fn=limit if limit_file_size else None)


def write_wav(path, signal, rate=8000, subtype="PCM_16"):
    """`signal` (samples, channels) written to `path`, as FLAC where its name ends in .flac, else WAV: `path`."""
    soundfile.write(path, signal, rate, subtype=subtype, format="FLAC" if str(path).endswith(".flac") else "WAV")
    return path


def sdr(reference, estimate, delta=0.0):
    """The signal-to-distortion ratio of `estimate` over the whole signal, in dB.

    10·log10((Σ s² + δ) / (Σ (s − ŝ)² + δ)): δ = 0 gives the textbook ratio; metrics.sdr takes δ = 1e-7.
    """
    return 10 * np.log10((np.sum(reference**2) + delta) / (np.sum((reference - estimate) ** 2) + delta))


def constant_library(tracks=5, samples=3000):
    """Track t's source k is the constant 10·t + k on the left channel and its negative on the right."""
    return [{s: np.tile([[10.0 * t + k, -10.0 * t - k]], (samples, 1)).astype(np.float32)
             for k, s in enumerate(SOURCES)}
            for t in range(tracks)]


def tiny_config(root, output, **sections):
    """A config that trains the tiny bandconv at 8 kHz on 1 s chunks, in seconds."""
    config = {
        "data": {"root": str(root), "sample_rate": 8000, "chunk_seconds": 1.0, "batch_size": 8,
                 "steps_per_epoch": 6, "validation_batches": 2},
        "model": {"architecture": "bandconv", "size": "tiny", "n_fft": 256, "hop": 64},
        "optimizer": {"learning_rate": 0.003},
        "schedule": {"epochs": 4, "normalization_batches": 1},
        "run": {"output": str(output), "verbose": 0, "tensorboard_every": 2},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def train_killed_after_two_epochs(config, monkeypatch):
    """Train `config` (4 epochs or more) until the second epoch's backup is written, then stop as a killed run
    does (KeyboardInterrupt): the run folder is left as one killed after 2 epochs."""
    from tfsep import train as training
    from tfsep.callbacks import RunBackup

    backup = RunBackup.on_epoch_end

    def stopped_after_two(self, epoch, logs=None):
        backup(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunBackup, "on_epoch_end", stopped_after_two)
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    monkeypatch.undo()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """A rendered band set of three tracks at 44.1 kHz, for the training tests."""
    corpus = pytest.importorskip("tfsep.corpus")
    root = tmp_path_factory.mktemp("data") / "band"
    try:
        corpus.render_dataset(root, "band", tracks=3, seed=11, progress=False)
    except corpus.RenderError as error:
        pytest.skip(str(error))
    return root


@pytest.fixture(scope="session")
def exported(tiny_model, tmp_path_factory):
    """`tiny_model` as a TF Serving SavedModel (version 3, 0.5 s chunks, at most 1 s per request)."""
    from tfsep import formats
    return formats.write("savedmodel", tiny_model, tmp_path_factory.mktemp("serving") / "band", version=3,
                         chunk_seconds=0.5, max_seconds=1.0)


@pytest.fixture(scope="session")
def signatures(exported):
    """The signatures of `exported`, loaded with plain TensorFlow."""
    import tensorflow as tf

    return tf.saved_model.load(str(exported)).signatures


def write_spleeter_checkpoint(folder, instruments, seed=0):
    """A random-weight checkpoint in Spleeter's variable layout (names in creation order, HWIO kernels) in `folder`.

    Batch norm statistics are random too, so that no layer is an identity. Returns {name: array}.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    filters = [16, 32, 64, 128, 256, 512]
    decoder_in, decoder_out = [512, 512, 256, 128, 64, 32], [256, 128, 64, 32, 16, 1]
    named = lambda base, index: base if index == 0 else f"{base}_{index}"  # noqa: E731
    variables = {"global_step": np.array(1000, np.int64)}
    for i in range(len(instruments)):
        for j in range(7):
            shape = (5, 5, ([2] + filters)[j], filters[j]) if j < 6 else (4, 4, 1, 2)
            variables[f"{named('conv2d', 7 * i + j)}/kernel"] = rng.normal(0, 0.05, shape)
            variables[f"{named('conv2d', 7 * i + j)}/bias"] = rng.normal(0, 0.05, shape[-1])
        for j in range(6):
            variables[f"{named('conv2d_transpose', 6 * i + j)}/kernel"] = rng.normal(
                0, 0.05, (5, 5, decoder_out[j], decoder_in[j]))
            variables[f"{named('conv2d_transpose', 6 * i + j)}/bias"] = rng.normal(0, 0.05, decoder_out[j])
        for j, width in enumerate(filters + decoder_out):
            base = named("batch_normalization", 12 * i + j)
            variables[f"{base}/gamma"], variables[f"{base}/beta"] = (rng.uniform(0.5, 1.5, width),
                                                                     rng.normal(0, .1, width))
            variables[f"{base}/moving_mean"] = rng.normal(0, 0.1, width)
            variables[f"{base}/moving_variance"] = rng.uniform(0.5, 1.5, width)
    variables = {name: value if value.dtype == np.int64 else value.astype(np.float32)
                 for name, value in variables.items()}
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(folder / "model"), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[variables[name] for name in names])
    (folder / "checkpoint").write_text('model_checkpoint_path: "model"\n')
    return variables


@pytest.fixture(scope="session")
def spleeter_2stems_checkpoint(tmp_path_factory):
    """A random 2-instrument checkpoint in Spleeter's layout, in a folder named `2stems`: (folder, variables)."""
    folder = tmp_path_factory.mktemp("spleeter") / "2stems"
    return folder, write_spleeter_checkpoint(folder, ["vocals", "accompaniment"])


HTML = b"<!DOCTYPE html>\n<html><body>Not Found</body></html>\n"


class LoopbackHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the server's folder; a path in the server's `truncated` set, or a file's under `/truncated/`, as its
    first half with its full Content-Length; `/status/CODE` an error, `/page` an HTML page with status 200, `/slow`
    nothing for 2 s."""

    def do_GET(self):
        if self.path.startswith("/truncated/") or self.path in self.server.truncated:
            body = (self.server.folder / self.path.removeprefix("/truncated/").lstrip("/")).read_bytes()
            self._send(body[: len(body) // 2], length=len(body))
        elif self.path.startswith("/status/"):
            self.send_error(int(self.path.removeprefix("/status/")))
        elif self.path == "/page":
            self._send(HTML, content_type="text/html; charset=utf-8")
        elif self.path == "/slow":
            time.sleep(2.0)
        else:
            super().do_GET()

    def _send(self, body, length=None, content_type="application/octet-stream"):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class LoopbackServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that gave up (the timeout test)


@pytest.fixture
def loopback(tmp_path):
    """A loopback HTTP server in a thread (stop it with `.shutdown()`), serving the new folder `.folder` at
    `.mirror`, an address for TFSEP_MIRROR; it cuts short the paths added to `.truncated`."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = LoopbackServer(("127.0.0.1", 0), lambda *args: LoopbackHandler(*args, directory=str(folder)))
    server.folder, server.truncated = folder, set()
    server.mirror = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def served(loopback):
    """(folder, mirror): the folder that `loopback` serves, and its address."""
    return loopback.folder, loopback.mirror


def publish(folder, path, body):
    """Put `body` at `path` under the served folder; its SHA-256."""
    (folder / path).parent.mkdir(parents=True, exist_ok=True)
    (folder / path).write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def synthetic_song(seconds, rate=44100, seed=0):
    """A few seconds of stereo music, float32 (samples, 2): a sung-like line over chords, bass and drums.

    The voice is a vibrato harmonic tone with a formant-like spectrum in syllables, in the
    centre; chords of decaying partials, a bass line and noise-burst drums are panned.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    notes = 220.0 * 2 ** (np.array([0, 3, 5, 7, 5, 3, 0, -2]) / 12)
    f0 = notes[(t * 2).astype(int) % len(notes)] * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.exp(-((h * f0 - 700) / 500) ** 2) * np.sin(h * phase) / h for h in range(1, 25))
    voice *= 0.5 + 0.5 * np.sin(np.pi * (t * 4 % 1)) ** 2
    beat = t % 0.5
    chords = sum(np.sin(2 * np.pi * f * t) * np.exp(-3 * (t % 2)) for f in (261.6, 329.6, 392.0, 523.3))
    bass = np.sin(2 * np.pi * 55 * 2 ** (np.floor(t) % 3 / 12) * t) * np.exp(-4 * beat)
    drums = rng.standard_normal(len(t)) * np.exp(-40 * beat) + np.sin(2 * np.pi * 60 * beat) * np.exp(-20 * beat)
    left = 0.3 * voice + 0.15 * chords + 0.3 * bass + 0.2 * drums
    right = 0.3 * voice + 0.1 * chords + 0.3 * bass + 0.25 * drums
    return (0.8 * np.stack([left, right], 1) / np.abs(np.stack([left, right])).max()).astype(np.float32)
