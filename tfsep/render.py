"""Render multitrack data sets offline, from songs (`songs`), instruments (`timbres`), voices (`singing`)
and mix production (`production`).

Layouts:

- `band`: vocals, drums, bass and other, from all three song sources (chorales, folk tunes over
  mma grooves, freedoom's General MIDI songs);
- `satb`: soprano, alto, tenor and bass of the chorales.

Generalisation is measured honestly: validation and test hold out whole songs, the soundfonts,
drum kits and espeak voices of their own split (`timbres`, `singing`), a share of mma's groove
files, and one whole song source, freedoom1's songs, which only validation (even lumps) and test
(odd lumps) use. Every track draws its song, tempo, transposition, instruments, voice and
production from a generator seeded by (seed, track index), so a render is deterministic and does
not depend on `jobs`. Stems are written as 16-bit wav and the mixture as 24-bit wav holding their
exact sum, so mixture == sum of stems holds to the last bit once read back. Each track folder has
a `manifest.json` of what made it, and appears whole or not at all.

Output: OUT/{train,valid,test}/<track>/{mixture,<stem>...}.wav (MUSDB18-HQ's layout), OUT/render.json
(settings) and OUT/render.log (one line per skipped song).
"""

import importlib.util
import json
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tfsep import audio, names, production, singing, songs, timbres

LAYOUTS = dict(zip(names.LAYOUTS, (songs.BAND, songs.VOICES)))  # layout -> its stems
SAMPLE_RATE = 44100
SPLITS = names.SPLITS
MAX_SECONDS = 45.0
TAIL_SECONDS = 1.0
ATTEMPTS = 6  # songs tried per track before the render stops
# Share of each song source per split, for the band layout.
SOURCE_SHARES = {"train": {"chorale": 0.3, "folk": 0.45, "freedoom": 0.25},
                 "valid": {"chorale": 0.3, "folk": 0.35, "freedoom": 0.35},
                 "test": {"chorale": 0.3, "folk": 0.35, "freedoom": 0.35}}
HELD_OUT_SOURCE = "freedoom1"  # freedoom1's songs: valid (even lumps) and test (odd lumps) only
# General MIDI programs (0-based) per role.
VOICE_PROGRAMS = (52, 53, 54, 85)  # choir aahs, voice oohs, synth voice, lead 6 (voice)
BASS_PROGRAMS = tuple(range(32, 40))
MELODIC_PROGRAMS = (0, 6, 11, 19, 24, 40, 41, 42, 48, 52, 56, 57, 60, 65, 68, 70, 71, 73, 74)
SUNG_SHARE = 0.5  # vocals sung by espeak-ng, where installed; the rest on voice patches
MIN_NOTES = 8


class RenderError(Exception):
    """A missing tool or input; the message says what to install or change."""


# What each layout plays, as Debian packages, and how to tell that one is installed.
_INSTALLED = {
    "fluidsynth": lambda: shutil.which("fluidsynth") is not None,
    **{package: (lambda file=file: timbres.find_file(file) is not None)
       for file, _, package in timbres.SOUNDFONTS.values()},
    "avldrums.lv2-soundfont": lambda: all(timbres.find_file(file) is not None
                                          for file, _ in timbres.SAMPLED_KITS.values() if file.endswith(".sf2")),
    "hydrogen-drumkits": lambda: all((Path(timbres.HYDROGEN_FOLDER) / file / "drumkit.xml").is_file()
                                     for file, _ in timbres.SAMPLED_KITS.values() if not file.endswith(".sf2")),
    "freedoom": lambda: all(Path(wad).is_file() for wad in songs.FREEDOOM_WADS),
    "mma": lambda: shutil.which("mma") is not None,
    "espeak-ng": lambda: shutil.which("espeak-ng") is not None,
}
PACKAGES = {"band": tuple(_INSTALLED), "satb": ("fluidsynth", *(p for _, _, p in timbres.SOUNDFONTS.values()))}


def require_packages(layout):
    """Raise RenderError naming, in one line, every Debian package (and the Python extra) that `layout` needs and
    this machine lacks, with the command that installs them."""
    missing = [package for package in PACKAGES[layout] if not _INSTALLED[package]()]
    commands = [f"apt-get install -y {' '.join(missing)}"] if missing else []
    if importlib.util.find_spec("music21") is None or importlib.util.find_spec("mido") is None:
        missing.append("music21 and mido (Python)")
        commands.append("pip install 'tfsep[render]'")
    if missing:
        raise RenderError(f"rendering needs {', '.join(missing)}, not installed here: {' && '.join(commands)} "
                          "(as root on Debian or Ubuntu)")


def find_fluidsynth():
    path = shutil.which("fluidsynth")
    if path is None:
        raise RenderError("FluidSynth is not installed: install it with `apt-get install fluidsynth`")
    return path


def song_split(ref):
    """The split a song belongs to: fixed by its name, not by the seed."""
    if ref.source == "freedoom":
        if ref.name.startswith(HELD_OUT_SOURCE + "_"):
            return ("valid", "test")[ref.index % 2]
        return "train"
    return hashed_split(ref.name)


def groove_split(groove):
    """The split an mma groove belongs to: fixed by its library file, so a file's grooves stay together."""
    return hashed_split(groove[2])


def hashed_split(name):
    """valid for 10 % of names, test for 10 %, train for the rest, by a hash of the name."""
    fraction = songs.stable_fraction(name)
    return "valid" if fraction < 0.1 else "test" if fraction < 0.2 else "train"


def split_sizes(tracks):
    """(train, valid, test) counts: 10 % each for valid and test, at least one each from 3 tracks on."""
    if tracks < 3:
        return tracks - (tracks == 2), 0, int(tracks == 2)
    held_out = max(1, round(0.1 * tracks))
    return tracks - 2 * held_out, held_out, held_out


def catalog(layout):
    """{split: {source: [SongRef]}} of every song installed for `layout`."""
    refs = songs.chorale_refs()
    if layout == "band":
        refs += songs.folk_refs() + songs.freedoom_refs()
    table = {split: {} for split in SPLITS}
    for ref in refs:
        table[song_split(ref)].setdefault(ref.source, []).append(ref)
    return table


def plan(layout, tracks, seed):
    """[(split, index, [SongRef candidates])] for every track: distinct songs within each split and source
    while they last, candidates in the order they are tried should a song fail."""
    table = catalog(layout)
    train, valid, test = split_sizes(tracks)
    splits = ["test"] * test + ["valid"] * valid + ["train"] * train
    orders = {}
    for split, sources in table.items():
        for source, refs in sources.items():
            stream = np.random.default_rng([seed, len(source)])  # one stream per source (its name's length, 4 to 8)
            orders[split, source] = [refs[i] for i in stream.permutation(len(refs))]
    used, jobs = {}, []
    for index, split in enumerate(splits):
        available = [s for s in SOURCE_SHARES[split] if table[split].get(s)] if layout == "band" else ["chorale"]
        if not available:
            raise RenderError(f"no songs for the {split} split: install music21 (pip install tfsep[render]) "
                              "and freedoom")
        shares = np.array([SOURCE_SHARES[split].get(s, 1.0) for s in available])
        source = available[np.random.default_rng([seed, index, 1]).choice(len(available), p=shares / shares.sum())]
        order = orders[split, source]
        start = used.get((split, source), 0)
        used[split, source] = start + 1
        jobs.append((split, index, [order[(start + k * 7919) % len(order)] for k in range(ATTEMPTS)]))
    return jobs


class Instruments:
    """What each split may play: soundfonts, drum kits, espeak voices and mma grooves.

    Every tool and package the layout needs must be installed (`band`: FluidSynth, the
    soundfonts of every split, espeak-ng, mma and freedoom; `satb`: FluidSynth and the
    soundfonts), or RenderError says what to install.
    """

    def __init__(self, layout="band"):
        require_packages(layout)
        self.fluidsynth = find_fluidsynth()
        fonts = timbres.soundfonts()
        try:
            timbres.require_splits(fonts)
        except timbres.TimbreError as error:
            raise RenderError(str(error)) from None
        self.fonts = {split: [f for f in fonts if f.split == split] for split in SPLITS}
        kits = timbres.drum_kits(fonts)
        self.kits = {split: [k for k in kits if k.split == split] for split in SPLITS}
        self.singers, grooves = {split: [] for split in SPLITS}, []
        if layout == "band":
            try:
                singing.find_espeak()
                self.singers = {split: singing.singers(split) for split in SPLITS}
                songs.find_mma()
                grooves = songs.grooves()
            except (singing.SingingError, songs.SourceError) as error:
                raise RenderError(str(error)) from None
            if not songs.freedoom_refs():
                raise RenderError("freedoom's songs are not installed: install them with `apt-get install freedoom`")
        self.grooves = {split: [g for g in grooves if groove_split(g) == split] for split in SPLITS}
        self.hydrogen = {}
        self.lock = threading.Lock()

    def settings(self):
        return {split: {"soundfonts": [f.name for f in self.fonts[split]],
                        "drum_kits": [k.name for k in self.kits[split]],
                        "singers": self.singers[split], "grooves": len(self.grooves[split])} for split in SPLITS}

    def hydrogen_kit(self, path):
        with self.lock:
            if path not in self.hydrogen:
                self.hydrogen[path] = timbres.HydrogenKit(path)
            return self.hydrogen[path]


def choose_program(font, wanted, rng):
    """(bank, program) from `wanted` programs that `font` has, in bank 0 three times in four; None if none."""
    choices = [(bank, program) for bank, program in sorted(font.presets) if bank != 128 and program in wanted]
    plain = [choice for choice in choices if choice[0] == 0]
    pool = plain if plain and (rng.random() < 0.75 or len(plain) == len(choices)) else choices
    return pool[int(rng.integers(len(pool)))] if pool else None


def role_programs(role, part):
    if role == "bass":
        return BASS_PROGRAMS
    if role == "vocals":
        return VOICE_PROGRAMS
    if role in songs.VOICES:
        return MELODIC_PROGRAMS
    family = part.program // 8 * 8  # "other" keeps each part's General MIDI family
    return tuple(range(family, family + 8))


def write_midi(parts, path):
    """Parts as one type-0 MIDI file at 120 bpm: [(Part, channel, bank, program, pan)]."""
    import mido

    ticks = 480  # at 120 bpm a second is 960 ticks
    events = []
    for part, channel, bank, program, pan in parts:
        events += [(0, 0, mido.Message("control_change", control=0, value=bank if bank < 128 else 0, channel=channel)),
                   (0, 1, mido.Message("program_change", program=program, channel=channel)),
                   (0, 2, mido.Message("control_change", control=10, value=pan, channel=channel))]
        for note in part.notes:
            start = round(note.start * 2 * ticks)
            stop = max(start + 1, round((note.start + note.length) * 2 * ticks))
            events += [(start, 4, mido.Message("note_on", note=note.pitch, velocity=max(1, min(127, note.velocity)),
                                               channel=channel)),
                       (stop, 3, mido.Message("note_off", note=note.pitch, velocity=0, channel=channel))]
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120))])
    now = 0
    for tick, _, message in sorted(events, key=lambda event: event[:2]):
        track.append(message.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=ticks)
    midi.tracks.append(track)
    midi.save(path)


def render_midi(fluidsynth, midi_path, soundfont, wav_path):
    """Render a MIDI file to float32 stereo (samples, 2) at 44.1 kHz with FluidSynth, without its effects."""
    command = [fluidsynth, "-ni", "-q", "-F", str(wav_path), "-r", str(SAMPLE_RATE), "-O", "float", "-T", "wav",
               "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0", "-o", "synth.dynamic-sample-loading=1",
               str(soundfont), str(midi_path)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not Path(wav_path).is_file():
        raise RenderError(f"FluidSynth failed on {midi_path}: {result.stderr.strip()[-300:]}")
    return audio.read(wav_path)[0]


def fit(signal, samples):
    """`signal` cut or zero-padded to `samples` rows."""
    signal = signal[:samples]
    return np.pad(signal, [(0, samples - len(signal)), (0, 0)])


def render_stem(role, parts, split, instruments, rng, folder, samples):
    """One stem as float32 (samples, 2) and what played it."""
    fonts = instruments.fonts[split]
    if role == "drums":
        kinds = sorted({k.kind == "gm" for k in instruments.kits[split]})  # soundfont kits or sampled kits, evenly
        gm = kinds[int(rng.integers(len(kinds)))]
        kits = [k for k in instruments.kits[split] if (k.kind == "gm") == gm]
        kit = kits[int(rng.integers(len(kits)))]
        notes = tuple(n for part in parts for n in part.notes)
        if kit.kind == "hydrogen":
            return instruments.hydrogen_kit(kit.path).play(notes, samples), {"kit": kit.name}
        drums = songs.Part(notes, kit.program, drums=True)
        channel, bank = (9, 128) if kit.kind == "gm" else (0, 0)
        write_midi([(drums, channel, bank, kit.program, 64)], folder / f"{role}.mid")
        return fit(render_midi(instruments.fluidsynth, folder / f"{role}.mid", kit.path, folder / f"{role}.wav"),
                   samples), {"kit": kit.name}
    if role == "vocals" and instruments.singers[split] and rng.random() < SUNG_SHARE:
        singer = instruments.singers[split][int(rng.integers(len(instruments.singers[split])))]
        language = singing.LANGUAGES[int(rng.integers(len(singing.LANGUAGES)))]
        part = parts[0]
        if part.lyrics:
            language = "de"  # the chorales' lyrics are German
        with singing.Singer(singer, language) as voice:
            sung = voice.sing(part.notes, part.lyrics, samples, rng)
        return np.repeat(sung[:, None], 2, axis=1), {"singer": singer, "language": language}
    font = fonts[int(rng.integers(len(fonts)))]
    chosen, channels = [], [c for c in range(16) if c != songs.DRUM_CHANNEL]
    for number, part in enumerate(parts):
        preset = choose_program(font, role_programs(role, part), rng)
        if preset is None:  # this font lacks the role: another of the split's fonts plays the stem
            return render_stem(role, parts, split, instruments, rng, folder, samples)
        chosen.append((part, channels[number % len(channels)], *preset, int(rng.integers(24, 104))))
    write_midi(chosen, folder / f"{role}.mid")
    signal = render_midi(instruments.fluidsynth, folder / f"{role}.mid", font.path, folder / f"{role}.wav")
    return fit(signal, samples), {"soundfont": font.name,
                                  "programs": [[bank, program] for _, _, bank, program, _ in chosen]}


def render_track(song, layout, split, instruments, rng):
    """Render one song to int16 stems {name: (samples, 2)} whose sum fits in [-1, 1), and its manifest."""
    samples = int((song.seconds + TAIL_SECONDS) * SAMPLE_RATE)
    stems, played = {}, {}
    with tempfile.TemporaryDirectory(prefix="tfsep-render-") as folder:
        for role in LAYOUTS[layout]:
            parts = [p for p in song.parts.get(role, []) if p.notes]
            if sum(len(p.notes) for p in parts) < MIN_NOTES:
                raise songs.SongError(f"{song.name}: the {role} stem has fewer than {MIN_NOTES} notes")
            for _ in range(3):  # a preset can be silent in a soundfont: draw another
                stems[role], played[role] = render_stem(role, parts, split, instruments, rng, Path(folder), samples)
                if np.sqrt(np.mean(stems[role] ** 2)) > 1e-5:
                    break
            else:
                raise songs.SongError(f"{song.name}: the {role} stem rendered silent ({played[role]})")
    fade = np.linspace(1.0, 0.0, SAMPLE_RATE // 20, dtype=np.float32)[:, None]
    for signal in stems.values():
        signal[-len(fade):] *= fade
    stems, effects = production.produce(stems, rng)
    peak = np.abs(sum(stems.values())).max()
    scale = min(1.0, 0.95 / peak) * 32768  # a loud mix is turned down until it fits
    quantized = {name: np.round(signal * scale).clip(-32768, 32767).astype(np.int16) for name, signal in stems.items()}
    manifest = {"song": song.name, "source": song.source, "split": split, "seconds": round(samples / SAMPLE_RATE, 3),
                "song_info": song.info, "stems": {role: {**played[role], **effects[role]} for role in stems},
                "mix": {**effects["mix"], "peak": round(float(peak * scale / 32768), 3)}}
    return quantized, manifest


def write_track(folder, stems, manifest):
    """Write int16 stems as 16-bit wavs, their exact sum as a 24-bit `mixture.wav` and `manifest.json`,
    all in a hidden folder renamed into place, so that a track folder is whole or absent."""
    partial = folder.with_name(f".{folder.name}.part")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for name, stem in stems.items():
            audio.write(partial / f"{name}.wav", stem, SAMPLE_RATE, subtype="PCM_16")
        mixture = sum(stem.astype(np.int32) for stem in stems.values())
        if np.abs(mixture).max() > 32767:
            raise RenderError(f"{folder.name}: the mixture clips")
        audio.write(partial / "mixture.wav", mixture * 65536, SAMPLE_RATE, subtype="PCM_24")  # 24 high bits of int32
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def render_dataset(out, layout="band", tracks=10, seed=0, jobs=2, progress=True):
    """Render `tracks` tracks of `layout` into `out`; tracks already rendered with the same settings are kept.

    Returns the track folders, in track order. Songs that fail to parse or lack a stem are logged
    in OUT/render.log, and the track takes the next song of its split.
    """
    if layout not in LAYOUTS:
        raise RenderError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    if tracks < 1:
        raise RenderError(f"--tracks must be at least 1, got {tracks}")
    instruments = Instruments(layout)
    try:
        jobs_list = plan(layout, tracks, seed)
    except songs.SourceError as error:
        raise RenderError(str(error)) from None
    out = Path(out)
    settings = {"layout": layout, "tracks": tracks, "seed": seed, "stems": list(LAYOUTS[layout]),
                "sample_rate": SAMPLE_RATE, "splits": instruments.settings()}
    manifest = out / "render.json"
    if manifest.is_file() and json.loads(manifest.read_text()) != settings:
        raise RenderError(f"{out} holds a render with other settings ({manifest}); choose another folder")
    if not manifest.is_file() and out.is_dir() and any(out.iterdir()):
        raise RenderError(f"{out} is not empty and holds no tfsep render; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(settings, indent=2))
    log, lock, skipped = out / "render.log", threading.Lock(), []

    def render_one(job):
        split, index, candidates = job
        for attempt, ref in enumerate(candidates):
            folder = out / split / f"{index:04d}_{ref.name}"
            if (folder / "mixture.wav").is_file():
                return folder
            rng = np.random.default_rng([seed, index, attempt])
            try:
                song = songs.load(ref, rng, instruments.grooves[split], MAX_SECONDS, layout)
                write_track(folder, *render_track(song, layout, split, instruments, rng))
                return folder
            except songs.SongError as error:
                with lock:
                    skipped.append(ref.name)
                    with log.open("a") as file:
                        file.write(f"skipped {ref.name} (track {index}, {split}): {error}\n")
        raise RenderError(f"track {index}: {ATTEMPTS} songs in a row failed; see {log}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(render_one, jobs_list)
        folders = list(tqdm(results, total=len(jobs_list), desc=f"rendering {layout}", unit="track",
                            disable=not progress))
    if skipped:
        print(f"skipped {len(skipped)} songs that failed to parse or lacked a stem (see {log})")
    return folders
