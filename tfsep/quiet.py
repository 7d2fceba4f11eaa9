"""Native libraries' log lines kept off the terminal unless tfsep runs with `--debug`.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." at an interpreter's
first run, the TFLite converter prints absl warnings and Keras's list of captured
variables, and TensorFlow >= 2.18 prints notes at import; none of it can be switched off
from Python. `native_output()` captures what is
written to file descriptors 1 and 2 inside a block, and shows it only if the block fails.
"""

import contextlib
import os
import sys
import tempfile

DEBUG = "TFSEP_DEBUG"  # "1": show everything (set by `tfsep --debug`)


def debugging():
    return os.environ.get(DEBUG) == "1"


@contextlib.contextmanager
def native_output():
    """Run the block with stdout and stderr, Python's and native code's, captured into a temporary file.

    On an exception the capture is written to stderr before the exception goes on; with
    TFSEP_DEBUG=1 nothing is captured.
    """
    if debugging():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        failed = False
        try:
            yield
        except Exception:  # not after Ctrl-C or SIGTERM: those say so in one line
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved):
                os.dup2(original, fd)
                os.close(original)
            if failed:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))
                sys.stderr.flush()


def import_tensorflow():
    """Import TensorFlow with its start-up log lines captured (TensorFlow 2.18 and later print oneDNN and
    CUDA notes through absl before TF_CPP_MIN_LOG_LEVEL is read)."""
    with native_output():
        import tensorflow  # noqa: F401
