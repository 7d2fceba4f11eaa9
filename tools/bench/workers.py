"""Timing workers: one separation in a process of its own, so that its peak RSS is its own, timed once per
request; `time_workers` takes them in turn (`bench.take_turns`).

The worker's end is `serve`: it warms up, answers "ready", then times one call per "run" request and answers
its seconds; at any other request, it answers its peak RSS in bytes and ends. Standard library only, so that a
peer's recipe can serve in its own environment (`serve_lines`, `command_worker`).
"""

import multiprocessing
import subprocess
import sys

from bench import peak_rss, stopwatch, take_turns


def serve(separate, requests, answer):
    """The worker's end of the protocol for the zero-argument callable `separate`, reading `requests` (an iterable
    of messages) and sending each answer through `answer`."""
    separate()
    answer("ready")
    time_one = stopwatch(separate)
    for request in requests:
        if request.strip() != "run":
            break
        answer(time_one())
    answer(peak_rss())


def serve_lines(separate):
    """`serve` on stdin and stdout, one message a line: the end of a `command_worker`."""
    serve(separate, sys.stdin, lambda message: print(message, flush=True))


class Worker:
    """The timing end of a worker: `send` a message, `receive` one, `wait` for the process to end."""

    def __init__(self, send, receive, wait):
        self.send, self.receive, self.wait = send, receive, wait

    def ready(self):
        """Whether the worker has warmed up and waits for requests."""
        return self.receive() == "ready"

    def run(self):
        """One separation; returns its seconds."""
        self.send("run")
        return float(self.receive())

    def stop(self):
        """Ends the worker; returns its peak RSS in bytes."""
        self.send("stop")
        peak = int(self.receive())
        self.wait()
        return peak


def command_worker(command):
    """A Worker running `command`, a script that serves with `serve_lines` (a peer's recipe in its environment)."""
    process = subprocess.Popen(list(map(str, command)), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(message):
        process.stdin.write(f"{message}\n")
        process.stdin.flush()

    return Worker(send, lambda: process.stdout.readline().strip(), process.wait)


def process_worker(make, *args):
    """A Worker serving `make(*args)`, a zero-argument separation, in a process spawned afresh (`make` is a function
    at a module's top level, such as `bench.separation.form_run`)."""
    context = multiprocessing.get_context("spawn")
    connection, end = context.Pipe()
    process = context.Process(target=_serve_pipe, args=(make, args, end))
    process.start()
    return Worker(connection.send, connection.recv, process.join)


def _serve_pipe(make, args, connection):
    serve(make(*args), iter(connection.recv, "stop"), connection.send)


def time_workers(workers, rounds, progress=False):
    """({name: [seconds of each round]}, {name: peak RSS in bytes}) of {name: Worker}: once all are ready, taken in
    turn for `rounds` rounds (counted on stderr with `progress`), then stopped."""
    if not all(worker.ready() for worker in workers.values()):
        raise RuntimeError("a worker did not start")
    times = take_turns({name: worker.run for name, worker in workers.items()}, rounds, False, progress)
    return times, {name: worker.stop() for name, worker in workers.items()}


def in_child(function, *args):
    """`function(*args)`, computed in a spawned process, so that this one loads no TensorFlow."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)
