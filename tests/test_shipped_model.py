"""The shipped default model: found from any folder, separates the example better than doing nothing, and its
exports agree with it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import sdr

import tfsep

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models" / "band"
EXAMPLE = ROOT / "examples" / "song.flac"
SOURCES = ["vocals", "drums", "bass", "other"]


@pytest.fixture(scope="module")
def shipped():
    from tfsep.separate import Separator

    return Separator.load()


@pytest.mark.slow
@pytest.mark.smoke
def test_separate_uses_the_shipped_model_from_any_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tfsep.cli", "separate", str(EXAMPLE), "-o", "stems", "-q"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    mixture, rate = soundfile.read(EXAMPLE, dtype="float32")
    scores, baseline = {}, {}
    for source in SOURCES:
        stem, stem_rate = soundfile.read(tmp_path / "stems" / "song" / f"{source}.wav", dtype="float32")
        reference = soundfile.read(EXAMPLE.parent / "stems" / f"{source}.flac", dtype="float32")[0]
        assert stem_rate == rate and stem.shape == mixture.shape
        scores[source], baseline[source] = sdr(reference, stem), sdr(reference, mixture / 4)
    # examples/README.md: 2.75 dB on average against 0.81 dB for doing nothing.
    assert np.mean(list(scores.values())) >= np.mean(list(baseline.values())) + 0.7, (scores, baseline)
    assert all(scores[source] >= baseline[source] - 0.5 for source in SOURCES), (scores, baseline)
    assert scores["drums"] >= baseline["drums"] + 2.0, (scores, baseline)


@pytest.mark.slow
def test_the_shipped_exports_describe_and_compute_the_same_model(shipped):
    import tensorflow as tf

    description = json.loads((SHIPPED / "1" / "assets.extra" / "tfsep.json").read_text())
    assert description["sources"] == list(shipped.sources) == SOURCES and description["sample_rate"] == 44100
    mixture = soundfile.read(EXAMPLE, dtype="float32", frames=44100)[0][None]
    expected = tfsep.load_model(SHIPPED / "model.keras").predict(mixture, verbose=0)
    served = tf.saved_model.load(str(SHIPPED / "1")).signatures["serving_default"](waveform=tf.constant(mixture))
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    on_device = litert.Interpreter(model_path=str(SHIPPED / "band.tflite")).get_signature_runner()(waveform=mixture)
    for source in SOURCES:
        assert np.abs(served[source].numpy() - expected[source]).max() <= 1e-5
        assert np.abs(on_device[source] - expected[source]).max() <= 1e-4


def test_the_shipped_files_stay_small():
    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    assert EXAMPLE.stat().st_size < 2**20


def test_separating_with_the_shipped_model_runs_its_tflite_form_without_tensorflow(tmp_path):
    """`tfsep separate` takes the shipped model's TFLite form in LiteRT, and never imports TensorFlow."""
    pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    script = ("import sys\nfrom tfsep import cli\n"
              f"code = cli.main(['separate', {str(EXAMPLE)!r}, '-o', 'out', '-q'])\n"
              "assert code == 0, code\n"
              "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == [f"{s}.wav" for s in sorted(SOURCES)]


def test_the_tflite_form_separates_the_example_as_the_keras_form_does(shipped):
    from tfsep.separate import Separator

    assert shipped.model is None and shipped.backend.workers == 2  # LiteRT, one interpreter per thread
    mixture, rate = soundfile.read(EXAMPLE, dtype="float32")
    on_device = shipped.separate(mixture, rate)
    keras_form = Separator.load(SHIPPED / "model.keras").separate(mixture, rate)
    for source in SOURCES:
        assert np.abs(on_device[source] - keras_form[source]).max() <= 1e-4
