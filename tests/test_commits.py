"""A set of outputs is committed whole across kills, failed renames and stops: after any of them, the next command
that writes there leaves the whole old set or the whole new set, with nothing hidden and no temporaries."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import soundfile

from tfsep import commits, files

NAMES = ("vocals", "drums", "bass", "other")
RENAMES = 1 + 2 * len(NAMES)  # the journal, each old file set aside, each new one placed

COMMIT = """
import sys
from pathlib import Path
from tfsep import commits, files
folder = Path(sys.argv[1])
staged = {}
for name in sys.argv[2:]:
    temporary = files.temporary_beside(folder / f"{name}.wav")
    Path(temporary).write_text(f"new {name}")
    staged[temporary] = folder / f"{name}.wav"
commits.commit_set(staged, overwrite=True)
"""


def old_set(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (folder / f"{name}.wav").write_text(f"old {name}")


def state(folder):
    """'old' or 'new' if the folder holds exactly one whole set and nothing else, else what it holds."""
    contents = {p.name: p.read_text() for p in sorted(Path(folder).iterdir())}
    for version in ("old", "new"):
        if contents == {f"{name}.wav": f"{version} {name}" for name in NAMES}:
            return version
    return contents


def commit_in_a_process(folder, faults):
    return subprocess.run([sys.executable, "-c", COMMIT, str(folder), *NAMES], capture_output=True, text=True,
                          timeout=60, env={**os.environ, files.FAULTS: faults})


def recovered(folder):
    """What `commits.recover` said, as a list of lines, running it on `folder`."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        commits.recover([folder])
    return [str(warning.message) for warning in said if issubclass(warning.category, commits.Recovered)]


@pytest.mark.parametrize("kill_at", range(1, RENAMES + 1))
def test_a_commit_killed_at_any_rename_is_finished_or_undone_by_the_next_command(kill_at, tmp_path):
    folder = tmp_path / "out" / "song"
    old_set(folder)
    result = commit_in_a_process(folder, f"rename:{kill_at}=kill")
    assert result.returncode == -signal.SIGKILL
    assert state(folder) != "old"  # hidden files, a mixed set, or missing stems
    said = recovered(folder)
    if kill_at == 1:  # killed as it wrote the journal: nothing had moved
        assert state(folder) == "old" and said == []
    else:
        assert state(folder) == "new" and len(said) == 1 and said[0].endswith("are the new ones"), said


@pytest.mark.parametrize("failing, rolled_back", [("2", True), ("5", True), ("9", True), ("5-6", True),
                                                  ("2+", True), ("5+", False), ("7+", False)])
def test_a_failed_rename_leaves_the_old_set_and_a_failed_rollback_says_where_the_old_files_are(failing, rolled_back,
                                                                                               tmp_path):
    folder = tmp_path / "out" / "song"
    old_set(folder)
    result = commit_in_a_process(folder, f"rename:{failing}=eio")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    if rolled_back:
        assert state(folder) == "old" and error.startswith("OSError: [Errno 5]"), (state(folder), error)
        return
    assert error.startswith("tfsep.commits.CommitError") and "the next tfsep command that writes there" in error
    for aside in folder.glob(".*.part.old"):
        assert f"is {aside}" in error
    assert len(recovered(folder)) == 1
    assert state(folder) in ("old", "new")  # whichever way the journal pointed, one whole set


def test_a_stale_temporary_is_removed_and_a_set_aside_file_put_back_but_a_live_writer_s_is_kept(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (folder / f".vocals.wav.{dead}-abcdef.part").write_text("half")
    (folder / f".drums.wav.{dead}-abcdef.part.old").write_text("old drums")  # its target is gone: put back
    (folder / "bass.wav").write_text("bass")
    (folder / f".bass.wav.{dead}-123456.part.old").write_text("older bass")  # its target is there: removed
    live = Path(files.temporary_beside(folder / "other.wav"))  # this process's own, being written
    assert sorted(files.tidy(folder)) == sorted([str(folder / "drums.wav") + " (put back)",
                                                 str(folder / f".bass.wav.{dead}-123456.part.old"),
                                                 str(folder / f".vocals.wav.{dead}-abcdef.part")])
    assert sorted(p.name for p in folder.iterdir()) == sorted(["bass.wav", "drums.wav", live.name])
    assert (folder / "drums.wav").read_text() == "old drums"


def test_a_temporary_whose_process_id_was_reused_is_stale(tmp_path):
    temporary = tmp_path / f".vocals.wav.{os.getpid()}-abcdef.part"
    temporary.write_text("half")
    assert not files.ownerless(temporary)
    os.utime(temporary, (time.time() - 10**7, time.time() - 10**7))  # written long before this process started
    assert files.ownerless(temporary)


def test_a_folder_is_written_whole_or_not_at_all_and_a_dead_writer_s_half_folder_is_removed(tmp_path):
    target = tmp_path / "export" / "1"

    def write(folder, fail=False):
        (folder / "weights").write_text("new")
        (folder / "assets").mkdir()
        (folder / "assets" / "about.json").write_text("{}")
        if fail:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.write_folder(target, lambda folder: write(folder, fail=True))
    assert list(target.parent.iterdir()) == []
    assert files.write_folder(target, write) == target
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["assets", "assets/about.json", "weights"]
    with pytest.raises(FileExistsError, match="already exists"):
        files.write_folder(target, write)
    (target / "weights").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        files.write_folder(target, lambda folder: write(folder, fail=True), replace=True)
    assert (target / "weights").read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["1"]
    files.write_folder(target, write, replace=True)
    assert (target / "weights").read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["1"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    half = target.parent / f".2.{dead}-abcdef.part"
    (half / "variables").mkdir(parents=True)
    live = files.temporary_folder_beside(target.parent / "3")
    assert files.tidy(target.parent) == [str(half)]
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(["1", live.name])


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    soundfile.write(path, [[0.1, -0.1]] * 8000, 8000)
    return path


def separate(model, song, folder, faults="", wait=True):
    command = [sys.executable, "-m", "tfsep.cli", "separate", str(song), "--model", str(model), "-o", str(folder),
               "-q", "--overwrite"]
    env = {**os.environ, files.FAULTS: faults}
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_separate_killed_in_its_commit_is_finished_by_the_next_separate_into_that_folder(tiny_model_file, song,
                                                                                          tmp_path):
    out = tmp_path / "out"
    assert separate(tiny_model_file, song, out).returncode == 0
    louder = tmp_path / "louder" / "song.wav"  # the same track name, other samples
    louder.parent.mkdir()
    soundfile.write(louder, [[0.3, -0.2]] * 8000, 8000)
    assert separate(tiny_model_file, louder, tmp_path / "expected").returncode == 0
    killed = separate(tiny_model_file, louder, out, "rename:4=kill")
    assert killed.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".") for p in (out / "song").iterdir())
    other = tmp_path / "other.wav"
    soundfile.write(other, [[0.2, 0.0]] * 8000, 8000)
    again = separate(tiny_model_file, other, out)  # another input into the same output folder
    assert again.returncode == 0, again.stderr
    assert f"tfsep: finished an interrupted commit in {out / 'song'}" in again.stderr
    expected = {p.name: p.read_bytes() for p in (tmp_path / "expected" / "song").iterdir()}
    assert {p.name: p.read_bytes() for p in (out / "song").iterdir()} == expected  # the killed run's set, whole


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_during_the_commit_lets_it_finish_and_says_the_outputs_were_written(number, tiny_model_file, song,
                                                                                   tmp_path):
    out = tmp_path / "out"
    run = separate(tiny_model_file, song, out, "rename:2=slow", wait=False)  # a second's pause inside the commit
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".part.old") for p in out.rglob(".*")) and time.monotonic() < deadline:
        time.sleep(0.02)  # no old files to set aside: wait for the journal instead
        if any(p.name.startswith(".tfsep-commit") for p in out.rglob(".*")):
            break
    run.send_signal(number)
    stderr = run.communicate(timeout=60)[1]
    assert run.returncode == 128 + number
    assert f"stopped by {signal.Signals(number).name}" in stderr and "had been written whole" in stderr, stderr
    assert sorted(p.name for p in (out / "song").iterdir()) == [f"{name}.wav" for name in sorted(NAMES)]


@pytest.mark.slow
def test_a_stop_before_the_commit_cancels_it(tiny_model_file, song, tmp_path):
    out = tmp_path / "out"
    assert separate(tiny_model_file, song, out).returncode == 0
    before = {p.name: p.read_bytes() for p in (out / "song").iterdir()}
    louder = tmp_path / "song.wav"
    soundfile.write(louder, [[0.3, -0.3]] * 8000, 8000)
    code = ("import os, signal, sys\nfrom tfsep import cli, commits\nreal = commits.commit_set\n"
            "def stopped_first(*args, **kwargs):\n    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return real(*args, **kwargs)\ncommits.commit_set = stopped_first\nsys.exit(cli.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "separate", str(louder), "--model", str(tiny_model_file),
                             "-o", str(out), "-q", "--overwrite"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 143 and result.stderr.strip() == "tfsep: stopped by SIGTERM", result.stderr
    assert {p.name: p.read_bytes() for p in (out / "song").iterdir()} == before
