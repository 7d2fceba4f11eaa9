"""The line protocol of a timing worker for `tools/bench_peers.py`, for peers run in environments of their own.

Standard library only, so that any peer environment can import it (`tools/` is on the path of
the scripts run from it).
"""

import resource
import sys
import time


def serve(separate):
    """Run `separate()` once to warm up and print "ready"; then time one call per "run" line on stdin,
    printing its seconds; at any other line, print the peak RSS in bytes and return."""
    separate()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        separate()
        print(time.perf_counter() - start, flush=True)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, flush=True)
