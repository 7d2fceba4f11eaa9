"""Instruments: soundfont presets, Hydrogen kits played from their samples, and espeak-ng singing."""

import shutil

import numpy as np
import pytest

from tfsep import audio
from tfsep.corpus import RenderError, singing, songs, timbres

RATE = 44100


def test_presets_are_read_from_the_soundfont_headers():
    font = next((f for f in timbres.soundfonts() if f.name == "TimGM6mb"), None)
    if font is None:
        pytest.skip("needs timgm6mb-soundfont")
    assert (0, 0) in font.presets and (0, 33) in font.presets and font.drum_kits()[0] == 0
    assert font.programs(range(128)) == list(range(128))
    large = next((f for f in timbres.soundfonts() if f.path.stat().st_size >= 64 << 20), None)
    if large is not None:  # read by walking the RIFF chunks, not the samples
        assert timbres.read_pdta(large.path)[:4] == b"phdr" and (0, 0) in large.presets


def test_a_file_that_is_not_a_soundfont_is_refused(tmp_path):
    path = tmp_path / "fake.sf2"
    path.write_bytes(b"RIFF\0\0\0\0sfbk" + b"\0" * 64)
    with pytest.raises(RenderError, match="not a soundfont"):
        timbres.presets(path)


@pytest.fixture
def kit(tmp_path):
    """A two-instrument Hydrogen kit: a kick with two velocity layers and a hi-hat, panned left."""
    clicks = {"kick-soft.wav": 0.2, "kick-hard.wav": 0.9, "hat.wav": 0.5}
    for name, level in clicks.items():
        audio.write(tmp_path / name, np.full((441, 1), level, np.float32), 22050)
    (tmp_path / "drumkit.xml").write_text("""<?xml version="1.0"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit"><name>Test</name><instrumentList>
 <instrument><id>0</id><name>Kick</name><volume>1</volume><pan_L>1</pan_L><pan_R>1</pan_R><gain>1</gain>
  <layer><filename>kick-soft.wav</filename><min>0</min><max>0.5</max><gain>1</gain></layer>
  <layer><filename>kick-hard.wav</filename><min>0.5</min><max>1</max><gain>1</gain></layer></instrument>
 <instrument><id>1</id><name>Closed HH</name><volume>1</volume><pan_L>1</pan_L><pan_R>0</pan_R><gain>1</gain>
  <layer><filename>hat.wav</filename><min>0</min><max>1</max><gain>1</gain></layer></instrument>
</instrumentList></drumkit_info>""")
    return timbres.HydrogenKit(tmp_path)


def test_hydrogen_kits_map_general_midi_notes_by_name(kit):
    assert kit.mapping[36] == 0 and kit.mapping[42] == 1 and kit.mapping[44] == 1  # pedal hat: a closed hat


def test_hydrogen_kits_play_the_velocity_layer_at_the_note(kit):
    notes = [songs.Note(0.5, 0.1, 36, 127), songs.Note(1.0, 0.1, 36, 40), songs.Note(1.5, 0.1, 42, 127)]
    out = kit.play(notes, 2 * RATE)
    assert out.shape == (2 * RATE, 2) and not out[: RATE // 2].any()
    hard, soft, hat = out[RATE // 2 + 10], out[RATE + 10], out[3 * RATE // 2 + 10]
    np.testing.assert_allclose(hard, [0.9, 0.9], atol=0.02)
    np.testing.assert_allclose(soft, [0.2 * 40 / 127] * 2, atol=0.02)
    assert hat[0] == pytest.approx(0.5, abs=0.02) and hat[1] == 0  # panned hard left
    assert len(np.flatnonzero(out[:, 0] > 0.01)) == pytest.approx(3 * 882, rel=0.05)  # 441 samples at 22.05 kHz


def test_installed_hydrogen_kits_have_a_kick_and_a_snare():
    kits = [k for k in timbres.drum_kits(timbres.soundfonts()) if k.kind == "hydrogen"]
    if not kits:
        pytest.skip("needs hydrogen-drumkits")
    for kit in kits:
        played = timbres.HydrogenKit(kit.path)
        assert {36, 38, 42} <= set(played.mapping), kit.name


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="needs espeak-ng (apt-get install espeak-ng)")


def fundamental(x):
    """The fundamental frequency by harmonic sum over an 8192-sample window in the middle."""
    window = x[len(x) // 4: len(x) // 4 + 8192] * np.hanning(8192)
    spectrum = np.abs(np.fft.rfft(window, 1 << 18))
    frequencies = np.fft.rfftfreq(1 << 18, 1 / RATE)
    candidates = np.arange(80.0, 700.0, 0.5)
    score = [sum(np.interp(k * c, frequencies, spectrum) for k in (1, 2, 3)) for c in candidates]
    return candidates[int(np.argmax(score))]


@needs_espeak
@pytest.mark.parametrize("variant,pitch", [("m1", 57), ("m1", 64), ("f2", 69), ("f2", 76)])
def test_espeak_sings_each_note_at_its_pitch(variant, pitch):
    with singing.Singer(variant, "en") as singer:
        sound = singer.syllable("laa", pitch, 0.6)
    cents = 1200 * np.log2(fundamental(sound) / singing.hertz(pitch))
    assert abs(cents) < 50, f"{cents:.0f} cents off"


@needs_espeak
def test_a_sung_line_places_each_note_at_its_start():
    notes = [songs.Note(0.5 + i, 0.4, 60, 100) for i in range(4)]
    with singing.Singer("m2", "en") as singer:
        sung = singer.sing(notes, ("la", "di", "da", "mo"), 5 * RATE, np.random.default_rng(0))
    active = np.abs(sung) > 0.01
    for note in notes:
        start, stop = int(note.start * RATE), int((note.start + note.length) * RATE)
        assert active[start: start + RATE // 20].any() and not active[stop + 10: stop + RATE // 2].any()
    assert not active[: RATE // 2].any()
