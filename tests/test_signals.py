"""SIGTERM and SIGHUP stop every long command as Ctrl-C does: one line, exit 128 + signal, no temporaries.

`tfsep separate` is covered in test_outputs.py; here are train, evaluate, render-dataset and export.
"""

import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import tiny_config


def started(process, ready, timeout=120):
    """Wait until `ready()` or the timeout; False if `process` ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.05)
    return True


def stop(command, ready, number, cwd):
    process = subprocess.Popen([sys.executable, "-m", "tfsep.cli", *map(str, command)], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert started(process, ready), f"{command[0]} ended before the signal: {process.stderr.read()[-2000:]}"
    process.send_signal(number)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr.strip()


def temporaries(folder):
    return [path for path in folder.rglob("*") if ".part" in path.name]


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_training_stops_cleanly_leaving_its_backup_to_resume_from(number, rendered, tmp_path):
    run = tmp_path / "run"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(rendered, run, schedule={"epochs": 200})))
    backup = run / "backup" / "training_metadata.json"  # written after the epoch's history row: wait for it
    code, stderr = stop(["train", "--config", "config.yaml"], backup.is_file, number, tmp_path)
    assert (code, stderr) == (128 + number, f"tfsep: stopped by {signal.Signals(number).name}")
    assert not temporaries(run) and backup.is_file()


@pytest.mark.slow
def test_evaluate_stops_cleanly(rendered, tmp_path):
    report = tmp_path / "report"
    code, stderr = stop(["evaluate", "--dataset", rendered, "--subset", "train", "--oracle", "irm", "--report",
                         report, "-q"], lambda: time.sleep(4) or True, signal.SIGTERM, tmp_path)
    assert (code, stderr) == (143, "tfsep: stopped by SIGTERM")
    assert not report.exists() or not temporaries(report) and not (report / "metrics.json").exists()


@pytest.mark.slow
def test_render_dataset_stops_cleanly(tmp_path):
    pytest.importorskip("tfsep.corpus")
    out = tmp_path / "set"
    code, stderr = stop(["render-dataset", out, "--tracks", "20", "--jobs", "1"], lambda: time.sleep(6) or True,
                        signal.SIGTERM, tmp_path)
    assert (code, stderr.splitlines()[-1]) == (143, "tfsep: stopped by SIGTERM")  # after its progress bar
    assert not temporaries(out)
    for track in out.glob("*/*"):  # each track folder is complete or absent
        assert (track / "manifest.json").is_file() and (track / "mixture.wav").is_file(), sorted(track.iterdir())


@pytest.mark.slow
def test_export_stops_cleanly(tmp_path):
    import tfsep

    tfsep.build_model("bandconv", size="small").save(tmp_path / "small.keras")  # about 10 s to convert
    code, stderr = stop(["export", "small.keras", "--format", "tflite", "--output", "small.tflite"],
                        lambda: time.sleep(5) or True, signal.SIGTERM, tmp_path)
    assert (code, stderr) == (143, "tfsep: stopped by SIGTERM")
    assert not temporaries(tmp_path) and not (tmp_path / "small.tflite").exists()


def test_a_stop_that_lands_where_python_cannot_raise_is_raised_again_soon(tmp_path):
    """A weakref callback that the garbage collector runs swallows exceptions ("Exception ignored in ..."): the
    stop is raised there, printed nowhere, and raised again 50 ms later in the program's own code."""
    script = """
import signal, sys, time, weakref
from tfsep import stops
signal.signal(signal.SIGALRM, stops._retry)
sys.unraisablehook = stops._unraisable
stops._received[:] = [signal.SIGTERM, time.monotonic() - 2]  # a SIGTERM held for 2 s
class Thing:
    pass
thing = Thing()
reference = weakref.ref(thing, lambda _: stops._stop(signal.SIGTERM, None))
try:
    del thing  # the callback raises Stopped, which Python cannot raise there
    time.sleep(2)
    print("not stopped")
except stops.Stopped as stopped:
    print("stopped again", int(stopped.number))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.stdout.strip() == f"stopped again {int(signal.SIGTERM)}", result.stderr
    assert "Exception ignored" not in result.stderr
