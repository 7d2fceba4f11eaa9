"""Every deployment path for converted models (issue 34): a random-weight Open-Unmix conversion (umxhq's STFT and
band, Open-Unmix's Wiener step, a tiny network) and a random 4-stem Spleeter checkpoint's conversion.

TFLite with builtin ops only, run in LiteRT against Keras (Open-Unmix, Wiener 0 and 1); SavedModel against Keras
(both); `tfsep separate` with the Open-Unmix `.keras` and `.tflite` files; `tfsep evaluate`, `tfsep batch` and
`Separator.load` (both). Fine-tuning from the Open-Unmix conversion is in test_train.py.
"""

import json

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from conftest import SOURCES, run_tfsep, synthetic_song, write_spleeter_checkpoint
from test_export import operator_codes, run_litert
from test_openunmix import tiny_files

from tfsep import formats, providers
from tfsep.models import load_model, reconfigure

pytestmark = pytest.mark.slow

RATE = 44100
# umxhq's STFT (n_fft 4096), input band (1487 bins) and output bins, with a tiny network: hidden 16, one BiLSTM.
UMX = {"hidden": 16, "bins": 1487, "output_bins": 2049, "layers": 1}
IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]  # Beam's local runner, in its process


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"openunmix": .keras, "spleeter": .keras}: the two conversions, saved."""
    folder = tmp_path_factory.mktemp("converted")
    write_spleeter_checkpoint(folder / "4stems", SOURCES, seed=4)
    converted = {"openunmix": providers.convert("openunmix", tiny_files(folder / "umx", SOURCES, **UMX)),
                 "spleeter": providers.convert("spleeter", [folder / "4stems"], "4stems")}
    for name, model in converted.items():
        assert model.sources == SOURCES and model.sample_rate == RATE, name
        formats.write("keras", model, folder / f"{name}.keras")
    return {name: folder / f"{name}.keras" for name in converted}


@pytest.fixture(scope="module")
def umx_tflite(models, tmp_path_factory):
    """{wiener iterations: .tflite} of the Open-Unmix conversion: 1, its own (Open-Unmix's default), as `tfsep
    export` writes it, and 0."""
    folder = tmp_path_factory.mktemp("tflite")
    model = load_model(models["openunmix"])
    assert model.get_config()["wiener_iterations"] == 1
    exported = run_tfsep("export", models["openunmix"], "--format", "tflite", "--output", folder / "umx-w1.tflite")
    assert exported.returncode == 0, exported.stderr[-2000:]
    return {1: folder / "umx-w1.tflite",
            0: formats.write("tflite", model, folder / "umx-w0.tflite", wiener_iterations=0)}


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """3 s of synthetic stereo music at 44.1 kHz in a .wav file."""
    path = tmp_path_factory.mktemp("song") / "song.wav"
    soundfile.write(path, synthetic_song(3.0, seed=5), RATE, subtype="FLOAT")
    return path


def stems_in(folder):
    """{source: (samples, channels)} of the stem files in `folder`."""
    return {path.stem: soundfile.read(path, dtype="float32")[0] for path in sorted(folder.glob("*.wav"))}


def test_open_unmix_exports_to_builtin_tflite_and_matches_keras_in_litert(models, umx_tflite):
    from tfsep.formats import tflite

    model = load_model(models["openunmix"])
    long = synthetic_song(8.0, seed=6)[None]  # 345 frames: two of Open-Unmix's 300-frame Wiener windows
    short = np.stack([synthetic_song(0.5, seed=seed) for seed in (7, 8)])  # batch and length resized
    for wiener, path in umx_tflite.items():
        assert all(custom is None for _, custom in operator_codes(path)), wiener  # no Flex ops
        assert tflite.describe(path)["sources"] == list(SOURCES)
        expected = reconfigure(model, wiener_iterations=wiener)
        for mixture in (long, short):
            outputs, keras_stems = run_litert(path, mixture), expected.predict(mixture, verbose=0)
            for source in SOURCES:
                assert np.abs(outputs[source] - keras_stems[source]).max() <= 1e-4, (wiener, source, mixture.shape)
                assert np.abs(keras_stems[source]).max() > 1e-2, "a silent stem proves little"


@pytest.mark.parametrize("name", ["openunmix", "spleeter"])
def test_savedmodel_export_loads_and_matches_keras(name, models, tmp_path):
    exported = run_tfsep("export", models[name], "--format", "savedmodel", "--output", tmp_path / name)
    assert exported.returncode == 0, exported.stderr[-2000:]
    serve = tf.saved_model.load(str(tmp_path / name / "1")).signatures["serving_default"]
    mixture = np.stack([synthetic_song(2.0, seed=seed) for seed in (1, 2)])
    served = serve(waveform=tf.constant(mixture))
    expected = load_model(models[name]).predict(mixture, verbose=0)
    assert sorted(served) == sorted(SOURCES)
    for source in SOURCES:
        assert np.abs(served[source].numpy() - expected[source]).max() <= 1e-4, source


def test_separate_writes_four_stems_from_the_keras_and_the_tflite_file(models, umx_tflite, song, tmp_path):
    mixture = soundfile.read(song, dtype="float32")[0]
    written = {}
    for label, path in [("umx-keras", models["openunmix"]), ("umx-tflite", umx_tflite[1])]:
        result = run_tfsep("separate", song, "-o", tmp_path / label, "--model", path, "--bits", "float", "-q")
        assert result.returncode == 0, result.stderr[-2000:]
        written[label] = stems_in(tmp_path / label / "song")
        assert sorted(written[label]) == sorted(SOURCES), label
        assert all(stem.shape == mixture.shape and np.abs(stem).max() > 1e-2 for stem in written[label].values())
    for source in SOURCES:  # the same chunks through Keras and LiteRT
        assert np.abs(written["umx-keras"][source] - written["umx-tflite"][source]).max() <= 1e-4, source


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two 1 s tracks at 44.1 kHz in a data set's test subset: four tone-and-noise stems and their mixture."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(9)
    t = np.arange(RATE) / RATE  # BSSEval's projections take about 1.5 s per second of a track
    for track in range(2):
        folder = root / "test" / f"track{track}"
        folder.mkdir(parents=True)
        stems = [0.2 * np.sin(2 * np.pi * frequency * rng.uniform(0.9, 1.1) * t)[:, None] * [1.0, 0.7]
                 + rng.normal(scale=0.01, size=(len(t), 2)) for frequency in (220, 700, 80, 2500)]
        for source, stem in zip(SOURCES, stems):
            soundfile.write(folder / f"{source}.wav", stem, RATE, subtype="FLOAT")
        soundfile.write(folder / "mixture.wav", sum(stems), RATE, subtype="FLOAT")
    return root


@pytest.mark.parametrize("name", ["openunmix", "spleeter"])
def test_evaluate_batch_and_the_python_api_run_the_converted_model(name, models, dataset, song, tmp_path):
    from tfsep.separate import Separator

    report = tmp_path / "report"
    evaluated = run_tfsep("evaluate", "--dataset", dataset, "--model", models[name], "--report", report, "--jobs",
                          "1", "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    metrics = json.loads((report / "metrics.json").read_text())
    assert sorted(metrics["tracks"]) == ["track0", "track1"]
    assert all(np.isfinite(metrics["summary"][source]["SDR"]) for source in SOURCES)
    assert "| vocals |" in evaluated.stdout

    batch = run_tfsep("batch", song, "-o", tmp_path / "batch", "--model", models[name], "--bits", "float", "--",
                      *IN_PROCESS, timeout=600)
    assert batch.returncode == 0, batch.stderr[-2000:]
    assert "separated 1 files" in batch.stdout and "0 failed" in batch.stdout
    written = stems_in(tmp_path / "batch" / "song")
    assert sorted(written) == sorted(SOURCES)

    mixture = soundfile.read(song, dtype="float32")[0]
    stems = Separator.load(models[name]).separate(mixture, RATE)
    assert sorted(stems) == sorted(SOURCES)
    for source in SOURCES:  # what the batch wrote (32-bit float files)
        assert stems[source].shape == mixture.shape and np.abs(stems[source]).max() > 1e-2, source
        assert np.abs(stems[source] - written[source]).max() <= 1e-5, source
