"""Sung vocal lines from espeak-ng: one syllable per note, at the note's pitch, cut to its length.

espeak-ng speaks rather than sings, but a voice variant whose pitch range is a single frequency
(`pitch HZ HZ`) holds that pitch, so each note is rendered as one syllable with a private variant
built on one of espeak's own voice variants (its formants, breath and roughness) at the note's
frequency. The variants are split like the soundfonts: some train, some validate, some test.
espeak renders about 8.8 Hz flat and is band-limited to 11 kHz.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tfsep import audio
from tfsep.corpus.errors import RenderError
from tfsep.corpus.tools import SAMPLE_RATE, find_tool

ESPEAK_DATA = ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
               "/usr/share/espeak-ng-data")
FLAT_HZ = 8.8
# espeak's own variants (voices/!v), by split.
SINGERS = {
    "train": ("m1", "m2", "m5", "m6", "m7", "f1", "f2", "f5", "klatt", "klatt3", "Andy", "Annie", "belinda", "linda",
              "john", "max", "paul", "anika", "steph", "edward"),
    "valid": ("m3", "f3", "klatt2"),
    "test": ("m4", "f4", "klatt4"),
}
LANGUAGES = ("en", "de", "it", "es", "fr", "la")
SYLLABLES = ("la", "da", "na", "ma", "lo", "do", "no", "mo", "li", "di", "ni", "mi", "lu", "du", "ba", "ta",
             "ka", "sa", "ya", "wo", "ah", "oh", "ee", "hey", "yeah", "love", "me", "you", "go", "so", "sky", "night")


def espeak_data():
    for folder in ESPEAK_DATA:
        if Path(folder, "voices", "!v").is_dir():
            return Path(folder)
    raise RenderError("espeak-ng's voice data is not installed: install it with `apt-get install espeak-ng`")


def hertz(pitch):
    return 440.0 * 2 ** ((pitch - 69) / 12)


class Singer:
    """One espeak-ng voice (`variant` in `language`) that sings `songs.Note`s; use as a context manager."""

    def __init__(self, variant, language="en"):
        self.espeak, data = find_tool("espeak-ng"), espeak_data()
        self.variant, self.language = variant, language
        base = (data / "voices" / "!v" / variant).read_text(errors="replace").splitlines()
        self.base = [line for line in base if not line.split()[:1] or line.split()[0] not in ("name", "pitch")]
        self.folder = Path(tempfile.mkdtemp(prefix="tfsep-espeak-"))
        voices = self.folder / "espeak-ng-data" / "voices"
        (voices / "!v").mkdir(parents=True)
        for entry in data.iterdir():  # a private data folder: espeak's own files, and our variants
            if entry.name != "voices":
                (self.folder / "espeak-ng-data" / entry.name).symlink_to(entry)
        for entry in (data / "voices").iterdir():
            if entry.name != "!v":
                (voices / entry.name).symlink_to(entry)
        self.female = any(line.split()[:2] == ["gender", "female"] for line in self.base)
        self.cache = {}

    def __enter__(self):
        return self

    def __exit__(self, *_):
        shutil.rmtree(self.folder, ignore_errors=True)

    def syllable(self, text, pitch, seconds):
        """One syllable at MIDI `pitch` lasting about `seconds`: float32 mono at 44.1 kHz, leading silence cut."""
        speed = int(np.clip(60.0 / max(seconds, 0.05), 80, 450))
        key = (text, pitch, speed // 20)
        if key not in self.cache:
            name = f"p{pitch}"
            variant = self.folder / "espeak-ng-data" / "voices" / "!v" / name
            if not variant.is_file():
                frequency = hertz(pitch) + FLAT_HZ
                variant.write_text(
                    "\n".join([f"name {name}", *self.base, f"pitch {frequency:.0f} {frequency:.0f}", ""]))
            wav = self.folder / "syllable.wav"
            result = subprocess.run([self.espeak, "-v", f"{self.language}+{name}", "--path", str(self.folder), "-s",
                                     str(speed), "-w", str(wav), text], capture_output=True, text=True)
            if result.returncode != 0 or not wav.is_file():
                raise RenderError(f"espeak-ng failed: {result.stderr.strip()[-200:]}")
            signal, rate = audio.read(wav)
            signal = audio.resample(signal[:, 0:1], rate, SAMPLE_RATE)[:, 0]
            loud = np.flatnonzero(np.abs(signal) > 0.02 * (np.abs(signal).max() + 1e-9))
            self.cache[key] = signal[loud[0]: loud[-1] + 1] if len(loud) else signal
        return self.cache[key]

    def sing(self, notes, lyrics, samples, rng):
        """`notes` sung with `lyrics` (or random syllables), as float32 mono (samples,)."""
        out = np.zeros(samples, np.float32)
        words = [w for w in lyrics if w] or list(rng.choice(SYLLABLES, size=8))
        fade = int(0.015 * SAMPLE_RATE)
        middle = np.median([note.pitch for note in notes]) if notes else 60
        octaves = int(np.round(((66 if self.female else 55) - middle) / 12))  # into the singer's register
        for index, note in enumerate(notes):
            pitch = int(np.clip(note.pitch + 12 * octaves, 36, 84))
            text = words[index % len(words)].strip("-_ ") or "la"
            sound = self.syllable(text, pitch, note.length)[: int(note.length * SAMPLE_RATE)].copy()
            ramp = min(fade, len(sound) // 2)
            if ramp:
                sound[-ramp:] *= np.linspace(1.0, 0.0, ramp)
            start = int(note.start * SAMPLE_RATE)
            stop = min(samples, start + len(sound))
            if stop > start:
                out[start:stop] += sound[: stop - start] * (note.velocity / 127)
        return out


def singers(split):
    """The espeak variants of `split` that are installed."""
    data = espeak_data()
    return [name for name in SINGERS[split] if (data / "voices" / "!v" / name).is_file()]
