"""One track: each stem's notes played by the split's instruments, produced and mixed, written whole.

Stems are played by FluidSynth from a soundfont, by a Hydrogen kit from its samples (`timbres`) or sung
by espeak-ng (`singing`), then produced (`production`) and quantized: 16-bit stems and their exact sum
as a 24-bit mixture, so mixture == sum of stems holds to the last bit once read back.
"""

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tfsep import audio, files
from tfsep.corpus import production, singing, songs
from tfsep.corpus.errors import RenderError, SongError
from tfsep.corpus.tools import SAMPLE_RATE

TAIL_SECONDS = 1.0
# General MIDI programs (0-based) per role.
VOICE_PROGRAMS = (52, 53, 54, 85)  # choir aahs, voice oohs, synth voice, lead 6 (voice)
MELODIC_PROGRAMS = (0, 6, 11, 19, 24, 40, 41, 42, 48, 52, 56, 57, 60, 65, 68, 70, 71, 73, 74)
SUNG_SHARE = 0.5  # vocals sung by espeak-ng, where installed; the rest on voice patches
MIN_NOTES = 8


def choose_program(font, wanted, rng):
    """(bank, program) from `wanted` programs that `font` has, in bank 0 three times in four; None if none."""
    choices = [(bank, program) for bank, program in sorted(font.presets) if bank != 128 and program in wanted]
    plain = [choice for choice in choices if choice[0] == 0]
    pool = plain if plain and (rng.random() < 0.75 or len(plain) == len(choices)) else choices
    return pool[int(rng.integers(len(pool)))] if pool else None


def role_programs(role, part):
    if role == "bass":
        return songs.BASS_PROGRAMS
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
        for role in songs.LAYOUTS[layout]:
            parts = [p for p in song.parts.get(role, []) if p.notes]
            if sum(len(p.notes) for p in parts) < MIN_NOTES:
                raise SongError(f"{song.name}: the {role} stem has fewer than {MIN_NOTES} notes")
            for _ in range(3):  # a preset can be silent in a soundfont: draw another
                stems[role], played[role] = render_stem(role, parts, split, instruments, rng, Path(folder), samples)
                if np.sqrt(np.mean(stems[role] ** 2)) > 1e-5:
                    break
            else:
                raise SongError(f"{song.name}: the {role} stem rendered silent ({played[role]})")
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
    """Write int16 stems {name: (samples, 2)} as 16-bit wavs, their exact sum as a 24-bit `mixture.wav` and
    `manifest.json`, through `files.write_folder`, so that a track folder is whole or absent."""
    def write(partial):
        for name, stem in stems.items():
            audio.write(partial / f"{name}.wav", stem, SAMPLE_RATE, subtype="PCM_16")
        mixture = sum(stem.astype(np.int32) for stem in stems.values())
        if np.abs(mixture).max() > 32767:
            raise RenderError(f"{folder.name}: the mixture clips")
        audio.write(partial / "mixture.wav", mixture * 65536, SAMPLE_RATE, subtype="PCM_24")  # 24 high bits of int32
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))

    files.write_folder(folder, write, replace=True)
