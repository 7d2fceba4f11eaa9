"""examples/c: the C runner, built with gcc against the wheel's libLiteRt.so, writes the same stems as Python's
LiteRT Interpreter, and refuses bad input with one line and no files."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("ai_edge_litert", reason="needs ai-edge-litert (not on Intel Macs)")
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "saved_models" / "band" / "band.tflite"
RATE = 44100


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """The `separate` binary, built by examples/c/Makefile with gcc in a scratch copy of the folder."""
    missing = [tool for tool in ("gcc", "make") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"building examples/c needs {' and '.join(missing)} (apt-get install gcc make)")
    build = tmp_path_factory.mktemp("c") / "c"
    shutil.copytree(ROOT / "examples" / "c", build, ignore=shutil.ignore_patterns("separate"))
    result = subprocess.run(["make", "-C", str(build), f"PYTHON={sys.executable}", "CC=gcc"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return build / "separate"


def mixture(seconds, seed=0):
    """Stereo tones in noise at the model's rate: float32 [samples, 2]."""
    t = np.arange(int(seconds * RATE)) / RATE
    tones = np.stack([np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1760 * t),
                      np.sin(2 * np.pi * 330 * t) + 0.5 * np.sign(np.sin(2 * np.pi * 55 * t))], axis=1)
    noise = np.random.default_rng(seed).standard_normal(tones.shape)
    return (0.25 * tones + 0.05 * noise).astype(np.float32)


def python_stems(path):
    """{source: float32 [samples, channels]} from Python LiteRT on the whole file as soundfile reads it."""
    waveform, _ = soundfile.read(path, dtype="float32", always_2d=True)
    separate = Interpreter(model_path=str(MODEL), num_threads=2).get_signature_runner()
    return {name: stem[0] for name, stem in separate(waveform=waveform[None]).items()}


@pytest.mark.parametrize("seconds, subtype, options", [(10, "PCM_16", []), (2, "PCM_24", ["-k", "builtin", "-t", "1"])],
                         ids=["10s-pcm16", "2s-pcm24-builtin"])
def test_the_stems_equal_python_litert(runner, tmp_path, seconds, subtype, options):
    song = tmp_path / "song.wav"
    soundfile.write(song, mixture(seconds), RATE, subtype=subtype)
    result = subprocess.run([runner, *options, MODEL, song, tmp_path / "stems"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    expected = python_stems(song)
    assert sorted(p.name for p in (tmp_path / "stems").iterdir()) == sorted(f"{name}.wav" for name in expected)
    for name, stem in expected.items():
        info = soundfile.info(tmp_path / "stems" / f"{name}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 2, "FLOAT")
        written, _ = soundfile.read(tmp_path / "stems" / f"{name}.wav", dtype="float32", always_2d=True)
        assert written.shape == stem.shape == (seconds * RATE, 2)
        assert np.abs(written - stem).max() <= 1e-6, name
        assert np.abs(stem).max() > 1e-3, name  # a real stem, not silence matching silence


def write_bad_input(kind, folder):
    """(model, input) for one kind of bad input."""
    song = folder / "song.wav"
    if kind == "48 kHz":
        soundfile.write(song, mixture(1), 48000)
    elif kind == "mono":
        soundfile.write(song, mixture(1)[:, 0], RATE)
    elif kind == "not a WAV":
        song.write_text("just some text\n")
    elif kind == "8-bit":
        soundfile.write(song, mixture(1), RATE, subtype="PCM_U8")
    else:
        soundfile.write(song, mixture(1), RATE)
    model = {"not a model": ROOT / "README.md", "missing model": folder / "none.tflite"}.get(kind, MODEL)
    if kind == "missing input":
        song = folder / "none.wav"
    return model, song


@pytest.mark.parametrize("kind", ["48 kHz", "mono", "not a WAV", "8-bit", "missing input", "not a model",
                                  "missing model"])
def test_bad_input_is_one_line_and_no_files(runner, tmp_path, kind):
    model, song = write_bad_input(kind, tmp_path)
    result = subprocess.run([runner, model, song, tmp_path / "stems"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("separate: "), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "stems").exists()
    named = {"not a model": model.name, "missing model": model.name}.get(kind, song.name)
    assert named in lines[0], lines[0]
