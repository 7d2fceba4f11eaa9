"""The instruments a render plays: General MIDI soundfonts and sampled drum kits, each held by one split.

Training, validation and test never share a soundfont or a drum kit, so that the validation
and test scores say how a model does on timbres it has never heard:

- soundfonts: FluidR3 GM and GS, FluidR3Mono and MuseScore General train; OPL3 (FM synthesis)
  validates; TimGM6mb tests;
- drum kits: each soundfont's own kits go with it; of the sampled kits (the `avldrums` LV2
  soundfonts and the Hydrogen kits, played by `HydrogenKit`), Red Zeppelin and two Hydrogen kits
  validate and three other Hydrogen kits test.
"""

import re
import struct
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tfsep import audio
from tfsep.corpus.errors import RenderError
from tfsep.corpus.tools import SAMPLE_RATE
from tfsep.names import SPLITS

FONT_FOLDERS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")
HYDROGEN_FOLDER = "/usr/share/hydrogen/data/drumkits"
# name: (file, split, Debian package)
SOUNDFONTS = {
    "FluidR3_GM": ("FluidR3_GM.sf2", "train", "fluid-soundfont-gm"),
    "FluidR3_GS": ("FluidR3_GS.sf2", "train", "fluid-soundfont-gs"),
    "FluidR3Mono": ("FluidR3Mono_GM.sf3", "train", "fluidr3mono-gm-soundfont"),
    "MuseScore_General": ("MuseScore_General_Full.sf2", "train", "musescore-general-soundfont-lossless"),
    "OPL3": ("OPL-3_FM_128M.sf2", "valid", "opl3-soundfont"),
    "TimGM6mb": ("TimGM6mb.sf2", "test", "timgm6mb-soundfont"),
}
# Sampled kits: name: (file or Hydrogen folder, split). avldrums' kits are bank 0 preset 0.
SAMPLED_KITS = {
    "Black_Pearl_4_LV2": ("Black_Pearl_4_LV2.sf2", "train"),
    "Red_Zeppelin_4_LV2": ("Red_Zeppelin_4_LV2.sf2", "valid"),
    "ColomboAcousticDrumkit": ("ColomboAcousticDrumkit", "valid"),
    "HardElectro1": ("HardElectro1", "valid"),
    "ForzeeStereo": ("ForzeeStereo", "test"),
    "BJA_Pacific": ("BJA_Pacific", "test"),
    "VariBreaks": ("VariBreaks", "test"),
}
HYDROGEN_TRAIN_DEFAULT = "train"  # every other Hydrogen kit installed trains
# General MIDI drum notes and the words that name them in Hydrogen kits, most specific first.
DRUM_WORDS = {
    36: ("kick", "bassdrum", "bass drum", "bd", "thump", "bass"),
    37: ("stick", "rim"),
    38: ("snare", "sd", "slap", "clap"),
    39: ("clap", "snap"),
    42: ("closed hh", "hat closed", "hh closed", "closed", "hh", "hat", "shaker", "maraca", "tamb"),
    44: ("pedal", "hat closed", "closed hh", "hh"),
    46: ("open hh", "hat open", "hh open", "open", "semi"),
    49: ("crash", "splash", "china", "cymbal"),
    51: ("ride", "cymbal", "crash"),
    45: ("tom low", "low tom", "floor", "tom 3", "tom"),
    47: ("tom mid", "mid tom", "tom 2", "tom"),
    50: ("tom hi", "high tom", "tom 1", "tom"),
}
GM_DRUM_NEIGHBOURS = {41: 45, 43: 45, 48: 47, 40: 38, 52: 49, 55: 49, 57: 49, 53: 51, 59: 51, 35: 36, 54: 42,
                      56: 37, 69: 42, 70: 42, 82: 42}


@dataclass(frozen=True)
class Soundfont:
    """An installed soundfont: `name`, `path`, `split`, and its presets as {(bank, program)}."""

    name: str
    path: Path
    split: str
    presets: frozenset

    def programs(self, candidates):
        """The General MIDI programs of `candidates` that this font has in bank 0."""
        return [p for p in candidates if (0, p) in self.presets]

    def drum_kits(self):
        """Its bank-128 drum kits, without the sound-effect kits (GS 56 and 127)."""
        return sorted(program for bank, program in self.presets if bank == 128 and program not in (56, 127))


def find_file(name, folders=FONT_FOLDERS):
    return next((Path(f) / name for f in folders if (Path(f) / name).is_file()), None)


def presets(path):
    """{(bank, program)} of a soundfont (sf2 or sf3): the `phdr` records of its RIFF `pdta` list."""
    data = Path(path).read_bytes() if Path(path).stat().st_size < 64 << 20 else read_pdta(path)
    at = data.find(b"phdr")
    if at < 0:
        raise RenderError(f"{path} is not a soundfont (no preset headers)")
    size = struct.unpack("<I", data[at + 4: at + 8])[0]
    found = set()
    for record in range(size // 38 - 1):  # the last record is the terminal "EOP"
        program, bank = struct.unpack("<HH", data[at + 8 + 38 * record + 20: at + 8 + 38 * record + 24])
        found.add((bank, program))
    return frozenset(found)


def read_pdta(path):
    """The `pdta` list of a large soundfont, found by walking its RIFF chunks instead of reading samples."""
    with open(path, "rb") as file:
        file.seek(12)
        while True:
            header = file.read(12)
            if len(header) < 12:
                raise RenderError(f"{path} is not a soundfont (no pdta list)")
            kind, size, name = header[:4], struct.unpack("<I", header[4:8])[0], header[8:12]
            if kind == b"LIST" and name == b"pdta":
                return file.read(size - 4)
            file.seek(size - 4 + size % 2, 1)


@lru_cache(maxsize=None)
def soundfonts(folders=FONT_FOLDERS):
    """Every soundfont of `SOUNDFONTS` that is installed, as `Soundfont`s."""
    found = []
    for name, (file, split, _) in SOUNDFONTS.items():
        path = find_file(file, folders)
        if path is not None:
            found.append(Soundfont(name, path, split, presets(path)))
    return tuple(found)


def require_splits(fonts):
    """Raise unless every split has a soundfont, naming the packages to install."""
    missing = [split for split in SPLITS if not any(font.split == split for font in fonts)]
    if missing:
        packages = sorted({package for _, split, package in SOUNDFONTS.values() if split in missing})
        raise RenderError(f"no soundfont for the {', '.join(missing)} split: install `apt-get install "
                          f"{' '.join(packages)}`")


@dataclass(frozen=True)
class DrumKit:
    """A drum kit: `kind` "gm" (a soundfont's bank-128 kit), "sf2" (bank 0 preset 0) or "hydrogen"."""

    name: str
    kind: str
    path: Path
    program: int
    split: str


def drum_kits(fonts, hydrogen=HYDROGEN_FOLDER):
    """The soundfonts' own kits and the sampled kits installed, each with its split."""
    kits = [DrumKit(f"{font.name}:{kit}", "gm", font.path, kit, font.split)
            for font in fonts for kit in font.drum_kits()]
    for name, (file, split) in SAMPLED_KITS.items():
        path = find_file(file)
        if path is not None:
            kits.append(DrumKit(name, "sf2", path, 0, split))
    folder = Path(hydrogen)
    if folder.is_dir():
        for kit in sorted(folder.iterdir()):
            if (kit / "drumkit.xml").is_file():
                split = SAMPLED_KITS.get(kit.name, (None, HYDROGEN_TRAIN_DEFAULT))[1]
                kits.append(DrumKit(kit.name, "hydrogen", kit, 0, split))
    return kits


class HydrogenKit:
    """A Hydrogen drum kit played from its WAV samples: `play(notes, samples)` -> (samples, 2).

    Each General MIDI drum note goes to the kit instrument whose name matches it best (kick,
    snare, hats, cymbals, toms; `DRUM_WORDS`), and each hit picks the velocity layer that covers
    it, with the instrument's gain and pan.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        root = ElementTree.parse(self.folder / "drumkit.xml").getroot()
        namespace = re.match(r"\{.*\}", root.tag)
        prefix = namespace.group(0) if namespace else ""
        self.instruments = []
        for instrument in root.iter(prefix + "instrument"):
            layers = []
            for layer in instrument.iter(prefix + "layer"):
                file = layer.findtext(prefix + "filename")
                if file:
                    layers.append((float(layer.findtext(prefix + "min", "0")),
                                   float(layer.findtext(prefix + "max", "1")),
                                   self.folder / file))
            if not layers and instrument.findtext(prefix + "filename"):
                layers.append((0.0, 1.0, self.folder / instrument.findtext(prefix + "filename")))
            if layers:
                pan = (float(instrument.findtext(prefix + "pan_L", "1")),
                       float(instrument.findtext(prefix + "pan_R", "1")))
                gain = (float(instrument.findtext(prefix + "volume", "1"))
                        * float(instrument.findtext(prefix + "gain", "1")))
                self.instruments.append(((instrument.findtext(prefix + "name") or "").lower(), layers, pan, gain))
        if not self.instruments:
            raise RenderError(f"{self.folder} has no playable instruments")
        self.mapping = self.map_notes()

    def map_notes(self):
        """{GM note: instrument index}, by the words of each note, else the instrument in Hydrogen's order."""
        mapping = {}
        for note, words in DRUM_WORDS.items():
            for word in words:
                match = next((i for i, (name, *_) in enumerate(self.instruments) if word in name), None)
                if match is not None:
                    mapping[note] = match
                    break
            else:
                mapping[note] = (note - 36) % len(self.instruments)
        return mapping

    @lru_cache(maxsize=None)
    def sample(self, path):
        """A sample as float32 (samples, 2) at 44.1 kHz."""
        signal, rate = audio.read(path)
        signal = audio.resample(signal, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else signal
        return np.repeat(signal, 2, axis=1) if signal.shape[1] == 1 else signal[:, :2]

    def play(self, notes, samples):
        """The kit playing `notes` (`songs.Note`s, General MIDI drum pitches), (samples, 2) float32."""
        out = np.zeros((samples, 2), np.float32)
        for note in notes:
            index = self.mapping.get(note.pitch, self.mapping.get(GM_DRUM_NEIGHBOURS.get(note.pitch), None))
            if index is None:
                continue
            _, layers, pan, gain = self.instruments[index]
            level = note.velocity / 127
            path = next((p for low, high, p in layers if low <= level <= high), layers[-1][2])
            hit = self.sample(path)
            start = int(note.start * SAMPLE_RATE)
            if start >= samples:
                continue
            stop = min(samples, start + len(hit))
            out[start:stop] += hit[: stop - start] * np.asarray(pan, np.float32) * gain * level
        return out
