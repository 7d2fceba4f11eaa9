"""Standard output and error that never stop a command: a closed, full or broken stream loses its text, not the work.

`guarded()` (the CLI runs every command in it) gives a closed descriptor 1 or 2 `/dev/null` to write to,
so that neither Python nor native code writes into whatever file takes its number, and wraps
`sys.stdout` and `sys.stderr` so that a write that fails (a reader that has gone, `| head -1`;
a full disk, `> /dev/full`; an I/O error) sends that stream and all its later text to
`/dev/null` instead of raising. Progress bars, messages and results degrade to nothing; the
separation goes on, and the exit status still says whether any input failed.
"""

import contextlib
import io
import os
import sys


class _Forgiving(io.TextIOBase):
    """A text stream that writes to `stream` until a write or flush fails, and to nothing after that."""

    def __init__(self, stream, descriptor):
        super().__init__()
        self._stream, self._descriptor, self.lost = stream, descriptor, False

    def write(self, text):
        if not self.lost:
            try:
                self._stream.write(text)
                if "\n" in text or "\r" in text:
                    self._stream.flush()  # as a terminal's line buffering would: progress and errors show at once
            except (OSError, ValueError):
                self._lose()
        return len(text)

    def flush(self):
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lose()

    def _lose(self):
        """Give up the stream: its descriptor now writes to /dev/null, so Python's flush at exit succeeds too."""
        self.lost = True
        _to_null(self._descriptor)

    def isatty(self):
        return not self.lost and self._stream.isatty()

    def fileno(self):
        return self._descriptor

    def writable(self):
        return True

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", "utf-8")


def _to_null(descriptor):
    null = os.open(os.devnull, os.O_WRONLY)
    if null != descriptor:  # a closed descriptor is the lowest free one: the open may have taken its number
        os.dup2(null, descriptor)
        os.close(null)


def _closed(descriptor):
    try:
        os.fstat(descriptor)
        return False
    except OSError:
        return True


@contextlib.contextmanager
def guarded():
    """Run the block with forgiving stdout and stderr (module docstring), then put the streams back."""
    saved = sys.stdout, sys.stderr
    for descriptor, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        if isinstance(stream, _Forgiving):
            continue
        if _closed(descriptor):
            _to_null(descriptor)
        if stream is None:  # the descriptor was closed when Python started
            stream = open(descriptor, "w", closefd=False)
        setattr(sys, name, _Forgiving(stream, descriptor))
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = (saved[0] if saved[0] is not None else sys.stdout._stream,
                                  saved[1] if saved[1] is not None else sys.stderr._stream)
