"""Writing files so that nothing is lost, half-written or mixed: temporary files beside their targets, owned by
the process that writes them, single atomic replacements, folder locks, and the removal of what killed writers
left behind (`tidy`). Sets of files are committed all or nothing by `commits.commit_set`.

Every writer in tfsep goes through here: stems, reports, models, exports, caches.
"""

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import signal
import stat
import time
from pathlib import Path

TEMPORARY = ".part"  # `.<name>.<random>.part<suffix>`: a file being written beside its target
ASIDE = ".old"  # the suffix of an old file set aside during a commit
_TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-[0-9a-f]{6}|[0-9a-f]{8})\.part(?P<suffix>.*)$")
JOURNALS = ".tfsep-commit.*.json"  # the journals of commits in progress or interrupted (`commits`)
FAULTS = "TFSEP_FAULTS"  # fault injection, for tests only (`_fault`)



class Notice(UserWarning):
    """Something a writer did that the user should know, in one line (the CLI prints these as they come,
    after `prefix`)."""

    prefix = ""


_KINDS = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
          (stat.S_ISSOCK, "a socket")]


def _irregularity(path):
    """(missing, reason): whether nothing is at `path`, and why what is there is not a regular file to read
    ("is a folder", "not a regular file (a FIFO)"...), or None if it is one."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return True, None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return False, "not a regular file (a loop of symbolic links)"
        return False, f"cannot read it ({error.strerror})"
    if stat.S_ISREG(mode):
        return False, None
    if stat.S_ISDIR(mode):
        return False, "is a folder"
    return False, f"not a regular file ({next((kind for test, kind in _KINDS if test(mode)), 'special')})"


def not_a_file(path, missing="no such file"):
    """Why `path` is not a regular file to read (`missing` if nothing is there), or None if it is one."""
    absent, reason = _irregularity(path)
    return missing if absent else reason


def check_regular_file(path, missing="no such file"):
    """Raise FileNotFoundError ("path: `missing`") if nothing is at `path`, ValueError naming why if what is
    there is not a regular file."""
    absent, reason = _irregularity(path)
    if absent:
        raise FileNotFoundError(f"{path}: {missing}")
    if reason:
        raise ValueError(f"{path}: {reason}")


def temporary_beside(path, suffix=""):
    """A new empty file `.<name>.<pid>-<random>.part<suffix>` in `path`'s folder (created if needed).

    It is created with mode 0o666 less the umask, as `open` creates files, so a renamed
    temporary has a new file's permissions. `suffix` is for writers that insist on one
    (Keras: `.weights.h5`). The name carries the writer's process id, so that `tidy` in any
    process can tell a temporary whose writer is gone (killed, the machine restarted) from one
    being written (`ownerless`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}{TEMPORARY}{suffix}")
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(temporary)
        except FileExistsError:
            continue


def remove_temporary(temporary):
    """Remove a temporary file, if it is still there (not renamed into place)."""
    Path(temporary).unlink(missing_ok=True)


def fsync(path):
    """Flush a file's (or a folder's) data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_atomically(path, write, suffix=""):
    """Call write(temporary path) on a temporary file beside `path`, flush it, then rename it to `path`.

    An existing file at `path` stays as it was unless everything succeeds. Stale temporaries
    that killed writers left in the folder are removed first (`tidy`).
    """
    tidy(Path(path).parent)
    temporary = temporary_beside(path, suffix)
    try:
        write(temporary)
        fsync(temporary)
        rename(temporary, path)
    finally:
        remove_temporary(temporary)


def temporary_folder_beside(path):
    """A new empty folder `.<name>.<pid>-<random>.part` in `path`'s parent (created if needed), named as
    `temporary_beside` names files, so that `tidy` removes it once its writer is gone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}{TEMPORARY}")
        try:
            temporary.mkdir()
            return temporary
        except FileExistsError:
            continue


def write_folder(path, write, replace=False):
    """Call write(temporary folder) on a new folder beside `path`, flush its files, then rename it to `path`.

    A folder is whole or absent: an existing one at `path` is refused (FileExistsError) unless
    `replace`, when it is set aside and removed only after the new one is in place.
    """
    path = Path(path)
    tidy(path.parent)
    if path.exists() and not replace:
        raise FileExistsError(f"{path}: already exists")
    temporary = temporary_folder_beside(path)
    aside = None
    try:
        write(temporary)
        for written in [temporary, *temporary.rglob("*")]:
            if written.is_file() or written.is_dir():
                fsync(written)
        if path.exists():
            aside = temporary_folder_beside(path)
            aside.rmdir()
            rename(path, aside)
        rename(temporary, path)
    except BaseException:
        if aside is not None and aside.exists() and not path.exists():
            rename(aside, path)
        raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return path


@contextlib.contextmanager
def locked(folders):
    """Hold an exclusive `flock` on each folder (in a fixed order, so two holders cannot deadlock)."""
    descriptors = []
    try:
        for folder in sorted({str(Path(f).resolve()) for f in folders}):
            descriptors.append(os.open(folder, os.O_RDONLY))
            fcntl.flock(descriptors[-1], fcntl.LOCK_EX)
        yield
    finally:
        for descriptor in descriptors:
            os.close(descriptor)  # closing releases the lock


def ownerless(path):
    """Whether the temporary at `path` was left by a process that is gone: the process whose id its name carries
    is not running, or started after the file was last written (its id was reused). A temporary of the old
    naming, without an id, is ownerless an hour after its last write."""
    match = _TEMPORARY_NAME.match(Path(path).name)
    try:
        written = os.stat(path).st_mtime
    except OSError:
        return False
    if match is None:
        return False
    if match["pid"] is None:
        return time.time() - written > 3600
    started = _process_start(int(match["pid"]))
    return started is None or started > written + 1  # +1 s: the clock ticks that start times are counted in


def _process_start(pid):
    """When process `pid` started (seconds since the epoch), or None if there is no such process. Where /proc is
    missing (macOS) a live process counts as started at the epoch."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # another user's process: alive
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, counted from the name's end
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0


def tidy(folder):
    """Remove the temporaries in `folder` whose writers are gone (`ownerless`): a killed run's half-written
    files. A set-aside old file (`.<name>.<random>.part.old`) that no interrupted commit claims goes back to its
    name if nothing is there, else it is removed. Returns the names removed or put back."""
    folder = Path(folder)
    done = []
    try:
        candidates = sorted(folder.glob(f".*{TEMPORARY}*"))
    except OSError:
        return done
    if not candidates:
        return done
    with locked([folder]):  # a commit holds its folders' locks: under this one, no set-aside file is in use
        if any(folder.glob(JOURNALS)):  # an interrupted commit's files: `commits.recover` finishes it first
            return done
        for temporary in candidates:
            done += _tidy_one(folder, temporary)
    return done


def _tidy_one(folder, temporary):
    """[what was done] for one candidate of `tidy`: nothing unless it is a temporary without a live owner."""
    match = _TEMPORARY_NAME.match(temporary.name)
    if match is None or temporary.is_symlink() or not ownerless(temporary):
        return []
    if temporary.is_dir():  # a folder that `write_folder` was writing
        shutil.rmtree(temporary, ignore_errors=True)
        return [str(temporary)]
    if not temporary.is_file():
        return []
    target = folder / match["name"]
    if match["suffix"] == ASIDE and not (target.exists() or target.is_symlink()):
        rename(temporary, target)
        return [f"{target} (put back)"]
    temporary.unlink(missing_ok=True)
    return [str(temporary)]


def rename(source, target):
    """`os.replace`, the one rename that tfsep's writers use, so that tests can make the Nth one fail or kill the
    process there (`TFSEP_FAULTS`, see `_fault`)."""
    _fault("rename")
    os.replace(source, target)


def _faults():
    """[(operation, first, last, action)] from TFSEP_FAULTS, for tests only: "rename:3=kill" acts at the 3rd call,
    "rename:5+=eio" at the 5th and every later one, "rename:5-6=eio" at the 5th and 6th."""
    faults = []
    for item in filter(None, os.environ.get(FAULTS, "").split(",")):
        where, action = item.split("=")
        operation, calls = where.split(":")
        first, _, last = calls.rstrip("+").partition("-")
        last = float("inf") if calls.endswith("+") else int(last or first)
        faults.append((operation, int(first), last, action))
    return faults


_FAULT_COUNTS = {}


def _fault(operation):
    """Act as TFSEP_FAULTS says at this call of `operation`: `kill` (SIGKILL, as a power cut or the OOM killer
    would), `eio` (an I/O error), or `slow` (a second's pause)."""
    if FAULTS not in os.environ:
        return
    _FAULT_COUNTS[operation] = count = _FAULT_COUNTS.get(operation, 0) + 1
    action = next((action for name, first, last, action in _faults() if name == operation and first <= count <= last),
                  None)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "eio":
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    elif action == "slow":
        time.sleep(1.0)
