"""A training run's folder (`run.output`): one `tfsep train` at a time in it, and a restart that keeps the previous
run until the new one has a checkpoint of its own.

`claimed(output)` holds an exclusive `flock` on `output/.lock` for the whole run; a second run
into the same folder is refused in one line while the first lives, and the lock goes with
its process, whatever ends it. A restart moves the previous run's files into
`output/.previous/` rather than deleting them; they are removed once the new run has written
its first epoch's backup (`forget_previous`), put back if it fails before then, and put back
by the next command on that folder if it was killed before then (`recover`).
"""

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

LOCK = ".lock"
PREVIOUS = ".previous"
RUN_FILES = ("finished.json", "best.weights.h5", "history.csv", "model.keras", "config.yaml", "backup", "tensorboard")
BACKUP_COUNT = Path("backup") / "training_metadata.json"  # written when an epoch's backup is whole


class RunFolderError(RuntimeError):
    """A run folder that another run is using; the message says which process."""


@contextlib.contextmanager
def claimed(output):
    """Hold the run folder `output` (created if need be) for the block; RunFolderError if another process does."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(output / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise RunFolderError(f"{output}: another tfsep train (process {owner}) is running into this folder; wait "
                             "for it to end, or choose another run.output") from None
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        yield output
    finally:
        os.close(descriptor)  # closing releases the lock


def recover(output):
    """Put back the run that a restart set aside, if the restarted run ended before its first backup; else remove
    what is left of it. Returns a line saying what was put back, or None."""
    previous = Path(output) / PREVIOUS
    if not previous.is_dir():
        return None
    if (Path(output) / BACKUP_COUNT).exists():
        forget_previous(output)
        return None
    put_back(output)
    return f"{output}: a restart ended before its first epoch's backup; the previous run is back"


def set_aside(output):
    """Move the run's files into `output/.previous/`, for a restart."""
    output = Path(output)
    previous = output / PREVIOUS
    previous.mkdir(exist_ok=True)
    for name in RUN_FILES:
        if (output / name).exists():
            os.replace(output / name, previous / name)


def put_back(output):
    """Move the set-aside run's files back over whatever the restart wrote."""
    output = Path(output)
    previous = output / PREVIOUS
    for name in RUN_FILES:
        if (previous / name).exists():
            if (output / name).is_dir():
                shutil.rmtree(output / name)
            elif (output / name).exists():
                (output / name).unlink()
            os.replace(previous / name, output / name)
        elif (output / name).is_dir():  # the restart's own, with no previous counterpart
            shutil.rmtree(output / name)
        else:
            (output / name).unlink(missing_ok=True)
    shutil.rmtree(previous)


def forget_previous(output):
    """Remove the set-aside previous run: the restarted one has a checkpoint of its own."""
    shutil.rmtree(Path(output) / PREVIOUS, ignore_errors=True)
