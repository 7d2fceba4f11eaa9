"""Audio files: reading, atomic writing, resampling and errors that name the file."""

import numpy as np
import pytest
import scipy.signal
import soundfile

from tfsep import audio, data


@pytest.mark.smoke
@pytest.mark.parametrize("subtype, tolerance", [("FLOAT", 0.0), ("PCM_16", 1 / 32768), ("PCM_24", 1 / 2**23)])
def test_write_then_read_round_trips(subtype, tolerance, tmp_path, rng):
    signal = rng.uniform(-0.9, 0.9, (1000, 3)).astype(np.float32)
    audio.write(tmp_path / "x.wav", signal, 22050, subtype=subtype)
    read, rate = audio.read(tmp_path / "x.wav")
    assert rate == 22050 and read.shape == (1000, 3) and read.dtype == np.float32
    assert np.abs(read - signal).max() <= tolerance
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temporary file left


def test_failed_write_keeps_the_existing_file(tmp_path, rng):
    target = tmp_path / "x.wav"
    audio.write(target, np.zeros((10, 1), np.float32), 8000)
    before = target.read_bytes()
    with pytest.raises(audio.AudioError, match="x.wav: cannot write"):
        audio.write(target, np.zeros((10, 1), np.float32), 8000, subtype="NOT_A_SUBTYPE")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


@pytest.mark.smoke
def test_unreadable_inputs_raise_errors_naming_the_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    cases = {
        tmp_path / "missing.wav": "missing.wav: no such file",
        tmp_path: "is a folder",
        tmp_path / "empty.wav": "empty.wav: not a readable audio file",
        tmp_path / "noise.wav": "noise.wav: not a readable audio file",
    }
    for path, message in cases.items():
        with pytest.raises(audio.AudioError, match=message):
            audio.read(path)


def test_resampling_matches_scipy_polyphase(rng):
    t = np.arange(22050) / 22050
    signal = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t)], -1).astype(np.float32)
    resampled = audio.resample(signal, 22050, 44100)
    reference = scipy.signal.resample_poly(signal, 2, 1, axis=0)
    assert resampled.shape == (44100, 2) and resampled.dtype == np.float32
    middle = slice(1000, -1000)  # the two filters differ only at the edges
    assert np.abs(resampled[middle] - reference[middle]).max() < 2e-3


@pytest.mark.smoke
def test_resampling_round_trip_restores_the_signal():
    t = np.arange(44100) / 44100
    signal = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)], -1).astype(np.float32)
    back = audio.resample(audio.resample(signal, 44100, 48000), 48000, 44100)
    assert back.shape == signal.shape
    assert np.abs(back - signal)[1000:-1000].max() < 1e-3


@pytest.mark.parametrize(
    "suffix, subtype",
    [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT"), (".flac", "PCM_16"), (".flac", "PCM_24")]
)
def test_tensorflow_io_decoding_equals_soundfile(suffix, subtype, tmp_path, rng):
    signal = rng.uniform(-0.9, 0.9, (3000, 2)).astype(np.float32)
    path = tmp_path / f"x{suffix}"
    soundfile.write(path, signal, 44100, subtype=subtype)
    if audio.tensorflow_io() is None:
        pytest.skip("tensorflow-io kernels do not load here")
    assert data._tensorflow_io_decoder(path, subtype) is not None
    with_tensorflow_io = data.decode_files([path], 44100)[0]
    with_soundfile = data.decode_files([path], 44100, tensorflow_io=False)[0]
    np.testing.assert_array_equal(with_tensorflow_io, with_soundfile)
    np.testing.assert_array_equal(with_soundfile, audio.read(path)[0])
