"""Writing files so that nothing is lost, half-written or mixed: temporary files beside their targets,
single atomic replacements, and sets of files committed all or nothing under a folder lock.

Every writer in tfsep goes through here: stems, reports, models, exports, caches.
"""

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from pathlib import Path

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
    """A new empty file `.<name>.<random>.part<suffix>` in `path`'s folder (created if needed).

    It is created with mode 0o666 less the umask, as `open` creates files, so a renamed
    temporary has a new file's permissions. `suffix` is for writers that insist on one
    (Keras: `.weights.h5`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part{suffix}")
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(temporary)
        except FileExistsError:
            continue


def fsync(path):
    """Flush a file's (or a folder's) data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_atomically(path, write, suffix=""):
    """Call write(temporary path) on a temporary file beside `path`, flush it, then rename it to `path`.

    An existing file at `path` stays as it was unless everything succeeds.
    """
    temporary = temporary_beside(path, suffix)
    try:
        write(temporary)
        fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def commit_set(staged, overwrite=False):
    """Move staged files onto their targets as one set: all of them, or none.

    `staged` maps each temporary file (beside its target) to its target. Under a lock on the
    targets' folders, existing targets are refused unless `overwrite` (FileExistsError naming
    the first), else set aside; then every temporary is renamed into place. If any rename
    fails, the ones made are undone and the set-aside files restored, so every target is as
    it was; the temporaries are removed either way. Concurrent commits into the same
    folders take turns, so a final set always comes from one commit.
    """
    staged = {Path(temporary): Path(target) for temporary, target in staged.items()}
    try:
        for temporary in staged:
            fsync(temporary)
        folders = {target.parent for target in staged.values()}
        with locked(folders):
            existing = [t for t in staged.values() if t.exists() or t.is_symlink()]
            if existing and not overwrite:
                raise FileExistsError(f"{existing[0]}: already exists (use --overwrite to replace it)")
            placed, set_aside = [], {}
            try:
                for target in existing:
                    aside = Path(temporary_beside(target, ".old"))
                    try:
                        os.replace(target, aside)
                    except BaseException:
                        aside.unlink()
                        raise
                    set_aside[target] = aside
                for temporary, target in staged.items():
                    os.replace(temporary, target)
                    placed.append(target)
            except BaseException:
                for target in placed:
                    target.unlink(missing_ok=True)
                for target, aside in set_aside.items():
                    os.replace(aside, target)  # should this fail, the old file stays beside its target
                raise
            for aside in set_aside.values():
                aside.unlink()
            for folder in folders:
                fsync(folder)
    finally:
        for temporary in staged:
            temporary.unlink(missing_ok=True)
