"""Outputs are never lost or mixed: stems committed as a set, collisions refused, concurrent runs safe."""

import os
import subprocess
import sys
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest
import soundfile

from tfsep import commits, files
from tfsep.outputs import SeparationError, check_outputs
from tfsep.separate import Separator

RATE = 8000


@pytest.fixture
def song(tmp_path, rng):
    path = tmp_path / "song.wav"
    soundfile.write(path, rng.uniform(-0.5, 0.5, (RATE, 2)), RATE, subtype="FLOAT")
    return path


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_stem_that_cannot_be_replaced_leaves_every_output_as_it_was(separator, song, tmp_path):
    out = tmp_path / "out"
    separator.separate_file(song, out)
    (out / "song" / "bass.wav").unlink()
    (out / "song" / "bass.wav").mkdir()  # a folder where a stem goes: its rename must fail
    (out / "song" / "bass.wav" / "keep").write_text("x")
    before = contents(out / "song")
    with pytest.raises(OSError):
        separator.separate_file(song, out, overwrite=True)
    assert contents(out / "song") == before and (out / "song" / "bass.wav" / "keep").read_text() == "x"
    assert sorted(p.name for p in (out / "song").iterdir()) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]


def test_a_rename_failing_midway_puts_back_the_stems_already_replaced(separator, song, tmp_path, monkeypatch):
    out = tmp_path / "out"
    separator.separate_file(song, out)
    for stem in ("vocals", "drums", "bass", "other"):
        (out / "song" / f"{stem}.wav").write_bytes(f"old {stem}".encode())
    before = contents(out / "song")
    real, calls = os.replace, []

    def failing(source, target):
        calls.append(target)
        if len(calls) == 7:  # the journal, four stems set aside, one new stem placed: the second fails
            raise OSError(28, "No space left on device")
        return real(source, target)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        separator.separate_file(song, out, overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    assert contents(out / "song") == before  # no stray temporaries, every old stem back


def test_stems_of_one_input_on_one_path_are_refused_before_any_work(separator, song, tmp_path):
    with pytest.raises(SeparationError, match=r"song\.wav: the vocals and drums stems of .*song\.wav would both"):
        separator.separate_file(song, tmp_path / "out", "{track}.wav")
    assert not (tmp_path / "out").exists()


def test_two_inputs_on_one_output_and_an_output_on_its_input_are_refused(separator, tmp_path, rng):
    a, b = tmp_path / "a" / "song.wav", tmp_path / "b" / "song.wav"
    for path in (a, b):
        path.parent.mkdir()
        soundfile.write(path, rng.uniform(-0.5, 0.5, (RATE, 2)), RATE)
    outputs = {path: separator.output_paths(path, tmp_path / "out") for path in (a, b)}
    with pytest.raises(SeparationError, match=rf"{a} \(vocals\) and {b} \(vocals\) would both be written there"):
        check_outputs(outputs)
    check_outputs({a: separator.output_paths(a, tmp_path / "a", "{track}_{source}.wav")})  # beside it is fine
    with pytest.raises(SeparationError, match="would overwrite the input"):
        separator.separate_file(a, tmp_path, "a/{track}.wav", overwrite=True)


def test_a_residual_that_clashes_with_a_model_source_is_refused(tmp_path):
    import tfsep

    model = tfsep.build_model("bandconv", ("vocals", "residual"), RATE, size="tiny", n_fft=256, hop=64)
    with pytest.raises(SeparationError, match="source named 'residual'"):
        Separator(model).output_paths(tmp_path / "x.wav", tmp_path, residual=True)


def test_a_run_that_finds_its_outputs_written_meanwhile_leaves_them(separator, song, tmp_path, monkeypatch):
    out = tmp_path / "out"
    stream = Separator.stream

    def racing(self, *args):
        for block in stream(self, *args):
            yield block
        (out / "song").mkdir(parents=True, exist_ok=True)
        (out / "song" / "drums.wav").write_bytes(b"the other run's drums")

    monkeypatch.setattr(Separator, "stream", racing)
    with pytest.raises(SeparationError, match="drums.wav: already exists .*another run wrote it meanwhile"):
        separator.separate_file(song, out)
    assert contents(out / "song") == {"drums.wav": b"the other run's drums"}


def test_concurrent_overwriting_commits_leave_one_run_s_complete_set(tmp_path, monkeypatch):
    names = ["vocals.wav", "drums.wav", "bass.wav", "other.wav"]
    real = os.replace

    def slow(source, target):  # renames that take long make interleaving likely without the lock
        time.sleep(0.002)
        return real(source, target)

    monkeypatch.setattr(os, "replace", slow)

    def run(label):
        for _ in range(15):
            staged = {}
            for name in names:
                temporary = files.temporary_beside(tmp_path / name)
                open(temporary, "w").write(label)
                staged[temporary] = tmp_path / name
            commits.commit_set(staged, overwrite=True)

    threads = [threading.Thread(target=run, args=(label,)) for label in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({(tmp_path / name).read_text() for name in names}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_cli_refuses_colliding_inputs_in_one_line(tiny_model_file, tmp_path, rng):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        soundfile.write(tmp_path / folder / "song.wav", rng.uniform(-0.5, 0.5, (RATE, 2)), RATE)
    result = subprocess.run([sys.executable, "-m", "tfsep.cli", "separate", "a/song.wav", "b/song.wav", "--model",
                             str(tiny_model_file), "-o", "out", "--overwrite", "-q"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "tfsep: error: out/song/vocals.wav: a/song.wav (vocals) and b/song.wav (vocals) "
        "would both be written there; put {track} and {source} in the template"]
    assert not (tmp_path / "out").exists()
    assert np.isfinite(soundfile.read(tmp_path / "a" / "song.wav")[0]).all()


@pytest.mark.parametrize("options, message", [
    ({"chunk_seconds": 0.01}, "at least two FFT frames"),
    ({"chunk_seconds": float("inf")}, "finite length"),
    ({"chunk_seconds": 1.0, "overlap_seconds": 1.0}, "shorter than the chunk"),
    ({"overlap_seconds": float("nan")}, "must be finite"),
    ({"wiener_iterations": 1000}, "integer from 0 to 32"),
    ({"griffin_lim_iterations": 33}, "integer from 0 to 32"),
])
def test_degenerate_settings_are_refused(tiny_model, options, message):
    with pytest.raises(ValueError, match=message):
        Separator(tiny_model, **options)


def test_the_default_overlap_is_half_a_chunk_shorter_than_twice_it(tiny_model):
    short = Separator(tiny_model, chunk_seconds=0.3)
    hop = short.description["hop"]
    assert short.plan.chunk // 2 - hop < short.plan.overlap <= short.plan.chunk // 2 and short.plan.overlap % hop == 0
    default = Separator(tiny_model).plan
    assert default.chunk == 5 * RATE and abs(default.overlap - RATE // 4) < hop  # 5 s and 0.25 s, in whole hops


@pytest.mark.slow
@pytest.mark.parametrize("number, code, line",
                         [(15, 143, "tfsep: stopped by SIGTERM"), (1, 129, "tfsep: stopped by SIGHUP")])
def test_sigterm_and_sighup_remove_the_temporaries_and_say_so(tiny_model_file, tmp_path, rng, number, code, line):
    soundfile.write(tmp_path / "long.wav", rng.uniform(-0.5, 0.5, (RATE * 600, 2)), RATE)
    run = subprocess.Popen([sys.executable, "-m", "tfsep.cli", "separate", "long.wav", "--model", str(tiny_model_file),
                            "-o", "out", "-q"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((tmp_path / "out").rglob("*.part")) and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    assert list((tmp_path / "out").rglob("*.part")), "the separation never started writing"
    run.send_signal(number)
    _, stderr = run.communicate(timeout=120)
    assert (run.returncode, stderr.strip()) == (code, line)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*"))


@pytest.mark.slow
def test_a_closed_stdout_pipe_does_not_stop_the_batch(tiny_model_file, tmp_path, rng):
    for name in ("a", "b", "c"):
        soundfile.write(tmp_path / f"{name}.wav", rng.uniform(-0.5, 0.5, (RATE, 2)), RATE)
    command = (f"{sys.executable} -m tfsep.cli separate a.wav b.wav c.wav --model {tiny_model_file} -o out 2>err "
               "| head -c 1 > /dev/null")
    subprocess.run(command, shell=True, cwd=tmp_path, timeout=300, check=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c"]
    assert "Traceback" not in (tmp_path / "err").read_text()


@pytest.mark.parametrize("template, bits, subtype", [
    ("{track}/{source}.wav", None, "PCM_16"), ("{track}/{source}.flac", None, "PCM_16"),
    ("{track}/{source}.wav", "24", "PCM_24"), ("{track}/{source}.flac", "24", "PCM_24"),
    ("{track}/{source}.wav", "32", "FLOAT"), ("{track}/{source}.wav", "float", "FLOAT"),
    ("{track}/{source}.mp3", None, "MPEG_LAYER_III")])
def test_stems_are_16_bit_by_default_in_every_format(separator, song, tmp_path, template, bits, subtype):
    written = separator.separate_file(song, tmp_path / "out", template, bits=bits)
    assert soundfile.info(written["vocals"]).subtype == subtype
    stem, rate = soundfile.read(written["vocals"], dtype="float32")
    assert rate == RATE and stem.shape[1] == 2 and abs(len(stem) - RATE) < RATE // 4  # mp3 adds encoder padding


def test_formats_that_cannot_hold_the_samples_are_refused_naming_what_works(separator, song, tmp_path):
    with pytest.raises(ValueError, match="FLAC holds 16- or 24-bit samples, not float: use --bits 16 or --bits 24"):
        separator.separate_file(song, tmp_path / "f", "{track}/{source}.flac", bits="32")
    with pytest.raises(ValueError, match="an mp3 holds no bit depth: leave --bits out"):
        separator.separate_file(song, tmp_path / "f", "{track}/{source}.mp3", bits="16")
    assert not (tmp_path / "f").exists()


def test_a_format_flag_and_a_template_agree_or_are_refused():
    from tfsep.outputs import DEFAULT_TEMPLATE, with_format

    assert with_format(DEFAULT_TEMPLATE, "flac") == "{track}/{source}.flac"
    assert with_format("{track}_{source}", "mp3") == "{track}_{source}.mp3"
    assert with_format("{track}_{source}.MP3", "mp3") == "{track}_{source}.MP3"
    assert with_format("{track}_{source}.flac", None) == "{track}_{source}.flac"
    with pytest.raises(ValueError, match="writes .wav files, not flac: give one of --format and --template"):
        with_format("{track}_{source}.wav", "flac")


@pytest.mark.parametrize("bits, limited", [(None, True), ("24", True), ("float", False)])
def test_samples_beyond_full_scale_are_limited_and_counted_never_wrapped(separator, tmp_path, rng, bits, limited):
    """An integer format cannot hold a stem beyond ±1: it is limited to full scale, with a warning that counts the
    samples, and never wraps around to the other sign; float keeps it."""
    from tfsep.outputs import ClippingWarning

    loud = tmp_path / "loud.wav"
    soundfile.write(loud, rng.uniform(-6.0, 6.0, (RATE, 2)), RATE, subtype="FLOAT")
    expected = np.stack(list(separator.separate(soundfile.read(loud, dtype="float32")[0], RATE).values()))
    beyond = np.count_nonzero(np.abs(expected) > 1.0)
    assert beyond > 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = separator.separate_file(loud, tmp_path / "out", bits=bits)
    stems = np.stack([soundfile.read(path, dtype="float32")[0] for path in written.values()])
    clipped = [w for w in caught if issubclass(w.category, ClippingWarning)]
    if limited:
        assert len(clipped) == 1 and f"{beyond} of its stems' {expected.size} samples" in str(clipped[0].message)
        np.testing.assert_allclose(stems, np.clip(expected, -1.0, 1.0), atol=2 / 2**15)
    else:
        assert not clipped
        np.testing.assert_allclose(stems, expected, atol=1e-6)


@pytest.mark.slow
def test_existing_outputs_are_refused_before_the_model_loads(tiny_model_file, song, tmp_path):
    first = subprocess.run([sys.executable, "-m", "tfsep.cli", "separate", song, "--model", tiny_model_file, "-o",
                            tmp_path / "out", "-q"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    # A model whose config reads but whose weights do not: loading it would fail.
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(tiny_model_file) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item) if item.filename == "config.json" else b"damaged")
    again = subprocess.run([sys.executable, "-m", "tfsep.cli", "separate", song, "--model", broken, "-o",
                            tmp_path / "out", "-q"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1
    assert again.stderr.splitlines() == [  # once: a summary follows only several files
        f"tfsep: error: {tmp_path / 'out' / 'song' / 'vocals.wav'}: already exists (use --overwrite to replace it)"]
    forced = subprocess.run([sys.executable, "-m", "tfsep.cli", "separate", song, "--model", broken, "-o",
                             tmp_path / "out", "-q", "--overwrite"], capture_output=True, text=True, timeout=300)
    assert forced.returncode == 1 and "broken.keras: not a loadable tfsep model" in forced.stderr, forced.stderr
