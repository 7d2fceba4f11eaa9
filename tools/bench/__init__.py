"""The harness that the benchmarks in tools/ share: rounds taken in turn, medians, peak RSS, commands
in fresh processes, one line that says what machine ran them, and markdown tables.

    import bench
    times = bench.median_seconds({"a": run_a, "b": run_b}, rounds=5)  # a, b, a, b, ... after a warm-up each
    print(bench.machine())
    print(bench.table(["system", "time"], [[name, f"{seconds:.2f} s"] for name, seconds in times.items()]))

`bench.workers` runs a separation in a process of its own (its peak RSS its own), timed one
call per round; `bench.separation` and `bench.fft` are what the tools time of tfsep.

This module is standard library only, so that the peers' environments (`tools/peers.py`)
import it too. The tools are run as `python tools/NAME.py`, which puts `tools/` on the path.
"""

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1]

# The fresh parent of `run_command`: it runs the command as its only child and prints the seconds, that child's
# peak RSS (RUSAGE_CHILDREN's maximum, which no other child of this parent can have raised) and the peak of its
# private part, RssAnon, sampled every 20 ms (the rest of RSS is pages mapped from files: shared libraries' code).
_PARENT = """import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from bench import peak_rss
start = time.perf_counter()
child, private = subprocess.Popen(sys.argv[2:]), 0
while child.poll() is None:
    try:
        with open(f"/proc/{child.pid}/status") as status:
            private = max(private, next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:")))
    except (OSError, StopIteration):
        pass
    time.sleep(0.02)
print(time.perf_counter() - start, peak_rss(children=True), private)
sys.exit(child.returncode)"""


def timed(function):
    """(what `function()` returns, the seconds it took)."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def stopwatch(function):
    """A zero-argument callable that calls `function()` and returns the seconds it took."""
    return lambda: timed(function)[1]


def take_turns(timers, rounds, warm_up=True, progress=False):
    """{name: [what each round's call returned]} of the zero-argument callables `timers`, each of which times one
    run (`stopwatch`, a worker's `run`, a `run_command`). They are called in turn, A, B, C, A, B, C, ..., so that
    the machine's load falls on all of them alike; with `warm_up`, each is called once, untimed, first; with
    `progress`, each round is counted on stderr."""
    if warm_up:
        for timer in timers.values():
            timer()
    results = {name: [] for name in timers}
    for round_ in range(rounds):
        for name, timer in timers.items():
            results[name].append(timer())
        if progress:
            print(f"round {round_ + 1}/{rounds}", file=sys.stderr, flush=True)
    return results


def medians(times):
    """{name: median} of {name: [seconds]}."""
    return {name: statistics.median(values) for name, values in times.items()}


def median_seconds(functions, rounds, warm_up=True):
    """{name: median seconds} of the zero-argument callables `functions`, timed in turn (`take_turns`)."""
    return medians(take_turns({name: stopwatch(function) for name, function in functions.items()}, rounds, warm_up))


def peak_rss(children=False):
    """Peak resident memory in bytes: this process's own (VmHWM), or with `children`, the largest of its
    waited-for children's (getrusage's ru_maxrss: a fresh parent per child, as `run_command` makes, makes it that
    child's own)."""
    if children:
        import resource

        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def run_command(command, private=False):
    """(wall seconds, peak RSS in bytes) of `command`, run as the only child of a fresh, small parent process; with
    `private`, also the peak of its private memory (RssAnon, sampled every 20 ms) in bytes."""
    result = subprocess.run([sys.executable, "-c", _PARENT, str(TOOLS), *map(str, command)], capture_output=True,
                            text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    seconds, peak, anonymous = result.stdout.split()[-3:]
    return (float(seconds), int(peak), int(anonymous)) if private else (float(seconds), int(peak))


def run_json(command):
    """The JSON value that `command`, a measurement in a process of its own, prints as its last line."""
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine(packages=("tensorflow", "ai-edge-litert")):
    """One line that says what ran the figures: cores, CPU model, AVX-512 or not, memory, Python and the versions of
    `packages` (those installed; read from their metadata, not imported)."""
    cpu = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    cpu = {key.strip(): value.strip() for key, value in cpu.items()}
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:")) / 2**20
    avx512 = "with" if "avx512f" in cpu.get("flags", "").split() else "without"
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join([f"{len(os.sched_getaffinity(0))}-core {cpu.get('model name', 'unknown CPU')} {avx512} "
                      f"AVX-512", f"{memory:.0f} GiB RAM", f"Python {platform.python_version()}", *versions])


def table(columns, rows, text_columns=1):
    """A markdown table of `columns` (names) and `rows` (lists of cells), the first `text_columns` columns aligned
    left, the others right, as numbers."""
    rule = ["---"] * text_columns + ["---:"] * (len(columns) - text_columns)
    return "\n".join("| " + " | ".join(map(str, cells)) + " |" for cells in [columns, rule, *rows])
