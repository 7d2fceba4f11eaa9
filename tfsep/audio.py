"""Read, write and resample audio files; every error names the file.

Arrays are float32 (samples, channels). wav, flac and ogg are read with soundfile
(libsndfile), mp3, m4a and other compressed formats with ffmpeg when it is installed.
Audio is resampled with soxr and written atomically: to a temporary file in the same
folder, then renamed over the target, so an interrupted write never leaves half a file.
Long files can be read and written block by block (`blocks`, `BlockWriter`).
"""

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from tfsep import files
from tfsep.files import temporary_beside
from tfsep.names import BIT_DEPTHS


class AudioError(Exception):
    """An audio file that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: its length in samples, rate, channels and sample format, and `slack`, how many
    samples fewer than `samples` its decoding may give before the file counts as cut short (0: the header's
    length is exact)."""

    samples: int
    sample_rate: int
    channels: int
    subtype: str
    slack: int = 0


FFMPEG_SUFFIXES = {".mp3", ".m4a", ".mp4", ".aac", ".opus", ".wma", ".webm", ".mka"}
FFMPEG_INSTALL = "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg)"


def _uses_ffmpeg(path):
    return path.suffix.lower() in FFMPEG_SUFFIXES


def _check_file(path):
    reason = files.not_a_file(path)
    if reason:
        raise AudioError(f"{path}: {reason}")
    if _uses_ffmpeg(path) and shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: reading {path.suffix.lower()} files needs ffmpeg; {FFMPEG_INSTALL}")


def info(path):
    """Length, rate, channels and sample format of an audio file, without decoding it.

    For files decoded by ffmpeg the length comes from the container and may be approximate.
    """
    path = Path(path)
    _check_file(path)
    if _uses_ffmpeg(path):
        return _ffprobe(path)
    try:
        found = soundfile.info(str(path))
    except Exception as error:
        raise AudioError(f"{path}: not a readable audio file ({error_reason(error)})") from None
    _check_complete(path, found.extra_info)
    if found.format == "OGG" and not ogg_ends(path):
        raise AudioError(f"{path}: truncated (its Ogg stream stops before its last page)")
    return AudioInfo(found.frames, found.samplerate, found.channels, found.subtype)


def ogg_ends(path):
    """Whether the Ogg file at `path` is whole: its pages (RFC 3533) follow one another to the end of the file, and
    the last one carries the end-of-stream flag. A cut file stops inside a page, or after one without that flag,
    and libsndfile then reports the length of what is left as the stream's."""
    with open(path, "rb") as file:
        size, position, last_flags = os.fstat(file.fileno()).st_size, 0, None
        while position < size:
            file.seek(position)
            header = file.read(27)
            if len(header) < 27 or header[:4] != b"OggS":
                return False
            table = file.read(header[26])
            if len(table) < header[26]:
                return False
            position += 27 + len(table) + sum(table)
            last_flags = header[5]
        return position == size and last_flags is not None and bool(last_flags & 0x04)


# What libsndfile's header log says of a file shorter than its header: the chunk's promised
# and present bytes (wav, aiff, w64), or its promised and present frames (aiff, rf64).
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND|riff|Data Size)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M | re.I)

_SHORT_FRAMES = [
    re.compile(r"Frame count read from '\w+' chunk \((\d+)\) not equal to frame count\s+\*+\s*calculated from "
               r"length of '\w+' chunk \((\d+)\)"),
    re.compile(r"Calculated frame count (?P<present>\d+) does not match value from '\w+' chunk of (?P<promised>\d+)"),
]
_NO_PROMISE = (0, 0xFFFFFFFF)  # the data size that streaming writers leave in a wav header


def _check_complete(path, log):
    """Raise AudioError if libsndfile's header log says the file is shorter than its header promises (wav, aiff, w64,
    rf64, au)."""
    for match in _SHORT_CHUNK.finditer(log):
        promised, present = int(match[1]), int(match[2])
        if promised > present + 1 and promised not in _NO_PROMISE:  # + 1: a chunk's pad byte
            raise AudioError(f"{path}: truncated (its header promises {promised} bytes, the file holds {present})")
    for pattern in _SHORT_FRAMES:
        match = pattern.search(log)
        if match:
            found = match.groupdict() or {"promised": match[1], "present": match[2]}
            promised, present = int(found["promised"]), int(found["present"])
            if promised > present:
                raise AudioError(f"{path}: truncated (its header promises {promised} samples, the file holds "
                                 f"{present})")


def _check_decoded(path, found, decoded):
    """Raise AudioError if fewer samples were decoded than `found` (the file's AudioInfo) promised, beyond its
    `slack`: a file cut short where its header could not tell, or one that shrank while it was read."""
    missing = found.samples - decoded - found.slack
    if missing > 0:
        raise AudioError(f"{path}: truncated, damaged or changed while read ({decoded} samples decoded, its "
                         f"header promises {found.samples})")


def _ffprobe(path):
    command = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=sample_rate,channels,duration,sample_fmt", "-of", "json", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    streams = json.loads(result.stdout or "{}").get("streams") if result.returncode == 0 else None
    if not streams:
        raise AudioError(f"{path}: not a readable audio file "
                         f"({error_reason(result.stderr) if result.stderr else 'no audio stream'})")
    stream = streams[0]
    rate = int(stream["sample_rate"])
    samples = int(round(float(stream.get("duration") or 0.0) * rate))
    # ffprobe's durations of compressed streams are approximate (encoder delay and padding), so those may fall
    # short by 2 % or 0.5 s; an mp3 whose Xing, Info or VBRI header counts its frames, by two frames.
    slack = int(max(0.02 * samples, 0.5 * rate))
    promised = mp3_length(path) if path.suffix.lower() == ".mp3" else None
    if promised is not None:
        samples, slack = promised, 2 * 1152
    return AudioInfo(samples, rate, int(stream["channels"]), stream.get("sample_fmt", ""), slack)


def mp3_length(path):
    """The samples per channel that an mp3's first frame promises, from its Xing or Info header (frames × samples
    per frame, less the LAME tag's encoder delay and padding, as decoders drop them) or VBRI header; None if it
    has none. A constant-bitrate file without one has no length record, and is taken as it decodes."""
    with open(path, "rb") as file:
        head = file.read(10)
        if head[:3] == b"ID3":  # an ID3v2 tag first: its size is four 7-bit bytes, plus a footer if flagged
            file.seek(10 + int.from_bytes(bytes(b & 0x7F for b in head[6:10]), "big") + 10 * bool(head[5] & 0x10))
        else:
            file.seek(0)
        data = file.read(8192)
    start = next((k for k in range(len(data) - 4) if data[k] == 0xFF and data[k + 1] & 0xE0 == 0xE0), None)
    if start is None:
        return None
    header = int.from_bytes(data[start:start + 4], "big")
    mpeg1, mono = (header >> 19) & 3 == 3, (header >> 6) & 3 == 3
    per_frame = 1152 if mpeg1 else 576  # layer III
    xing = start + 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
    if data[xing:xing + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(data[xing + 4:xing + 8], "big")
        if not flags & 1:
            return None
        frames = int.from_bytes(data[xing + 8:xing + 12], "big")
        lame = xing + 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4) + 4 * bool(flags & 8)
        delay = padding = 0
        if data[lame:lame + 4] in (b"LAME", b"Lavc", b"Lavf") and len(data) >= lame + 24:  # LAME's tag, or ffmpeg's
            gap = data[lame + 21:lame + 24]
            delay, padding = (gap[0] << 4) | (gap[1] >> 4), ((gap[1] & 0x0F) << 8) | gap[2]
        return frames * per_frame - delay - padding
    vbri = start + 36
    if data[vbri:vbri + 4] == b"VBRI":
        return int.from_bytes(data[vbri + 14:vbri + 18], "big") * per_frame
    return None


def blocks(path, block_samples=441000):
    """(AudioInfo, generator of float32 (n, channels) blocks) of the whole file, decoded as it goes.

    The generator raises AudioError at its end if the file held fewer samples than it promised.
    """
    path = Path(path)
    found = info(path)
    return found, _checked_blocks(path, found, block_samples)


def _checked_blocks(path, found, block_samples):
    decoded = 0
    if _uses_ffmpeg(path):
        decoder = _ffmpeg_blocks(path, found.channels, block_samples)
    else:
        decoder = _soundfile_blocks(path, block_samples)
    for block in decoder:
        decoded += len(block)
        yield block
    _check_decoded(path, found, decoded)


def _soundfile_blocks(path, block_samples):
    try:
        with soundfile.SoundFile(str(path)) as file:
            while True:
                block = file.read(block_samples, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block
    except AudioError:
        raise
    except Exception as error:
        raise AudioError(f"{path}: cannot decode ({error_reason(error)})") from None


def _ffmpeg_blocks(path, channels, block_samples):
    command = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
               "-acodec", "pcm_f32le", "pipe:1"]
    log = tempfile.TemporaryFile()  # not a pipe: ffmpeg, blocked on a full stderr pipe, would stop decoding
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
    frame_bytes = 4 * channels
    try:
        while True:
            data = process.stdout.read(block_samples * frame_bytes)
            if not data:
                break
            data = data[: len(data) - len(data) % frame_bytes]
            yield np.frombuffer(data, np.float32).reshape(-1, channels)
        if process.wait():
            log.seek(0)
            error = log.read().decode(errors="replace")
            raise AudioError(f"{path}: ffmpeg cannot decode it ({error_reason(error) if error.strip() else 'failed'})")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        log.close()


def read(path, sample_rate=None):
    """Decode `path` to float32 (samples, channels); resample to `sample_rate` if given.

    Returns (audio, rate), where rate is `sample_rate` or the file's own.
    """
    found, decoded = blocks(path)
    audio, rate = np.concatenate([*decoded, np.zeros((0, found.channels), np.float32)]), found.sample_rate
    if sample_rate is not None and rate != sample_rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, rate


def resample(audio, rate_in, rate_out):
    """Resample float32 (samples, channels) from `rate_in` to `rate_out` with soxr (high quality)."""
    if rate_in == rate_out:
        return audio
    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


SUBTYPES = dict(zip(BIT_DEPTHS, ("PCM_16", "PCM_24", "FLOAT", "FLOAT")))
MP3 = "MPEG_LAYER_III"  # the subtype of .mp3 files, which hold no bit depth
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3"}


def write(path, audio, sample_rate, subtype="FLOAT"):
    """Write (samples, channels) audio to `path` atomically; the format follows the suffix (.wav, .flac, .mp3)."""
    writer = BlockWriter(path, sample_rate, audio.shape[1], subtype)
    try:
        writer.write(audio)
        writer.commit()
    except BaseException:
        writer.discard()
        raise


class BlockWriter:
    """An audio file written block by block into a temporary file beside `path`.

    `commit()` closes it and renames it into place; `discard()` removes it. Until the
    commit, an existing file at `path` is untouched.
    """

    def __init__(self, path, sample_rate, channels, subtype="FLOAT"):
        self.path = Path(path)
        self.temporary = None
        try:
            file_format = FORMATS.get(self.path.suffix.lower())
            if file_format is None:
                raise ValueError(f"unknown output format {self.path.suffix!r}; use .wav, .flac or .mp3")
            if not soundfile.check_format(file_format, subtype):
                raise ValueError(f"{file_format} cannot hold {subtype} samples")
            self.temporary = temporary_beside(self.path)
            self.file = soundfile.SoundFile(self.temporary, "w", sample_rate, channels, subtype, format=file_format)
        except Exception as error:
            self.discard()
            raise AudioError(f"{self.path}: cannot write ({error_reason(error)})") from None

    def write(self, block):
        """Append float (samples, channels) audio."""
        try:
            self.file.write(block)
        except Exception as error:
            reason = error_reason(error)
            if reason == "System error.":  # libsndfile's word for a failed write(2): ENOSPC, EFBIG, EIO
                reason = "the system refused the write: disk full or file size limit?"
            raise AudioError(f"{self.path}: cannot write ({reason})") from None

    def close(self):
        """Finish the temporary file and return its path; `commits.commit_set` moves it into place."""
        try:
            self.file.close()
        except Exception as error:
            raise AudioError(f"{self.path}: cannot write ({error_reason(error)})") from None
        return self.temporary

    def commit(self):
        """Finish the file and rename it into place."""
        temporary = self.close()
        try:
            files.fsync(temporary)
            files.rename(temporary, self.path)
        except Exception as error:
            raise AudioError(f"{self.path}: cannot write ({error_reason(error)})") from None
        self.temporary = None

    def discard(self):
        if getattr(self, "file", None) is not None and not self.file.closed:
            try:
                self.file.close()
            except Exception:  # a full disk can fail the close too; the file goes anyway
                pass
        if self.temporary is not None:
            files.remove_temporary(self.temporary)
            self.temporary = None


def error_reason(error):
    """The last line of an error's message (libsndfile and ffmpeg put the cause there), or its type."""
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
