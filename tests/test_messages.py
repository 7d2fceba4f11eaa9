"""Messages: inputs that are not regular files, unreadable TFLite files, and third-party noise kept quiet.

Each case is one line naming the file and a non-zero exit; a run that succeeds prints
nothing of TensorFlow's or LiteRT's own unless --debug is given.
"""

import os

import numpy as np
import pytest
import soundfile
from conftest import run_tfsep

RATE = 8000


@pytest.fixture(scope="module")
def tiny_tflite(tiny_model_file, tmp_path_factory):
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    result = run_tfsep("export", tiny_model_file, "--format", "tflite", "--output", path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # the converter's absl warnings and Keras's prints are captured
    return path


@pytest.fixture
def song(tmp_path, rng):
    path = tmp_path / "song.wav"
    soundfile.write(path, rng.uniform(-0.5, 0.5, (RATE, 2)), RATE)
    return path


def test_inputs_that_are_not_regular_files_are_named_in_one_line_each(tiny_model_file, tmp_path):
    os.mkfifo(tmp_path / "fifo.wav")
    (tmp_path / "loop1.wav").symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(tmp_path / "loop1.wav")
    result = run_tfsep("separate", "fifo.wav", "loop1.wav", "/dev/null", "--model", tiny_model_file, "-o", "out", "-q",
                       cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[:3] == [
        "tfsep: error: fifo.wav: not a regular file (a FIFO)",
        "tfsep: error: loop1.wav: not a regular file (a loop of symbolic links)",
        "tfsep: error: /dev/null: not a regular file (a device)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_models_that_are_not_regular_files_or_not_tflite_are_named(song, tiny_tflite, tmp_path):
    os.mkfifo(tmp_path / "fifo.keras")
    (tmp_path / "text.tflite").write_text("hello")
    (tmp_path / "cut.tflite").write_bytes(tiny_tflite.read_bytes()[:3000])
    cases = {"fifo.keras": "fifo.keras: not a regular file (a FIFO)",
             "text.tflite": "text.tflite: not a TFLite model file",
             "cut.tflite": "cut.tflite: not a TFLite model file",
             "missing.tflite": "missing.tflite: no such model file"}
    for model, message in cases.items():
        result = run_tfsep("separate", song, "--model", model, "-o", "out", "-q", cwd=tmp_path)
        assert result.returncode == 1 and result.stderr == f"tfsep: error: {message}\n", result.stderr


def test_litert_and_tensorflow_noise_shows_only_with_debug(song, tiny_tflite, tmp_path):
    quiet = run_tfsep("separate", song, "--model", tiny_tflite, "-o", tmp_path / "a", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == "", quiet.stderr
    debug = run_tfsep("separate", song, "--model", tiny_tflite, "-o", tmp_path / "b", "-q", "--debug")
    assert debug.returncode == 0 and "XNNPACK delegate" in debug.stderr
    stems = [soundfile.read(tmp_path / folder / "song" / "vocals.wav")[0] for folder in ("a", "b")]
    np.testing.assert_array_equal(*stems)  # the warm-up run at load changes nothing


@pytest.mark.slow
@pytest.mark.smoke
def test_a_quiet_separation_prints_nothing_on_any_tensorflow(tiny_model_file, song, tmp_path):
    result = run_tfsep("separate", song, "--model", tiny_model_file, "-o", tmp_path / "out", "-q")
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr
