"""Bad audio input and failing outputs: every case through `tfsep separate`, the Python API and data sets.

Each bad file gets one line naming it and the problem, a non-zero exit and no traceback
(unless --debug); the good files of a batch are still separated; no output is ever
half-written or overwritten without --overwrite. docs/reliability.md lists
these cases.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from conftest import run_tfsep, write_wav

from tfsep import audio, data
from tfsep.outputs import SeparationError

RATE = 8000
STEMS = ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]


def test_bad_files_get_errors_naming_the_file(separator, tmp_path, rng):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "noise.wav").write_bytes(rng.bytes(5000))
    write_wav(tmp_path / "silent.wav", np.zeros((0, 2)))
    full = write_wav(tmp_path / "full.flac", rng.uniform(-0.5, 0.5, (RATE * 4, 2)))
    (tmp_path / "truncated.flac").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    wav = write_wav(tmp_path / "full.wav", rng.uniform(-0.5, 0.5, (RATE * 4, 2)))
    (tmp_path / "truncated.wav").write_bytes(wav.read_bytes()[: wav.stat().st_size // 2])
    for name, container in [("aiff.aiff", "AIFF"), ("rf64.wav", "RF64"), ("w64.w64", "W64")]:
        whole = tmp_path / f"whole {name}"
        soundfile.write(whole, rng.uniform(-0.5, 0.5, (RATE * 4, 2)), RATE, "PCM_16", format=container)
        (tmp_path / f"truncated {name}").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    write_wav(tmp_path / "nan.wav", np.full((RATE, 2), np.nan), subtype="FLOAT")
    write_wav(tmp_path / "inf.wav", np.where(np.arange(RATE)[:, None] == 7, np.inf, 0.1) * np.ones((1, 2)),
              subtype="FLOAT")
    write_wav(tmp_path / "huge.wav", np.full((RATE, 2), 3e4), subtype="FLOAT")
    cases = {
        "missing.wav": "missing.wav: no such file",
        "": "is a folder",
        "empty.wav": "empty.wav: not a readable audio file",
        "noise.wav": "noise.wav: not a readable audio file",
        "silent.wav": "silent.wav: holds no samples",
        "truncated.flac": "truncated.flac: cannot decode",
        "truncated.wav": "truncated.wav: truncated",
        "truncated aiff.aiff": r"truncated aiff.aiff: truncated \(its header promises 128008 bytes, the file holds",
        "truncated rf64.wav": r"truncated rf64.wav: truncated \(its header promises 32000 samples, the file holds",
        "truncated w64.w64": r"truncated w64.w64: truncated \(its header promises",
        "nan.wav": "nan.wav: holds NaN or infinite samples",
        "inf.wav": "inf.wav: holds NaN or infinite samples",
        "huge.wav": r"huge.wav: samples reach 3e\+04, far beyond full scale ±1",
    }
    for name, message in cases.items():
        with pytest.raises((audio.AudioError, SeparationError), match=message):
            separator.separate_file(tmp_path / name, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.*"))  # not even a temporary
    with pytest.raises(SeparationError, match="holds NaN or infinite samples"):
        separator.separate(np.array([[0.0, np.inf]]), RATE)


def test_a_file_that_shrinks_while_it_is_read_is_refused(separator, tmp_path, rng, monkeypatch):
    song = write_wav(tmp_path / "song.wav", rng.uniform(-0.5, 0.5, (RATE * 6, 2)))
    blocks = audio._soundfile_blocks

    def cut_after_the_first_block(path, block_samples):
        for i, block in enumerate(blocks(path, block_samples)):
            if i == 0:
                os.truncate(song, song.stat().st_size // 2)  # as another program rewriting it would
            yield block

    monkeypatch.setattr(audio, "_soundfile_blocks", cut_after_the_first_block)
    monkeypatch.setattr("tfsep.separate.BLOCK_SAMPLES", RATE)
    with pytest.raises(audio.AudioError, match=rf"song.wav: truncated, damaged or changed while read \(\d+ samples "
                       rf"decoded, its header promises {RATE * 6}\)"):
        separator.separate_file(song, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_awkward_but_valid_audio_is_separated_at_its_own_rate_and_channels(separator, tmp_path, rng):
    cases = {  # name: (samples, channels, rate, peak)
        "one sample.wav": (1, 2, RATE, 0.5),
        "loud.wav": (RATE, 2, RATE, 4.0),  # float samples beyond ±1 (but below the ±1000 refusal)
        "eight channels.wav": (RATE, 8, RATE, 0.5),
        "mono.wav": (RATE, 1, RATE, 0.5),
        "8k.flac": (RATE, 2, 8000, 0.5),
        "192k.wav": (192000, 2, 192000, 0.5),
        "chœur à 4 voix ♫.wav": (RATE, 2, 44100, 0.5),
        "-dash.wav": (RATE, 2, RATE, 0.5),
    }
    for name, (samples, channels, rate, peak) in cases.items():
        signal = rng.uniform(-peak, peak, (samples, channels))
        write_wav(tmp_path / name, signal, rate, subtype="FLOAT" if name.endswith("wav") else "PCM_24")
        written = separator.separate_file(tmp_path / name, tmp_path / "out")
        for stem in written.values():
            info = soundfile.info(stem)
            assert (info.frames, info.channels, info.samplerate) == (samples, channels, rate), name
        assert written["vocals"].parent == tmp_path / "out" / name.rsplit(".", 1)[0]
    loud = sum(soundfile.read(tmp_path / "out" / "loud" / stem)[0] for stem in STEMS)
    assert np.abs(loud).max() > 1.5  # float stems keep what is beyond full scale


@pytest.mark.slow
def test_cli_batch_separates_the_good_files_and_lists_each_failure_in_one_line(tiny_model_file, tmp_path, rng):
    good = [write_wav(tmp_path / f"{name}.wav", rng.uniform(-0.5, 0.5, (RATE * 2, 2))) for name in ("a", "b c")]
    (tmp_path / "broken.wav").write_bytes(b"RIFF nonsense")
    write_wav(tmp_path / "nan.wav", np.full((RATE, 2), np.nan), subtype="FLOAT")
    inputs = [good[0], tmp_path / "broken.wav", tmp_path / "missing.wav", tmp_path / "nan.wav", good[1]]
    result = run_tfsep("separate", *inputs, "--model", tiny_model_file, "-o", tmp_path / "out", "--residual", "-q")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith("broken.wav: not a readable audio file (Error opening "
                             f"'{tmp_path / 'broken.wav'}': Format not recognised.)")
    assert (lines[1].endswith("missing.wav: no such file")
            and lines[2].endswith("nan.wav: holds NaN or infinite samples"))
    assert lines[3] == "tfsep: 3 of 5 files failed:" and len(lines) == 7  # each failure again in the summary
    for name in ("a", "b c"):
        assert sorted(p.name for p in (tmp_path / "out" / name).iterdir()) == ["bass.wav", "drums.wav", "other.wav",
                                                                              "residual.wav", "vocals.wav"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b c"]

    again = run_tfsep("separate", good[0], "--model", tiny_model_file, "-o", tmp_path / "out", "-q")
    assert again.returncode == 1 and "already exists (use --overwrite" in again.stderr

    (tmp_path / "a-file").write_text("not a folder")
    denied = run_tfsep("separate", good[0], "--model", tiny_model_file, "-o", tmp_path / "a-file" / "out", "-q")
    assert denied.returncode == 1 and "cannot write" in denied.stderr and "Traceback" not in denied.stderr

    debug = run_tfsep("--debug", "separate", tmp_path / "broken.wav", "--model", tiny_model_file, "-o", tmp_path / "d")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "AudioError" in debug.stderr
    after = run_tfsep("separate", tmp_path / "broken.wav", "--model", tiny_model_file, "-o", tmp_path / "d", "--debug")
    assert after.returncode == 1 and "Traceback" in after.stderr and "AudioError" in after.stderr


def test_cli_names_with_a_leading_dash_need_a_double_dash(tiny_model_file, tmp_path, rng):
    write_wav(tmp_path / "-song.wav", rng.uniform(-0.5, 0.5, (RATE, 2)))
    refused = run_tfsep("separate", "-song.wav", "--model", tiny_model_file, "-o", "out", "-q", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == ("tfsep: error: -song.wav: a file name that starts with a dash reads as an option; "
                              "write -- -song.wav or ./-song.wav\n")
    result = run_tfsep("separate", "--model", tiny_model_file, "-o", "out", "-q", "--", "-song.wav", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "-song").iterdir()) == STEMS


@pytest.mark.slow
def test_a_failing_disk_leaves_no_partial_stem_and_keeps_existing_ones(tiny_model_file, tmp_path, rng):
    song = write_wav(tmp_path / "song.wav", rng.uniform(-0.5, 0.5, (RATE * 20, 2)))
    # Files may not grow past 200 kB (RLIMIT_FSIZE): write(2) fails with EFBIG as on a full disk.
    result = run_tfsep("separate", song, "--model", tiny_model_file, "-o", tmp_path / "out", "-q",
                       limit_file_size=200_000)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot write (the system refused the write: disk full or file size limit?)" in result.stderr
    assert not list((tmp_path / "out").rglob("*.*"))  # no stem, no temporary file

    first = run_tfsep("separate", song, "--model", tiny_model_file, "-o", tmp_path / "out", "-q", "--bits", "16")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "out" / "song").iterdir()}
    retry = run_tfsep("separate", song, "--model", tiny_model_file, "-o", tmp_path / "out", "-q", "--overwrite",
                      limit_file_size=200_000)
    assert retry.returncode == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "out" / "song").iterdir()} == before


def test_track_names_cannot_write_outside_the_output_folder(separator, tmp_path, rng):
    (tmp_path / "in").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("...wav", "..wav", ".hidden.wav"):
        song = write_wav(tmp_path / "in" / name, rng.uniform(-0.5, 0.5, (RATE, 2)))
        written = separator.separate_file(song, tmp_path / "out", overwrite=True)
        assert all(p.resolve().is_relative_to((tmp_path / "out").resolve()) for p in written.values())
    song = tmp_path / "in" / "..wav"
    for template in ("../{source}.wav", "/tmp/{source}.wav", "{track}/../../{source}.wav"):
        with pytest.raises(SeparationError, match="leads outside"):
            separator.separate_file(song, tmp_path / "out", template)
    (tmp_path / "out" / "link").symlink_to(outside)
    with pytest.raises(SeparationError, match="leads outside"):
        separator.separate_file(song, tmp_path / "out", "link/{source}.wav")
    assert not list(outside.iterdir())


@pytest.mark.slow
def test_hours_of_audio_are_separated_in_bounded_memory(tiny_model_file, tmp_path):
    """Peak memory of `tfsep separate` for 30 min vs 2 min of 8 kHz stereo: it follows the chunk, not the file."""
    def peak_mib(minutes):
        path = tmp_path / f"{minutes}.wav"
        with soundfile.SoundFile(path, "w", RATE, 2, "PCM_16") as file:
            for _ in range(minutes * 6):
                file.write(np.random.default_rng(minutes).uniform(-0.3, 0.3, (RATE * 10, 2)))
        script = ("import resource, sys; from tfsep.cli import main; code = main(sys.argv[1:]); "
                  "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
        result = subprocess.run([sys.executable, "-c", script, "separate", str(path), "--model", str(tiny_model_file),
                                 "-o", str(tmp_path / "out"), "-q", "--bits", "16"], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        assert soundfile.info(tmp_path / "out" / str(minutes) / "vocals.wav").frames == minutes * 60 * RATE
        return int(result.stdout.split()[-1]) / 1024

    short, long = peak_mib(2), peak_mib(30)
    # 30 min of stereo float32 is 55 MiB, its four stems 220 MiB: none of it may be held at once.
    assert long - short < 60, (short, long)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_mp3_goes_through_ffmpeg_and_without_it_the_error_says_how_to_install(tiny_model_file, tmp_path, rng):
    wav = write_wav(tmp_path / "song.wav", rng.uniform(-0.3, 0.3, (RATE * 2, 2)))
    subprocess.run(["ffmpeg", "-v", "error", "-i", wav, "-ar", "22050", tmp_path / "song.mp3"], check=True)
    result = run_tfsep("separate", tmp_path / "song.mp3", "--model", tiny_model_file, "-o", tmp_path / "out", "-q")
    assert result.returncode == 0, result.stderr
    info = soundfile.info(tmp_path / "out" / "song" / "vocals.wav")
    assert info.samplerate == 22050 and abs(info.frames - 44100) < 3000  # mp3 adds encoder padding
    mp3 = (tmp_path / "song.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(mp3[: len(mp3) // 2])  # its Xing header still gives the whole duration
    result = run_tfsep("separate", tmp_path / "cut.mp3", "--model", tiny_model_file, "-o", tmp_path / "out", "-q")
    assert (result.returncode == 1
            and "cut.mp3: truncated, damaged or changed while read" in result.stderr), result.stderr
    assert not (tmp_path / "out" / "cut").exists()

    no_ffmpeg = {**os.environ, "PATH": str(tmp_path / "empty-path")}
    result = run_tfsep("separate", tmp_path / "song.mp3", "--model", tiny_model_file, "-o", tmp_path / "out2", "-q",
                       env=no_ffmpeg)
    assert result.returncode == 1
    assert result.stderr == (f"tfsep: error: {tmp_path / 'song.mp3'}: reading .mp3 files needs ffmpeg; install "
                             "ffmpeg (Debian/Ubuntu: apt-get install ffmpeg)\n")


def test_data_sets_refuse_nan_samples_naming_track_and_file(tmp_path, rng):
    folder = tmp_path / "set" / "train" / "song"
    folder.mkdir(parents=True)
    stems = {name: rng.uniform(-0.3, 0.3, (RATE, 2)).astype(np.float32)
             for name in ("vocals", "drums", "bass", "other")}
    stems["drums"][100] = np.nan
    for name, signal in stems.items():
        write_wav(folder / f"{name}.wav", signal, subtype="FLOAT")
    write_wav(folder / "mixture.wav", np.nan_to_num(sum(stems.values())), subtype="FLOAT")
    tracks = data.find_tracks(tmp_path / "set", "train", list(stems))
    for cache in (None, tmp_path / "cache"):
        with pytest.raises(data.DatasetError, match=r"track 'song': .*drums.wav holds NaN or infinite samples"):
            data.load_tracks(tracks, list(stems), RATE, cache_dir=cache, progress=False)
    assert all(np.isfinite(np.load(path)).all() for path in (tmp_path / "cache").rglob("*.npy"))  # vocals only


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_damaged_mp3_that_fills_ffmpeg_s_stderr_is_refused_without_a_hang(tmp_path):
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=300:sample_rate=22050",
                    "-b:a", "32k", tmp_path / "long.mp3"], check=True)
    damaged, noise = bytearray((tmp_path / "long.mp3").read_bytes()), np.random.default_rng(0)
    for start in range(2000, len(damaged), 300):  # about a megabyte of ffmpeg errors, far beyond a pipe's buffer
        damaged[start:start + 4] = noise.bytes(4)
    (tmp_path / "damaged.mp3").write_bytes(bytes(damaged))
    errors = subprocess.run(["ffmpeg", "-v", "error", "-i", tmp_path / "damaged.mp3", "-f", "f32le", "-"],
                            capture_output=True).stderr
    assert len(errors) > 2**17
    script = f"from tfsep import audio; audio.read({str(tmp_path / 'damaged.mp3')!r})"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "damaged.mp3: truncated, damaged or changed while read" in result.stderr.splitlines()[-1]


def cut(path, keep):
    """A copy of `path` beside it, named cut-<name>, holding its first `keep` bytes (a fraction if below 1)."""
    data = path.read_bytes()
    target = path.with_name(f"cut-{path.name}")
    target.write_bytes(data[: int(len(data) * keep) if keep < 1 else len(data) - int(keep)])
    return target


@pytest.mark.parametrize("suffix, format, subtype, keep, message", [
    (".au", "AU", "PCM_16", 0.5, r"truncated \(its header promises 529200 bytes"),
    (".ogg", "OGG", "VORBIS", 0.5, r"truncated \(its Ogg stream stops before its last page\)"),
    (".ogg", "OGG", "VORBIS", 0.9, r"truncated \(its Ogg stream stops before its last page\)"),
])
def test_au_and_ogg_cut_short_are_refused_by_their_own_length_records(suffix, format, subtype, keep, message,
                                                                        tmp_path, rng):
    whole = tmp_path / f"song{suffix}"
    soundfile.write(whole, rng.uniform(-0.3, 0.3, (132300, 2)), 44100, format=format, subtype=subtype)
    assert audio.info(whole).samples == 132300
    with pytest.raises(audio.AudioError, match=message):
        audio.info(cut(whole, keep))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("encoder", ["libsndfile", "ffmpeg vbr", "ffmpeg cbr"])
def test_an_mp3_is_held_to_the_frame_count_of_its_header_to_two_frames(encoder, tmp_path, rng):
    """LAME's Xing/Info header (libsndfile's encoder, and ffmpeg's behind an ID3 tag) counts the frames; a file that
    decodes to fewer than that, less two frames, is refused: 10 % cut, or 17.6 kB of a minute."""
    wav = tmp_path / "song.wav"
    soundfile.write(wav, rng.uniform(-0.3, 0.3, (44100 * 60, 2)), 44100, subtype="PCM_16")
    mp3 = tmp_path / "song.mp3"
    if encoder == "libsndfile":
        soundfile.write(mp3, soundfile.read(wav)[0], 44100, format="MP3")
    else:
        quality = ["-q:a", "4"] if encoder == "ffmpeg vbr" else ["-b:a", "128k"]
        subprocess.run(["ffmpeg", "-v", "error", "-i", wav, "-c:a", "libmp3lame", *quality, mp3], check=True)
    found, blocks = audio.blocks(mp3)
    assert found.samples == 44100 * 60 and sum(len(block) for block in blocks) == 44100 * 60
    for keep in (0.9, 17_600):
        with pytest.raises(audio.AudioError, match="truncated, damaged or changed while read"):
            found, blocks = audio.blocks(cut(mp3, keep))
            list(blocks)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_an_mp3_without_a_length_record_is_taken_as_it_decodes(tmp_path, rng):
    wav = tmp_path / "song.wav"
    soundfile.write(wav, rng.uniform(-0.3, 0.3, (44100 * 5, 2)), 44100, subtype="PCM_16")
    mp3 = tmp_path / "song.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", wav, "-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0",
                    mp3], check=True)
    assert audio.mp3_length(mp3) is None
    found, blocks = audio.blocks(cut(mp3, 0.8))
    assert sum(len(block) for block in blocks) < 0.85 * 44100 * 5  # accepted: nothing says how long it was
