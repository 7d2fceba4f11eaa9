"""Committing a set of files all or nothing, so that a kill at any instant leaves the whole old set or the whole
new set, and the next command finishes what a killed one began.

A commit (`commit_set`) moves staged files (temporaries beside their targets, flushed to
disk) onto their targets:

1. Under a lock on every target folder, with stop signals held (`stops.held`), it writes a
   journal into each of those folders (`.tfsep-commit.<id>.json`, flushed, renamed into
   place): each target, its staged file, and the name its old file will be set aside under.
2. It sets the old files aside, renames the staged files into place, then removes the old
   files and the journals.
3. If a rename fails, it marks the journals as rolling back, removes the new files it placed
   and puts the old ones back. If that fails too, the journals stay and the error says
   where each old file is.

A journal found in a folder whose lock is free belongs to a commit whose process is gone
(`recover`, which every commit runs first for its folders): it is rolled forward if every
new file is there, staged or placed, and back otherwise, so the folder holds the whole new
set or the whole old one; each recovery says in one line what it did (a `files.Notice`).
"""

import json
import os
import secrets
import warnings
from pathlib import Path

from tfsep import files, stops


class CommitError(OSError):
    """A commit that failed and could not be undone; the message says where the old files are."""


class Recovered(files.Notice):
    """An interrupted commit that was finished or undone."""


def commit_set(staged, overwrite=False):
    """Move staged files onto their targets as one set: all of them, or none.

    `staged` maps each temporary file (beside its target) to its target. Existing targets are
    refused unless `overwrite` (FileExistsError naming the first). A stop received before the
    commit cancels it (`stops.Stopped`); one received during it is raised once it is done,
    naming the targets written. Concurrent commits into the same folders take turns, so a final
    set always comes from one commit. The temporaries are gone afterwards, unless a failed
    rollback left the journal that needs them.
    """
    staged = {Path(temporary): Path(target) for temporary, target in staged.items()}
    folders = sorted({target.parent for target in staged.values()})
    journals = None
    try:
        for temporary in staged:
            files.fsync(temporary)
        recover(folders)
        stops.check()
        try:
            with files.locked(folders), stops.held():
                entries = _entries(staged, overwrite)
                journals = _write_journals(folders, entries)
                try:
                    _forward(entries)
                except BaseException as error:
                    try:
                        _write_journals(folders, entries, journals, rolling_back=True)
                    except OSError:
                        pass  # the journal still says forward: a later recovery finishes the commit instead
                    _back(entries, journals, error)
                    journals = None
                    raise
                _finish(entries, journals, folders)
                journals = None
            stops.check()  # a stop that came during the commit, held until now
        except KeyboardInterrupt as stop:  # raised as the held signals are let through: the commit is done
            stop.completed = list(staged.values())
            raise
    finally:
        if journals is None:
            for temporary in staged:
                files.remove_temporary(temporary)


def _entries(staged, overwrite):
    """The journal's entries: each target, its staged file and where its old file goes; refuses existing targets
    unless `overwrite`, and folders in a target's place."""
    existing = [target for target in staged.values() if target.exists() or target.is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists (use --overwrite to replace it)")
    for target in existing:
        if target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(f"{target}: is a folder, which tfsep never replaces")
    return [{"target": str(target), "staged": str(temporary),
             "aside": str(_aside_name(target)) if target in existing else None}
            for temporary, target in staged.items()]


def recover(folders):
    """Finish or undo every interrupted commit with a journal in `folders`, then remove the stale temporaries there
    (`files.tidy`). A journal is acted on only under the locks of all its folders, which a live commit holds."""
    for folder in map(Path, folders):
        try:
            journals = sorted(folder.glob(files.JOURNALS))
        except OSError:
            journals = []
        for journal in journals:
            try:
                record = json.loads(journal.read_text())
            except (OSError, ValueError):
                continue  # removed meanwhile by its recovery elsewhere, or not one of tfsep's
            entries = record["entries"]
            with files.locked({Path(entry["target"]).parent for entry in entries}):
                if journal.exists():
                    said = _recover(record, [Path(j) for j in record["journals"]])
                    warnings.warn(Recovered(said), stacklevel=2)
        files.tidy(folder)


def recover_under(root):
    """`recover` every folder under `root` (itself included) that holds a journal or a temporary: what a command
    that writes anywhere below `root` runs first."""
    root = Path(root)
    if not root.is_dir():
        return
    folders = {path.parent for path in root.rglob(f".*{files.TEMPORARY}*")}
    folders |= {path.parent for path in root.rglob(files.JOURNALS)}
    recover(sorted(folders))


def _aside_name(target):
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{files.TEMPORARY}{files.ASIDE}")


def _write_journals(folders, entries, journals=None, rolling_back=False):
    """Write the journal into every folder (or rewrite `journals`); returns their paths. A first write that fails
    leaves no journal."""
    first = journals is None
    identity = secrets.token_hex(4)
    journals = journals or [Path(folder) / files.JOURNALS.replace("*", identity) for folder in folders]
    record = json.dumps({"pid": os.getpid(), "direction": "back" if rolling_back else "forward",
                         "journals": [str(j) for j in journals], "entries": entries}, indent=1)
    try:
        for journal in journals:
            partial = files.temporary_beside(journal)
            try:
                Path(partial).write_text(record)
                files.fsync(partial)
                files.rename(partial, journal)
            finally:
                files.remove_temporary(partial)
        for folder in folders:
            files.fsync(folder)
    except BaseException:
        if first:
            for journal in journals:
                journal.unlink(missing_ok=True)
        raise
    return journals


def _forward(entries):
    """Set every old file aside, then move every staged file into place."""
    for entry in entries:
        if entry["aside"] is not None and Path(entry["target"]).exists():
            files.rename(entry["target"], entry["aside"])
    for entry in entries:
        if Path(entry["staged"]).exists():
            files.rename(entry["staged"], entry["target"])


def _back(entries, journals, error):
    """Undo `_forward`: move each new file placed back to its staged name and put each old file back, going on past
    failures; then remove the journals. If any step fails, the journals stay for the next command and CommitError
    says where the old files are."""
    failures = []
    for entry in entries:
        target, staged, aside = Path(entry["target"]), Path(entry["staged"]), entry["aside"]
        try:
            if not staged.exists() and (target.exists() or target.is_symlink()) and (
                    aside is None or Path(aside).exists()):
                files.rename(target, staged)  # the new file, placed: kept, so that the set can still go forward
            if aside is not None and Path(aside).exists():
                files.rename(aside, target)
        except OSError as failure:
            failures.append(failure)
    if failures:
        where = "; ".join(f"the old {Path(e['target']).name} is {e['aside']}" for e in entries
                          if e["aside"] is not None and Path(e["aside"]).exists())
        raise CommitError(f"{entries[0]['target']}: writing the set failed ({error}) and so did putting the old "
                          f"files back ({failures[0]}); {where or 'every old file is in place'}; the next tfsep "
                          f"command that writes there finishes this (journal {journals[0]})") from None
    for journal in journals:
        Path(journal).unlink(missing_ok=True)


def _finish(entries, journals, folders):
    for entry in entries:
        if entry["aside"] is not None:
            Path(entry["aside"]).unlink(missing_ok=True)
    for folder in folders:
        files.fsync(folder)
    for journal in journals:
        Path(journal).unlink(missing_ok=True)


def _recover(record, journals):
    """Roll an interrupted commit forward if every new file is there, staged or placed, else back; one line."""
    entries = record["entries"]
    folders = sorted({Path(entry["target"]).parent for entry in entries})
    names = ", ".join(Path(entry["target"]).name for entry in entries)
    place = folders[0] if len(folders) == 1 else f"{len(folders)} folders"
    whole = all(Path(e["staged"]).exists() or Path(e["target"]).exists() or Path(e["target"]).is_symlink()
                for e in entries)
    if record["direction"] == "forward" and whole:
        for entry in entries:  # each entry's step that had not been taken yet
            target, staged, aside = Path(entry["target"]), Path(entry["staged"]), entry["aside"]
            if staged.exists():
                if aside is not None and target.exists() and not Path(aside).exists():
                    files.rename(target, aside)
                files.rename(staged, target)
        _finish(entries, journals, folders)
        return f"finished an interrupted commit in {place}: {names} are the new ones"
    _back(entries, journals, "an earlier tfsep command was stopped while writing them")
    for entry in entries:
        Path(entry["staged"]).unlink(missing_ok=True)
    return f"undid an interrupted commit in {place}: {names} are the old ones"
