"""Render multitrack data sets offline from Bach's four-part chorales (music21's corpus).

Each track is one chorale. Its voices become stems, written as MIDI files with mido and
rendered by FluidSynth with General MIDI soundfonts:

- `satb`: soprano, alto, tenor and bass, each on a randomly chosen instrument;
- `band`: vocals (the soprano on a voice patch), drums (a groove generated in the
  chorale's meter), bass (the bass line on a bass instrument) and other (alto and tenor on
  piano, organ, strings or guitar).

Every track draws its tempo, transposition, instruments, soundfont, drum kit, panning,
levels and reverb from a generator seeded by (seed, track index), so a render is
deterministic. Stems are written as 16-bit wav and the mixture as 24-bit wav holding their
exact sum, so that mixture == sum of stems holds to the last bit once read back.

Output: OUT/{train,valid,test}/<track>/{mixture,<stem>...}.wav, MUSDB18-HQ's layout.
"""

import json
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tfsep import audio

LAYOUTS = {"band": ("vocals", "drums", "bass", "other"), "satb": ("soprano", "alto", "tenor", "bass")}
VOICES = ("soprano", "alto", "tenor", "bass")
SAMPLE_RATE = 44100
SOUNDFONT_FOLDERS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts")
SOUNDFONTS = ("FluidR3_GM.sf2", "TimGM6mb.sf2")

# General MIDI programs (0-based) per role.
VOICE_PROGRAMS = (52, 53, 54, 85)  # choir aahs, voice oohs, synth voice, lead 6 (voice)
BASS_PROGRAMS = (32, 33, 34, 35, 36, 37, 38, 39, 43)  # acoustic, electric, fretless, slap, synth basses, contrabass
OTHER_PROGRAMS = (0, 1, 2, 4, 5, 16, 17, 19, 48, 49, 24, 25, 26, 27)  # pianos, organs, strings, guitars
MELODIC_PROGRAMS = (0, 6, 11, 19, 24, 40, 41, 42, 48, 52, 56, 57, 60, 65, 68, 70, 71, 73, 74)
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)  # present in both soundfonts
KICK, SNARE, CLOSED_HAT, PEDAL_HAT, RIDE, CRASH, TOMS = 36, 38, 42, 44, 51, 49, (50, 48, 47, 45)
DRUM_CHANNEL = 9


class RenderError(Exception):
    """A missing tool or input; the message says what to install or change."""


@dataclass(frozen=True)
class Note:
    """A note in quarter-note units: `start` and `length` in quarters, MIDI `pitch` and `velocity`."""

    start: float
    length: float
    pitch: int
    velocity: int = 90


@dataclass(frozen=True)
class Chorale:
    """A four-part chorale: notes per voice, and bars as (start, length, beats, beat length) in quarters."""

    name: str
    voices: dict
    bars: list


def find_fluidsynth():
    path = shutil.which("fluidsynth")
    if path is None:
        raise RenderError("FluidSynth is not installed: install it with `apt-get install fluidsynth`")
    return path


def find_soundfonts(folders=SOUNDFONT_FOLDERS):
    """The General MIDI soundfonts installed, FluidR3_GM and TimGM6mb; at least one is needed."""
    found = [Path(folder) / name for name in SOUNDFONTS for folder in folders if (Path(folder) / name).is_file()]
    if not found:
        raise RenderError(
            f"no General MIDI soundfont ({', '.join(SOUNDFONTS)}) in {', '.join(folders)}: "
            "install them with `apt-get install fluid-soundfont-gm timgm6mb-soundfont`"
        )
    return found


def chorale_paths():
    """Paths of Bach's chorales in music21's bundled corpus, in a fixed order."""
    try:
        from music21 import corpus
    except ImportError:
        raise RenderError("music21 is not installed: install it with `pip install tfsep[render]`") from None
    return sorted(str(path) for path in corpus.getComposer("bach"))


def load_chorale(path):
    """Parse a chorale into a `Chorale`, or None unless it has Soprano, Alto, Tenor and Bass parts."""
    from music21 import converter, meter, stream

    score = converter.parse(path)
    parts = {part.partName.strip().lower(): part for part in score.parts if part.partName}
    if not set(VOICES) <= set(parts):
        return None
    voices = {}
    for voice in VOICES:
        notes = []
        for element in parts[voice].stripTies().flatten().notes:
            length = float(element.quarterLength)
            if length <= 0:
                continue
            for pitch in element.pitches:
                notes.append(Note(float(element.offset), length, pitch.midi))
        voices[voice] = notes
    signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
    beats, beat = (signature.numerator, 4.0 / signature.denominator) if signature else (4, 1.0)
    bars = []
    for measure in parts["soprano"].getElementsByClass(stream.Measure):
        if measure.timeSignature is not None:
            beats, beat = measure.timeSignature.numerator, 4.0 / measure.timeSignature.denominator
        bars.append((float(measure.offset), float(measure.duration.quarterLength), beats, beat))
    return Chorale(Path(path).stem.replace(".", "_"), voices, bars)


def drum_groove(chorale, rng):
    """A drum part in the chorale's meter: hats or ride, kick and backbeat, a fill every 4 bars."""
    subdivision = int(rng.choice([1, 2, 4]))
    cymbal = int(rng.choice([CLOSED_HAT, CLOSED_HAT, PEDAL_HAT, RIDE]))
    extra_kicks = rng.uniform(0.0, 0.3)
    end = max(note.start + note.length for notes in chorale.voices.values() for note in notes)
    notes = []
    for index, (bar_start, bar_length, beats, beat) in enumerate(chorale.bars):
        nominal = bar_start + bar_length - beats * beat  # a pickup bar starts before its first note
        fill = index % 4 == 3 and rng.random() < 0.6
        for b in range(beats):
            for step in range(subdivision):
                time = nominal + (b + step / subdivision) * beat
                if time < bar_start - 1e-6 or time >= min(end, bar_start + bar_length) - 1e-6:
                    continue
                length = beat / subdivision
                if fill and b == beats - 1:
                    notes.append(Note(time, length, TOMS[step % len(TOMS)], int(rng.integers(80, 115))))
                    continue
                notes.append(Note(time, length, cymbal, int(rng.integers(55, 75)) + (20 if step == 0 else 0)))
                if step == 0 and (b == 0 or (beats % 2 == 0 and b == beats // 2)):
                    notes.append(Note(time, length, KICK, int(rng.integers(90, 115))))
                elif step == 0 and (b % 2 == 1 if beats != 3 else b > 0):
                    notes.append(Note(time, length, SNARE, int(rng.integers(80, 110))))
                elif rng.random() < extra_kicks:
                    notes.append(Note(time, length, KICK, int(rng.integers(70, 95))))
        if index % 4 == 0 and bar_length == beats * beat:
            notes.append(Note(bar_start, beat, CRASH, int(rng.integers(80, 110))))
    return notes


@dataclass(frozen=True)
class Stem:
    """What to render for one stem: notes, General MIDI program (or drum kit), pan, reverb send, soundfont."""

    notes: list
    program: int
    drums: bool
    pan: int
    reverb: int
    soundfont: Path


def arrange(chorale, layout, rng, soundfonts):
    """Choose instruments, transposition, pan and reverb for each stem of `layout`."""
    transpose = int(rng.integers(-5, 6))

    def voiced(voices, octave=0):
        return [
            Note(n.start, n.length, int(np.clip(n.pitch + transpose + 12 * octave, 0, 127)), int(rng.integers(70, 110)))
            for voice in voices
            for n in chorale.voices[voice]
        ]

    def stem(notes, program, pan=(20, 108), reverb=(20, 90), drums=False):
        return Stem(notes, program, drums, int(rng.integers(*pan)), int(rng.integers(*reverb)),
                    soundfonts[int(rng.integers(len(soundfonts)))])

    if layout == "satb":
        return {voice: stem(voiced([voice]), int(rng.choice(MELODIC_PROGRAMS))) for voice in VOICES}
    return {
        "vocals": stem(voiced(["soprano"]), int(rng.choice(VOICE_PROGRAMS)), pan=(48, 80)),
        "drums": stem(drum_groove(chorale, rng), int(rng.choice(DRUM_KITS)), pan=(60, 68), reverb=(10, 50), drums=True),
        "bass": stem(voiced(["bass"], octave=-1), int(rng.choice(BASS_PROGRAMS)), pan=(56, 72), reverb=(0, 30)),
        "other": stem(voiced(["alto", "tenor"]), int(rng.choice(OTHER_PROGRAMS))),
    }


def write_midi(stem, bpm, path):
    """One stem as a type-0 MIDI file at `bpm` quarter notes per minute."""
    import mido

    ticks = 480
    channel = DRUM_CHANNEL if stem.drums else 0
    events = []
    for note in stem.notes:
        start = round(note.start * ticks)
        stop = max(start + 1, round((note.start + note.length) * ticks) - (ticks // 16 if stem.drums else 0))
        events += [(start, 1, "note_on", note.pitch, note.velocity), (stop, 0, "note_off", note.pitch, 0)]
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    track.append(mido.Message("program_change", program=stem.program, channel=channel))
    track.append(mido.Message("control_change", control=10, value=stem.pan, channel=channel))
    track.append(mido.Message("control_change", control=91, value=stem.reverb, channel=channel))
    track.append(mido.Message("control_change", control=93, value=0, channel=channel))
    now = 0
    for tick, _, kind, pitch, velocity in sorted(events):
        track.append(mido.Message(kind, note=pitch, velocity=velocity, time=tick - now, channel=channel))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=ticks)
    midi.tracks.append(track)
    midi.save(path)


def render_midi(fluidsynth, midi_path, soundfont, room, wav_path):
    """Render a MIDI file to float32 stereo (samples, 2) at 44.1 kHz with FluidSynth."""
    command = [
        fluidsynth, "-ni", "-q", "-F", str(wav_path), "-r", str(SAMPLE_RATE), "-O", "float", "-T", "wav",
        "-o", f"synth.reverb.room-size={room:.3f}", "-o", "synth.reverb.level=0.9",
        "-o", "synth.chorus.active=0", str(soundfont), str(midi_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not Path(wav_path).is_file():
        raise RenderError(f"FluidSynth failed on {midi_path}: {result.stderr.strip()[-300:]}")
    return audio.read(wav_path)[0]


def render_track(chorale, layout, rng, fluidsynth, soundfonts):
    """Render one chorale to int16 stems {name: (samples, 2)} whose sum fits in [-1, 1)."""
    bpm = rng.uniform(60.0, 110.0)
    room = rng.uniform(0.2, 0.9)
    stems = arrange(chorale, layout, rng, soundfonts)
    end_seconds = max(n.start + n.length for s in stems.values() for n in s.notes) * 60.0 / bpm
    length = int((end_seconds + 1.5) * SAMPLE_RATE)  # FluidSynth renders the tails until silence: trim
    rendered = {}
    with tempfile.TemporaryDirectory(prefix="tfsep-render-") as folder:
        for name, stem in stems.items():
            write_midi(stem, bpm, Path(folder) / f"{name}.mid")
            signal = render_midi(fluidsynth, Path(folder) / f"{name}.mid", stem.soundfont, room,
                                 Path(folder) / f"{name}.wav")[:length]
            signal = np.pad(signal, [(0, length - len(signal)), (0, 0)])
            rms = np.sqrt(np.mean(signal**2))
            if rms == 0:
                raise RenderError(f"{chorale.name}: the {name} stem rendered silent with {stem.soundfont.name}")
            rendered[name] = signal / rms * 10 ** (rng.uniform(-9.0, 0.0) / 20)
    fade = np.linspace(1.0, 0.0, SAMPLE_RATE // 20)[:, None]
    for signal in rendered.values():
        signal[-len(fade):] *= fade
    peak = np.abs(sum(rendered.values())).max()
    scale = rng.uniform(0.5, 0.9) / peak * 32768
    quantized = {name: np.round(signal * scale).clip(-32768, 32767).astype(np.int16) for name, signal in rendered.items()}
    return quantized


def write_track(folder, stems):
    """Write int16 stems as 16-bit wavs and their exact sum as a 24-bit `mixture.wav`, atomically."""
    partial = folder.with_name(f".{folder.name}.part")
    shutil.rmtree(partial, ignore_errors=True)
    for name, stem in stems.items():
        audio.write(partial / f"{name}.wav", stem, SAMPLE_RATE, subtype="PCM_16")
    mixture = sum(stem.astype(np.int32) for stem in stems.values())
    if np.abs(mixture).max() > 32767:
        raise RenderError(f"{folder.name}: the mixture clips")
    audio.write(partial / "mixture.wav", mixture * 65536, SAMPLE_RATE, subtype="PCM_24")  # 24 high bits of int32
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def split_sizes(tracks):
    """(train, valid, test) counts: 10 % each for valid and test, at least one each from 3 tracks on."""
    if tracks < 3:
        return tracks - (tracks == 2), 0, int(tracks == 2)
    held_out = max(1, round(0.1 * tracks))
    return tracks - 2 * held_out, held_out, held_out


def plan(tracks, seed, progress=True):
    """[(split, index, chorale)] for every track, from the corpus shuffled by `seed`.

    Test and valid tracks get distinct chorales that never appear in train; train tracks
    reuse their own chorales (with new randomisation) once the corpus runs out.
    """
    paths = chorale_paths()
    np.random.default_rng(seed).shuffle(paths)
    train, valid, test = split_sizes(tracks)
    chorales = []
    with tqdm(total=tracks, desc="reading chorales", unit="chorale", disable=not progress) as bar:
        for path in paths:
            if len(chorales) == tracks:
                break
            chorale = load_chorale(path)
            if chorale is not None:
                chorales.append(chorale)
                bar.update()
    held_out = valid + test
    if len(chorales) <= held_out and train:
        raise RenderError(f"{tracks} tracks need more four-part chorales than the corpus has")
    splits = ["test"] * test + ["valid"] * valid + ["train"] * train
    pool = chorales[held_out:]
    return [
        (split, index, chorales[index] if index < held_out else pool[(index - held_out) % len(pool)])
        for index, split in enumerate(splits)
    ]


def render_dataset(out, layout="band", tracks=10, seed=0, jobs=2, progress=True):
    """Render `tracks` tracks of `layout` into `out`; tracks already rendered with the same settings are kept.

    Returns the track folders, in track order.
    """
    if layout not in LAYOUTS:
        raise RenderError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    if tracks < 1:
        raise RenderError(f"--tracks must be at least 1, got {tracks}")
    fluidsynth, soundfonts = find_fluidsynth(), find_soundfonts()
    out = Path(out)
    settings = {"layout": layout, "tracks": tracks, "seed": seed, "stems": list(LAYOUTS[layout]),
                "sample_rate": SAMPLE_RATE, "soundfonts": [font.name for font in soundfonts]}
    manifest = out / "render.json"
    if manifest.is_file() and json.loads(manifest.read_text()) != settings:
        raise RenderError(f"{out} holds a render with other settings ({manifest}); choose another folder")
    if not manifest.is_file() and out.is_dir() and any(out.iterdir()):
        raise RenderError(f"{out} is not empty and holds no tfsep render; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(settings, indent=2))

    def render_one(job):
        split, index, chorale = job
        folder = out / split / f"{index:04d}_{chorale.name}"
        if not (folder / "mixture.wav").is_file():
            rng = np.random.default_rng([seed, index])
            write_track(folder, render_track(chorale, layout, rng, fluidsynth, soundfonts))
        return folder

    jobs_list = plan(tracks, seed, progress)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(render_one, jobs_list)
        return list(tqdm(results, total=len(jobs_list), desc=f"rendering {layout}", unit="track", disable=not progress))
