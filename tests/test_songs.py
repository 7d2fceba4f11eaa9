"""Song sources: freedoom's WADs and MIDI channels, chorales, folk tunes, mma grooves and harmonisation."""

import io
import shutil
import struct

import numpy as np
import pytest

from tfsep.corpus import SongError, songs

music21 = pytest.importorskip("music21", reason="needs the render extra: pip install tfsep[render]")
needs_mma = pytest.mark.skipif(shutil.which("mma") is None, reason="needs mma (apt-get install mma)")


def midi_bytes(channels, bpm=120):
    """A type-1 MIDI file: {channel: (program, [(start beat, length beats, pitch)])}, one track each."""
    import mido

    midi = mido.MidiFile(ticks_per_beat=96)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))]))
    for channel, (program, notes) in channels.items():
        events = [(0, mido.Message("program_change", program=program, channel=channel))]
        for start, length, pitch in notes:
            events += [(round(start * 96), mido.Message("note_on", note=pitch, velocity=100, channel=channel)),
                       (round((start + length) * 96), mido.Message("note_off", note=pitch, channel=channel))]
        track, now = mido.MidiTrack(), 0
        for tick, message in sorted(events, key=lambda e: (e[0], e[1].type != "note_off")):
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def write_wad(path, lumps):
    """A Doom WAD: 12-byte header, the lumps, then the directory of 16-byte entries."""
    body, directory, offset = b"", b"", 12
    for name, data in lumps.items():
        directory += struct.pack("<ii8s", offset + len(body), len(data), name.encode())
        body += data
    path.write_bytes(struct.pack("<4sii", b"IWAD", len(lumps), 12 + len(body)) + body + directory)


@pytest.fixture
def wad(tmp_path):
    scale = [(i * 0.5, 0.5, 72 + (0, 2, 4, 5, 7, 9, 11, 12)[i % 8]) for i in range(32)]
    song = midi_bytes({
        9: (0, [(i * 0.5, 0.25, (36, 42, 38, 42)[i % 4]) for i in range(32)]),
        1: (33, [(i, 1, 36 + i % 5) for i in range(16)]),  # electric bass
        2: (80, scale + [(s, n, p - 12) for s, n, p in scale[::2]]),  # the lead, doubled below on some notes
        3: (0, [(i * 2, 2, p) for i in range(8) for p in (60, 64, 67)]),  # piano chords
    })
    path = tmp_path / "freedoom9.wad"
    write_wad(path, {"MAP01": b"\0" * 20, "D_RUNNIN": song, "D_BROKEN": b"MThd\0\0\0\6garbage"})
    return path


def test_wad_lumps_hold_the_midi_songs(wad):
    lumps = songs.wad_lumps(wad)
    assert list(lumps) == ["MAP01", "D_RUNNIN", "D_BROKEN"] and lumps["D_RUNNIN"][:4] == b"MThd"
    refs = songs.freedoom_refs([str(wad)])
    assert [(r.name, r.index) for r in refs] == [("freedoom9_runnin", 1), ("freedoom9_broken", 2)]


def test_a_general_midi_song_splits_by_channel_into_stems(wad):
    ref = songs.freedoom_refs([str(wad)])[0]
    song = songs.load(ref, np.random.default_rng(0))
    drums, bass, vocals, other = (song.parts[r] for r in ("drums", "bass", "vocals", "other"))
    assert [p.drums for p in drums] == [True] and len(drums[0].notes) == 32
    assert [p.program for p in bass] == [33] and {n.pitch for n in bass[0].notes} == set(range(36, 41))
    assert [n.pitch for n in vocals[0].notes][:8] == [72, 74, 76, 77, 79, 81, 83, 84]  # the top line only
    assert len(vocals[0].notes) == 32
    assert sorted(p.program for p in other) == [0, 80]  # the chords, and the lead's doubling below
    assert vocals[0].notes[1].start == pytest.approx(0.25)  # 120 bpm: half a beat is 0.25 s
    assert song.seconds == pytest.approx(8.0)


def test_a_broken_midi_lump_is_a_song_error(wad):
    broken = songs.freedoom_refs([str(wad)])[1]
    with pytest.raises(SongError, match="does not parse"):
        songs.load(broken, np.random.default_rng(0))


def test_songs_are_cut_at_max_seconds(wad):
    song = songs.load(songs.freedoom_refs([str(wad)])[0], np.random.default_rng(0), max_seconds=3.0)
    assert song.seconds == 3.0
    assert max(n.start for parts in song.parts.values() for p in parts for n in p.notes) < 3.0


def test_harmonize_picks_the_triad_of_the_notes():
    spans = [(0.0, 4.0), (4.0, 4.0), (8.0, 4.0), (12.0, 4.0)]
    notes = [(0, 1, 60), (1, 1, 64), (2, 2, 67), (4, 2, 65), (6, 2, 69), (8, 2, 67), (10, 2, 71), (12, 2, 69),
             (14, 2, 64)]
    assert songs.harmonize(notes, spans, (0, False)) == ["C", "F", "G", "Am"]
    assert songs.harmonize([(0, 4, 57), (0, 4, 60), (0, 4, 64)], [(0.0, 4.0)], (9, True)) == ["Am"]


def test_drum_groove_follows_the_meter():
    bars = [(3.0 * i, 3.0, 3, 1.0) for i in range(4)]
    notes = songs.drum_groove(bars, 12.0, np.random.default_rng(0))
    kicks = {s for s, _, p, _ in notes if p == songs.KICK and s % 1 == 0}
    snares = {s % 3 for s, _, p, _ in notes if p == songs.SNARE}
    assert {0.0, 3.0, 6.0} <= kicks
    assert snares <= {1.0, 2.0}  # never on the downbeat in 3/4
    assert max(s for s, *_ in notes) < 12.0


def test_chorales_give_band_and_satb_parts():
    ref = next(r for r in songs.chorale_refs() if r.name == "chorale_bwv10_7")  # it has lyrics
    satb = songs.load(ref, np.random.default_rng(0), layout="satb")
    assert list(satb.parts) == list(songs.VOICES)
    band = songs.load(ref, np.random.default_rng(0))
    assert set(band.parts) == set(songs.BAND)
    vocals = band.parts["vocals"][0]
    assert len(vocals.lyrics) == len(vocals.notes) and any(vocals.lyrics)
    assert max(n.start for parts in band.parts.values() for p in parts for n in p.notes) < band.seconds
    soprano, bass = satb.parts["soprano"][0].notes, satb.parts["bass"][0].notes
    assert np.mean([n.pitch for n in soprano]) > np.mean([n.pitch for n in bass]) + 12
    with pytest.raises(SongError, match="only chorales"):
        songs.load(songs.SongRef("freedoom", "x.wad", 0, "x"), np.random.default_rng(0), layout="satb")


@needs_mma
def test_mma_accompanies_a_chart_in_time():
    groove = next(g for g in songs.grooves() if g[0].lower() == "50srock")
    parts = songs.accompany(["1 C", "2 G7", "3 Am", "4 F"], groove, 120.0, 100.0, seed=1)
    assert all(parts[role] for role in ("drums", "bass", "other"))
    onsets = [n.start for p in parts["drums"] for n in p.notes]
    assert min(onsets) < 0.05 and max(onsets) < 8.0  # four 4/4 bars at 120 bpm last 8 s
    bass = [n.pitch % 12 for p in parts["bass"] for n in p.notes if n.start < 0.1]
    assert bass and bass[0] in (0, 4, 7)  # the first bar's bass plays the C chord


@needs_mma
def test_mma_s_own_random_choices_follow_the_seed():
    """A groove that picks its patterns at random (SeqRnd) plays the same notes for the same seed, whatever the
    process, and other notes for another seed."""
    groove = next(g for g in songs.grooves() if g[0] == "BigBandSusPlus")
    chart = [f"{bar} C" for bar in range(1, 17)]
    notes = [[(n.start, n.pitch) for role in ("drums", "bass", "other") for p in songs.accompany(
        chart, groove, 100.0, 40.0, seed=seed)[role] for n in p.notes] for seed in (7, 7, 8)]
    assert notes[0] == notes[1] != notes[2]


@needs_mma
def test_a_folk_tune_becomes_a_melody_over_a_groove():
    refs = songs.folk_refs()
    grooves = songs.grooves()
    ref = next(r for r in refs if r.name == "folk_7thRegimentReel_0000")
    song = songs.load(ref, np.random.default_rng(1), grooves)
    assert set(song.parts) == set(songs.BAND) and song.seconds >= 20.0
    vocals = song.parts["vocals"][0].notes
    assert len({n.start for n in vocals}) == len(vocals)  # monophonic
    assert song.info["groove"] in {g[0] for g in grooves}


def test_stable_fraction_depends_on_the_name_alone():
    assert songs.stable_fraction("chorale_bwv1_6") == songs.stable_fraction("chorale_bwv1_6")
    values = [songs.stable_fraction(f"song{i}") for i in range(2000)]
    assert 0.08 < np.mean(np.array(values) < 0.1) < 0.12
