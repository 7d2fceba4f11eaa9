"""SIGTERM, SIGHUP and Ctrl-C: a stop that tfsep's commands end on cleanly, as after Ctrl-C.

`install()` (the CLI calls it) makes SIGTERM and SIGHUP raise `Stopped` where the program is,
so that `finally` blocks remove temporary files. A signal that lands inside a library
(TensorFlow calling back into Python from C++, say) is held for up to 1 s, retried every 50 ms
by SIGALRM, because an exception raised there can surface as an unrelated error; it is raised
once, and the cleanup it starts is not interrupted again.

`held()` defers every stop signal for the length of a block that must not be cut in two (the
commit of a set of outputs): a stop that arrives before the block starts cancels it
(`check()`), one that arrives inside it is raised when the block has finished.
"""

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PACKAGE = str(Path(__file__).resolve().parent)
_received = []  # the signal received, and when


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is so that it cleans up as after Ctrl-C.

    `completed` names what a block under `held()` finished before the stop was raised (the
    outputs it committed), or is empty.
    """

    def __init__(self, number):
        super().__init__(number)
        self.number = number
        self.completed = []


def install():
    """Make SIGTERM and SIGHUP (a timeout, `docker stop`, systemd, a closed terminal) raise `Stopped`."""
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _stop)
    signal.signal(signal.SIGALRM, _retry)
    sys.unraisablehook = _unraisable


def requested():
    """The stop signal received and not yet raised (held in a library's code), or None."""
    return _received[0] if _received else None


def check():
    """Raise `Stopped` if a stop has been received (and held in a library's code): what was about to start must
    not, and what has just finished is what it ended after."""
    if _received:
        signal.setitimer(signal.ITIMER_REAL, 0)  # raised here: no retry will raise it again
        raise Stopped(_received[0])


@contextlib.contextmanager
def held():
    """Run the block with SIGINT, SIGTERM and SIGHUP deferred: one that arrives meanwhile is recorded, and its
    handler runs when the block is done (a `Stopped`, or KeyboardInterrupt, raised after it), or, if the block
    fails, it is left for `requested()`. Python runs signal handlers in the main thread only, whichever thread the
    signal reaches; elsewhere nothing is deferred (nor delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived = []
    previous = {number: signal.getsignal(number) for number in STOPS}
    for number in STOPS:
        signal.signal(number, lambda number, frame: arrived.append(number))
    try:
        yield
    except BaseException:
        _restore(previous)
        if arrived and not _received:
            _received[:] = [arrived[0], time.monotonic()]
        raise
    _restore(previous)
    if arrived:
        _deliver(arrived[0], previous[arrived[0]])


def _restore(handlers):
    for number, handler in handlers.items():
        signal.signal(number, handler)


def _deliver(number, handler):
    """Act on signal `number` as `handler` (a signal handler as `signal.getsignal` returns it) would have."""
    if callable(handler):
        handler(number, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(number)


def reset():
    """Forget a stop (for a process that goes on after handling one, as tests do)."""
    _received.clear()


def exit_code(number):
    """Stop the retries, say why in one line and return the exit status 128 + the signal's number."""
    # No more retries: one still armed, or already delivered, would fire once Python has reset its handler.
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.setitimer(signal.ITIMER_REAL, 0)
    reason = "interrupted" if number == signal.SIGINT else f"stopped by {signal.Signals(number).name}"
    return reason, 128 + number


def _stop(number, frame):
    """Raise `Stopped` in tfsep's own code, or after at most 1 s in a library's."""
    if not _received:
        _received[:] = [number, time.monotonic()]
    in_library = frame is not None and not frame.f_code.co_filename.startswith(PACKAGE)
    if in_library and time.monotonic() - _received[1] < 1.0:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    raise Stopped(_received[0])


def _retry(_, frame):
    if _received:
        _stop(_received[0], frame)


def _unraisable(hook_args, default=sys.unraisablehook):
    """A `Stopped` raised where Python cannot raise (a weakref callback or `__del__` that the garbage collector
    ran) is raised again 50 ms later instead of being printed as ignored; anything else goes to `default`."""
    if isinstance(hook_args.exc_value, Stopped):
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    default(hook_args)
