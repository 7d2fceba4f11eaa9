"""Read, write and resample audio files; every error names the file.

Arrays are float32 (samples, channels). Files are read with soundfile (libsndfile: wav,
flac, ogg, mp3), resampled with soxr, and written atomically: to a temporary file in the
same folder, then renamed over the target, so an interrupted write never leaves half a file.
"""

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr


class AudioError(Exception):
    """An audio file that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class AudioInfo:
    samples: int
    sample_rate: int
    channels: int
    subtype: str


def info(path):
    """Length, rate, channels and sample format of an audio file, without decoding it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
    try:
        found = soundfile.info(str(path))
    except Exception as error:
        raise AudioError(f"{path}: not a readable audio file ({_reason(error)})") from None
    return AudioInfo(found.frames, found.samplerate, found.channels, found.subtype)


def read(path, sample_rate=None):
    """Decode `path` to float32 (samples, channels); resample to `sample_rate` if given.

    Returns (audio, rate), where rate is `sample_rate` or the file's own.
    """
    path = Path(path)
    info(path)
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioError(f"{path}: cannot decode ({_reason(error)})") from None
    if sample_rate is not None and rate != sample_rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, rate


def resample(audio, rate_in, rate_out):
    """Resample float32 (samples, channels) from `rate_in` to `rate_out` with soxr (high quality)."""
    if rate_in == rate_out:
        return audio
    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def write(path, audio, sample_rate, subtype="FLOAT"):
    """Write (samples, channels) audio to `path` atomically; the format follows the suffix (.wav, .flac)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(descriptor)
    try:
        file_format = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
        soundfile.write(temporary, audio, sample_rate, subtype=subtype, format=file_format)
        os.replace(temporary, path)
    except Exception as error:
        Path(temporary).unlink(missing_ok=True)
        raise AudioError(f"{path}: cannot write ({_reason(error)})") from None


def _reason(error):
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__


@functools.cache
def tensorflow_io():
    """The tensorflow_io module if it is installed and its kernels load here, else None."""
    try:
        import tensorflow as tf
        import tensorflow_io as tfio

        tfio.audio.resample(tf.zeros([8, 1]), rate_in=8, rate_out=4)
    except Exception:  # not installed, or kernels that fail to load on TensorFlow >= 2.18
        return None
    return tfio


def tensorflow_io_status():
    """One line on tensorflow-io: not installed, working, or installed with kernels that do not load."""
    try:
        import tensorflow_io as tfio
    except ImportError:
        return "not installed (audio is decoded with soundfile)"
    if tensorflow_io() is None:
        return f"{tfio.__version__} installed, but its kernels do not load with this TensorFlow"
    return f"{tfio.__version__}, kernels load (used to decode audio inside tf.data)"
