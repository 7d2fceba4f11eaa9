"""Songs to render, as notes per stem role, from the freely redistributable music on the machine.

Three song sources:

- `chorale`: Bach's four-part chorales in music21's corpus, either as written (soprano sung or
  on a voice patch, bass an octave down, alto and tenor as "other", a drum groove in their
  meter) or with the soprano over an `mma` groove whose chords come from the chorale's harmony;
- `folk`: folk tunes in music21's corpus (the Essen collection, Ryan's Mammoth Collection,
  O'Neill's 1850) as melodies over `mma` grooves, with chords from a harmonisation of each bar;
- `freedoom`: the General MIDI songs of Debian's `freedoom` (BSD), split by channel: channel 10
  drums, programs 32-39 bass, the lead line vocals and the rest other.

A `SongRef` names a song without parsing it, so that splits can be planned over the whole
catalog; `load(ref, rng)` parses it into a `Song` with randomised tempo and transposition.
Every time is in seconds.
"""

import functools
import io
import os
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfsep import names
from tfsep.corpus.errors import RenderError, SongError
from tfsep.corpus.tools import find_tool

BAND = ("vocals", "drums", "bass", "other")
VOICES = ("soprano", "alto", "tenor", "bass")
LAYOUTS = dict(zip(names.LAYOUTS, (BAND, VOICES)))  # layout -> its stems
FREEDOOM_WADS = ("/usr/share/games/doom/freedoom1.wad", "/usr/share/games/doom/freedoom2.wad")
MMA_LIBRARY = Path("/usr/share/mma/lib")
FOLK_COLLECTIONS = ("essenFolksong", "ryansMammoth", "oneills1850")
DRUM_CHANNEL = 9
BASS_PROGRAMS = tuple(range(32, 40))  # General MIDI's basses (0-based)
KICK, SNARE, CLOSED_HAT, PEDAL_HAT, RIDE, CRASH, TOMS = 36, 38, 42, 44, 51, 49, (50, 48, 47, 45)
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Diatonic triads as (degree in semitones, quality, pitch classes from the tonic), with a prior.
MAJOR_TRIADS = ((0, "", (0, 4, 7), 0.3), (5, "", (5, 9, 0), 0.2), (7, "", (7, 11, 2), 0.25),
                (9, "m", (9, 0, 4), 0.1), (2, "m", (2, 5, 9), 0.05), (4, "m", (4, 7, 11), 0.0))
MINOR_TRIADS = ((0, "m", (0, 3, 7), 0.3), (5, "m", (5, 8, 0), 0.2), (7, "", (7, 11, 2), 0.25),
                (8, "", (8, 0, 3), 0.1), (3, "", (3, 7, 10), 0.05), (10, "", (10, 2, 5), 0.05))


@dataclass(frozen=True)
class Note:
    """A note: `start` and `length` in seconds, MIDI `pitch` and `velocity`."""

    start: float
    length: float
    pitch: int
    velocity: int = 90


@dataclass(frozen=True)
class Part:
    """One instrument's notes, its General MIDI `program` (0-based), and a syllable per note if sung."""

    notes: tuple
    program: int
    drums: bool = False
    lyrics: tuple = ()


@dataclass(frozen=True)
class Song:
    """A song ready to render: parts per stem role, its length in seconds, and what it was made of."""

    name: str
    source: str
    parts: dict
    seconds: float
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SongRef:
    """A song in the catalog: its `source`, where it lives (`path`, tune `index`) and a unique `name`."""

    source: str
    path: str
    index: int
    name: str


# ---------------------------------------------------------------- the catalog


def music21_corpus():
    try:
        from music21 import corpus
    except ImportError:
        raise RenderError("music21 is not installed: install it with `pip install tfsep[render]`") from None
    return corpus


def chorale_refs():
    """The Bach chorales of music21's corpus, in a fixed order."""
    paths = sorted(str(path) for path in music21_corpus().getComposer("bach"))
    return [SongRef("chorale", path, 0, "chorale_" + Path(path).stem.replace(".", "_")) for path in paths]


def folk_refs():
    """Every tune (one `X:` header each) of the ABC folk collections in music21's corpus."""
    refs = []
    for path in sorted(str(p) for p in music21_corpus().getPaths() if Path(p).parent.name in FOLK_COLLECTIONS):
        text = Path(path).read_text(errors="replace")
        for index in range(text.count("\nX:") + text.startswith("X:")):
            refs.append(SongRef("folk", path, index, f"folk_{Path(path).stem}_{index:04d}"))
    return refs


@functools.lru_cache(maxsize=None)
def wad_lumps(path):
    """{name: bytes} of the lumps of a Doom WAD: a 12-byte header and a table of 16-byte entries."""
    data = Path(path).read_bytes()
    kind, count, offset = struct.unpack("<4sii", data[:12])
    if kind not in (b"IWAD", b"PWAD"):
        raise SongError(f"{path} is not a WAD file")
    lumps = {}
    for entry in range(count):
        start, size, name = struct.unpack("<ii8s", data[offset + 16 * entry: offset + 16 * entry + 16])
        lumps[name.rstrip(b"\0").decode("ascii", "replace")] = data[start: start + size]
    return lumps


def freedoom_refs(wads=FREEDOOM_WADS):
    """The standard MIDI music lumps (`D_*`, starting with `MThd`) of the freedoom WADs installed."""
    refs = []
    for wad in wads:
        if Path(wad).is_file():
            for index, (name, data) in enumerate(wad_lumps(wad).items()):
                if name.startswith("D_") and data[:4] == b"MThd":
                    refs.append(SongRef("freedoom", wad, index, f"{Path(wad).stem}_{name[2:].lower()}"))
    return refs


def grooves(library=MMA_LIBRARY):
    """[(groove, beats per bar, library file)] of mma's groove library, without intros and endings."""
    found = []
    for path in sorted(Path(library).rglob("*.mma")):
        beats = 4
        for line in path.read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0].lower() == "time" and words[1].isdigit():
                beats = int(words[1])
            elif len(words) >= 2 and words[0].lower() == "defgroove":
                name = words[1]
                if beats in (3, 4) and not any(tag in name.lower() for tag in ("intro", "end", "fill")):
                    found.append((name, beats, str(path.relative_to(library))))
    return found


def stable_fraction(name):
    """A number in [0, 1) fixed by `name` alone, for splits that do not depend on a seed."""
    return zlib.crc32(name.encode()) / 2**32


# ---------------------------------------------------------------- chorales and folk tunes


def score_notes(part, transpose=0):
    """[(start, length, pitch, lyric)] in quarter notes from a music21 part, ties joined."""
    notes = []
    for element in part.stripTies().flatten().notes:
        length = float(element.quarterLength)
        if length > 0:
            for pitch in element.pitches:
                notes.append((float(element.offset), length, pitch.midi + transpose, element.lyric or ""))
    return notes


def bars_of(part):
    """[(start, length, beats, beat length)] in quarter notes, one per measure of a music21 part."""
    from music21 import meter, stream

    signature = next(iter(part.recurse().getElementsByClass(meter.TimeSignature)), None)
    beats, beat = (signature.numerator, 4.0 / signature.denominator) if signature else (4, 1.0)
    bars = []
    for measure in part.getElementsByClass(stream.Measure):
        if measure.timeSignature is not None:
            beats, beat = measure.timeSignature.numerator, 4.0 / measure.timeSignature.denominator
        bars.append((float(measure.offset), float(measure.duration.quarterLength), beats, beat))
    return bars


def drum_groove(bars, end, rng):
    """Drum notes in quarters in the given meter: hats or ride, kick and backbeat, a fill every 4 bars."""
    subdivision = int(rng.choice([1, 2, 4]))
    cymbal = int(rng.choice([CLOSED_HAT, CLOSED_HAT, PEDAL_HAT, RIDE]))
    extra_kicks = rng.uniform(0.0, 0.3)
    notes = []
    for index, (bar_start, bar_length, beats, beat) in enumerate(bars):
        nominal = bar_start + bar_length - beats * beat  # a pickup bar starts before its first note
        fill = index % 4 == 3 and rng.random() < 0.6
        for b in range(beats):
            for step in range(subdivision):
                time = nominal + (b + step / subdivision) * beat
                if time < bar_start - 1e-6 or time >= min(end, bar_start + bar_length) - 1e-6:
                    continue
                length = beat / subdivision
                if fill and b == beats - 1:
                    notes.append((time, length, TOMS[step % len(TOMS)], int(rng.integers(80, 115))))
                    continue
                notes.append((time, length, cymbal, int(rng.integers(55, 75)) + (20 if step == 0 else 0)))
                if step == 0 and (b == 0 or (beats % 2 == 0 and b == beats // 2)):
                    notes.append((time, length, KICK, int(rng.integers(90, 115))))
                elif step == 0 and (b % 2 == 1 if beats != 3 else b > 0):
                    notes.append((time, length, SNARE, int(rng.integers(80, 110))))
                elif rng.random() < extra_kicks:
                    notes.append((time, length, KICK, int(rng.integers(70, 95))))
        if index % 4 == 0 and bar_length == beats * beat:
            notes.append((bar_start, beat, CRASH, int(rng.integers(80, 110))))
    return notes


def in_seconds(notes, bpm, rng, offset=0.0, velocity=None):
    """Notes in quarters ((start, length, pitch[, lyric or velocity])) as `Note`s in seconds."""
    scale = 60.0 / bpm
    result = []
    for start, length, pitch, *rest in notes:
        level = rest[0] if rest and isinstance(rest[0], int) else (velocity or int(rng.integers(70, 110)))
        result.append(Note((start - offset) * scale, length * scale, int(np.clip(pitch, 0, 127)), level))
    return tuple(result)


def melody_line(notes):
    """The top note at each onset, so that a melody is monophonic."""
    top = {}
    for note in notes:
        if note[0] not in top or note[2] > top[note[0]][2]:
            top[note[0]] = note
    return sorted(top.values())


def harmonize(notes, spans, key):
    """A chord name per (start, length) span, in quarters: the diatonic triad covering most of the notes."""
    tonic, minor = key
    chords = []
    for start, length in spans:
        weight = np.zeros(12)
        for note_start, note_length, pitch, *_ in notes:
            overlap = min(start + length, note_start + note_length) - max(start, note_start)
            if overlap > 0:
                weight[pitch % 12] += overlap * (1.5 if abs(note_start - start) < 1e-6 else 1.0)
        total = weight.sum() or 1.0
        best = max(MINOR_TRIADS if minor else MAJOR_TRIADS,
                   key=lambda triad: weight[[(tonic + pc) % 12 for pc in triad[2]]].sum() / total + triad[3])
        chords.append(NOTE_NAMES[(tonic + best[0]) % 12] + best[1])
    return chords


def chart(bars, notes, key, beats, rng):
    """mma chart lines for `bars` ((start, length) in quarters): one or two chords per bar."""
    lines = []
    for number, (start, length) in enumerate(bars, 1):
        halves = 2 if beats == 4 and rng.random() < 0.5 else 1
        spans = [(start + k * length / halves, length / halves) for k in range(halves)]
        names = harmonize(notes, spans, key)
        slots = [names[0]] + ["/"] * (beats - 1)
        if halves == 2:
            slots[beats // 2] = names[1]
        lines.append(f"{number} {' '.join(slots)}")
    return lines


def accompany(lines, groove, bpm, seconds, seed, library=MMA_LIBRARY):
    """Run mma on a chart with `groove` (name, beats, library file); returns {role: [Part]} for drums,
    bass and other, cut at `seconds`. The groove file is loaded by path (`Use`), so mma needs no
    groove index (`mma -G`) and a name that two libraries share means the file chosen. mma's own
    random choices (grooves with `SeqRnd`, random timing and volume) draw from `seed` (`RndSeed`),
    and its Python runs with a fixed hash seed, so the same call gives the same notes.

    Channel 10 is drums; mma's bass tracks (named Bass... or Walk...) and programs 32-39 are
    bass; the rest is other.
    """
    import mido

    name, _, file = groove
    text = "\n".join([f"RndSeed {seed}", f"Tempo {bpm:.2f}", f"Use {Path(library) / file}", f"Groove {name}",
                      *lines, ""])
    with tempfile.TemporaryDirectory(prefix="tfsep-mma-") as folder:
        source, midi = Path(folder) / "song.mma", Path(folder) / "song.mid"
        source.write_text(text)
        result = subprocess.run([find_tool("mma"), str(source), "-f", str(midi)], capture_output=True, text=True,
                                env={**os.environ, "PYTHONHASHSEED": "0"})
        if result.returncode != 0 or not midi.is_file():
            raise SongError(f"mma failed with groove {name}: {(result.stdout + result.stderr).strip()[-200:]}")
        data = midi.read_bytes()
    channels, programs = midi_channels(data, seconds)
    named = {message.channel: track.name for track in mido.MidiFile(file=io.BytesIO(data)).tracks
             for message in track if hasattr(message, "channel")}
    parts = {"drums": [], "bass": [], "other": []}
    for channel, notes in channels.items():
        bass = programs.get(channel, 0) in BASS_PROGRAMS or named.get(channel, "").lower().startswith(("bass", "walk"))
        role = "drums" if channel == DRUM_CHANNEL else "bass" if bass else "other"
        parts[role].append(Part(tuple(notes), programs.get(channel, 0), drums=role == "drums"))
    return parts


def key_of(score):
    """(tonic pitch class, minor) of a music21 score, by its key signature or Krumhansl's analysis."""
    key = score.analyze("key")
    return key.tonic.pitchClass, key.mode == "minor"


def with_groove(melody, bars, key, rng, groove_pool, bpm, seconds, tries=4):
    """Drums, bass and other from an mma groove in the melody's meter, with chords from `melody`.

    Grooves are drawn until one plays drums, bass and other (some have no drums or no bass).
    """
    beats = int(round(bars[0][1])) if bars else 4
    pool = [g for g in groove_pool if g[1] == (3 if beats == 3 else 4)]
    if not pool:
        raise SongError(f"no mma groove in {beats}/4 for this split")
    for _ in range(tries):
        groove = pool[int(rng.integers(len(pool)))]
        band = accompany(chart(bars, melody, key, groove[1], rng), groove, bpm, seconds, int(rng.integers(2**31)))
        if all(sum(len(p.notes) for p in band[role]) >= 8 for role in band):
            return band, groove
    raise SongError(f"{tries} mma grooves in a row lacked drums, bass or other")


def chorale(ref, rng, groove_pool, max_seconds, layout="band"):
    """A chorale as written, or (in `band`, with probability 0.4) its soprano over an mma groove of its harmony.

    `layout` "satb" gives the four voices as they are.
    """
    from music21 import converter

    score = converter.parse(ref.path)
    parts = {p.partName.strip().lower(): p for p in score.parts if p.partName}
    if not set(VOICES) <= set(parts):
        raise SongError(f"{ref.name} has no Soprano, Alto, Tenor and Bass parts")
    transpose = int(rng.integers(-5, 6))
    voices = {voice: score_notes(parts[voice], transpose) for voice in VOICES}
    bars = bars_of(parts["soprano"])
    bpm = rng.uniform(60.0, 110.0)
    seconds = min(max_seconds, max(s + n for notes in voices.values() for s, n, *_ in notes) * 60.0 / bpm)
    soprano = voices["soprano"]
    lyrics = tuple(lyric for *_, lyric in soprano)
    vocals = Part(in_seconds(soprano, bpm, rng), 52, lyrics=lyrics if any(lyrics) else ())
    info = {"bpm": round(bpm, 2), "transpose": transpose}
    full = [(s, n) for s, n, beats, beat in bars if abs(n - beats * beat) < 1e-6]
    if layout == "satb":
        return Song(ref.name, ref.source, {v: [Part(in_seconds(voices[v], bpm, rng), 0)] for v in VOICES}, seconds,
                    info)
    if groove_pool and rng.random() < 0.4 and full:
        start = full[0][0]
        moved = [(s - start, n) for s, n in full]
        everything = [(s - start, n, p) for notes in voices.values() for s, n, p, _ in notes if s >= start]
        band, groove = with_groove(everything, moved, key_of(score.transpose(transpose)), rng, groove_pool, bpm,
                                   seconds)
        vocals = Part(in_seconds([n for n in soprano if n[0] >= start], bpm, rng, offset=start), 52,
                      lyrics=tuple(lyric for s, *_, lyric in soprano if s >= start) if any(lyrics) else ())
        info["groove"] = groove[0]
        return Song(ref.name, ref.source, {"vocals": [vocals], **band}, seconds, info)
    end = max(s + n for s, n, *_ in soprano)
    result = {
        "vocals": [vocals],
        "drums": [Part(in_seconds(drum_groove(bars, end, rng), bpm, rng), 0, drums=True)],
        "bass": [Part(in_seconds([(s, n, p - 12) for s, n, p, _ in voices["bass"]], bpm, rng), 32)],
        "other": [Part(in_seconds(voices[v], bpm, rng), 0) for v in ("alto", "tenor")],
    }
    return Song(ref.name, ref.source, result, seconds, info)


def tune_text(ref):
    """The ABC text of tune number `ref.index` in its file (its `X:` header and body)."""
    text = "\n" + Path(ref.path).read_text(errors="replace")
    chunks = text.split("\nX:")[1:]
    if ref.index >= len(chunks):
        raise SongError(f"{ref.name}: no tune {ref.index} in {ref.path}")
    return "X:" + chunks[ref.index]


def folk(ref, rng, groove_pool, max_seconds, layout="band"):
    """A folk tune's melody, sung or on a voice patch, over an mma groove harmonising each bar."""
    from music21 import converter

    try:
        score = converter.parse(tune_text(ref), format="abc")
    except Exception as error:  # music21 raises many kinds of errors on malformed ABC
        raise SongError(f"{ref.name}: the ABC tune does not parse ({type(error).__name__})") from None
    if not score.parts:
        raise SongError(f"{ref.name}: the tune has no notes")
    part = score.parts[0]
    bars = bars_of(part)
    full = [(s, n) for s, n, beats, beat in bars
            if abs(n - beats * beat) < 1e-6 and any(abs(n - q) < 1e-6 for q in (2, 3, 4))]
    if len(full) < 4:
        raise SongError(f"{ref.name}: fewer than 4 bars in 2/4, 3/4 or 4/4")
    if abs(full[0][1] - 2) < 1e-6:  # 2/4 bars go two to a 4-beat groove bar
        full = [(full[k][0], 4.0) for k in range(0, len(full) - 1, 2)]
    transpose = int(rng.integers(-5, 6))
    start, stop = full[0][0], full[-1][0] + full[-1][1]
    once = [(s - start, n, p) for s, n, p, _ in melody_line(score_notes(part, transpose)) if start <= s < stop]
    bpm = rng.uniform(70.0, 140.0)
    repeats = int(np.ceil(20.0 / ((stop - start) * 60.0 / bpm)))  # short tunes are played again, as folk tunes are
    melody = [(s + k * (stop - start), n, p) for k in range(repeats) for s, n, p in once]
    moved = [(s - start + k * (stop - start), n) for k in range(repeats) for s, n in full]
    seconds = min(max_seconds, repeats * (stop - start) * 60.0 / bpm)
    band, groove = with_groove(melody, moved, key_of(score.transpose(transpose)), rng, groove_pool, bpm, seconds)
    vocals = Part(in_seconds(melody, bpm, rng), 52)
    info = {"bpm": round(bpm, 2), "transpose": transpose, "groove": groove[0]}
    return Song(ref.name, ref.source, {"vocals": [vocals], **band}, seconds, info)


# ---------------------------------------------------------------- General MIDI songs


def midi_channels(data, seconds):
    """({channel: [Note]}, {channel: first program}) of a standard MIDI file's bytes, up to `seconds`."""
    import mido

    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
    except Exception as error:  # mido raises OSError, EOFError, KeyError... on corrupt files
        raise SongError(f"the MIDI file does not parse ({type(error).__name__}: {error})") from None
    now, sounding, channels, programs = 0.0, {}, {}, {}
    for message in midi:
        now += message.time
        if now >= seconds:
            break
        if message.type == "program_change":
            programs.setdefault(message.channel, message.program)
        elif message.type == "note_on" and message.velocity > 0:
            sounding[message.channel, message.note] = (now, message.velocity)
        elif message.type in ("note_on", "note_off") and (message.channel, message.note) in sounding:
            start, velocity = sounding.pop((message.channel, message.note))
            channels.setdefault(message.channel, []).append(Note(start, max(now - start, 0.01), message.note, velocity))
    for (channel, pitch), (start, velocity) in sounding.items():
        channels.setdefault(channel, []).append(Note(start, max(min(now, seconds) - start, 0.01), pitch, velocity))
    return {c: sorted(notes, key=lambda n: (n.start, n.pitch)) for c, notes in channels.items()}, programs


def lead_channel(channels):
    """The melodic channel most likely to carry the tune: high, busy and mostly one note at a time."""
    def score(channel):
        notes = channels[channel]
        onsets = len({round(n.start, 3) for n in notes})
        return onsets * (onsets / len(notes)) * np.mean([n.pitch for n in notes])

    return max(channels, key=score)


def freedoom(ref, rng, groove_pool, max_seconds, layout="band"):
    """A freedoom song, split by channel, from its first note on and at most `max_seconds` long."""
    data = list(wad_lumps(ref.path).values())[ref.index]
    channels, programs = midi_channels(data, 10_000.0)
    first = min((n.start for notes in channels.values() for n in notes), default=0.0)
    channels = {c: [Note(n.start - first, n.length, n.pitch, n.velocity)
                    for n in notes if n.start - first < max_seconds]
                for c, notes in channels.items()}
    channels = {c: notes for c, notes in channels.items() if notes}
    parts = {role: [] for role in BAND}
    if DRUM_CHANNEL in channels:
        parts["drums"].append(Part(tuple(channels.pop(DRUM_CHANNEL)), 0, drums=True))
    for channel in [c for c in channels if programs.get(c, 0) in BASS_PROGRAMS]:
        parts["bass"].append(Part(tuple(channels.pop(channel)), programs.get(channel, 0)))
    if not parts["bass"] and channels:  # no bass program: the lowest line below C3 plays the bass
        low = min(channels, key=lambda c: np.mean([n.pitch for n in channels[c]]))
        if np.mean([n.pitch for n in channels[low]]) < 48:
            parts["bass"].append(Part(tuple(channels.pop(low)), programs.get(low, 0)))
    if channels:
        lead = lead_channel(channels)
        notes = channels.pop(lead)
        tops = {(top[0], top[2]) for top in melody_line([(n.start, n.length, n.pitch) for n in notes])}
        parts["vocals"].append(Part(tuple(n for n in notes if (n.start, n.pitch) in tops), 52))
        rest = tuple(n for n in notes if (n.start, n.pitch) not in tops)
        if rest:
            parts["other"].append(Part(rest, programs.get(lead, 0)))
    parts["other"] += [Part(tuple(notes), programs.get(c, 0)) for c, notes in channels.items()]
    seconds = min(max_seconds, max(n.start + n.length for ps in parts.values() for p in ps for n in p.notes))
    return Song(ref.name, ref.source, parts, seconds, {"first_note": round(first, 3)})


LOADERS = {"chorale": chorale, "folk": folk, "freedoom": freedoom}


def load(ref, rng, groove_pool=(), max_seconds=45.0, layout="band"):
    """Parse `ref` into a `Song` of `layout`'s roles, at most `max_seconds` long; `SongError` if unusable."""
    if layout == "satb" and ref.source != "chorale":
        raise SongError(f"{ref.name}: only chorales have soprano, alto, tenor and bass")
    return cut(LOADERS[ref.source](ref, rng, groove_pool, max_seconds, layout))


def cut(song):
    """`song` without the notes that start after its end (`song.seconds`), lyrics kept in step."""
    parts = {}
    for role, role_parts in song.parts.items():
        parts[role] = []
        for part in role_parts:
            keep = [i for i, note in enumerate(part.notes) if note.start < song.seconds]
            lyrics = tuple(part.lyrics[i] for i in keep) if part.lyrics else ()
            parts[role].append(Part(tuple(part.notes[i] for i in keep), part.program, part.drums, lyrics))
    return Song(song.name, song.source, parts, song.seconds, song.info)
