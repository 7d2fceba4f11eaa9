"""Training faults: broken data sets, a NaN loss, SIGKILL at random moments, corrupt checkpoints.

Every case ends either in a finished run whose model loads, or in one line on stderr that
names the problem, with the run folder's good files left as they were.
"""

import csv
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import yaml
from conftest import run_tfsep, tiny_config, train_killed_after_two_epochs

import tfsep
from tfsep import config as configuration
from tfsep import train as training
from tfsep.callbacks import RunBackup


def run_cli(config, config_path):
    """`tfsep train` of `config`, written to `config_path` first."""
    config_path.write_text(yaml.safe_dump(config))
    return run_tfsep("train", "--config", config_path)


def train_command(rendered, tmp_path, epochs):
    """(run folder, the `tfsep train` command of a tiny run of `epochs` into it), its config written."""
    run = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(rendered, run, schedule={"epochs": epochs})))
    return run, [sys.executable, "-m", "tfsep.cli", "train", "--config", str(config_path)]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def epochs_logged(run):
    """The epochs in the run's history.csv, in order; empty before the first one ends."""
    if not (run / "history.csv").is_file():
        return []
    return [int(row["epoch"]) for row in csv.DictReader(open(run / "history.csv"))]


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    ("missing stem", r"track '[^']+': missing bass.wav"),
    ("short stem", r"track '[^']+': .*drums.wav has samples \d+, but the mixture has \d+"),
    ("other rate", r"track '[^']+': .*vocals.wav has sample_rate 22050"),
    ("empty split", r"valid: no tracks for subset 'valid'"),
])
def test_broken_data_sets_stop_before_training_naming_the_track(damage, message, rendered, tmp_path):
    root = tmp_path / "band"
    shutil.copytree(rendered, root)
    track = next((root / "train").iterdir())
    if damage == "missing stem":
        (track / "bass.wav").unlink()
    elif damage == "short stem":
        audio, rate = soundfile.read(track / "drums.wav")
        soundfile.write(track / "drums.wav", audio[:-100], rate)
    elif damage == "other rate":
        audio, _ = soundfile.read(track / "vocals.wav")
        soundfile.write(track / "vocals.wav", audio, 22050)
    else:
        for folder in (root / "valid").iterdir():
            shutil.rmtree(folder)
    result = run_cli(tiny_config(root, tmp_path / "run"), tmp_path / "config.yaml")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfsep: error:"), result.stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "run" / "history.csv").exists() and not (tmp_path / "run" / "backup").exists()


class PoisonWeights(tfsep._keras.keras.callbacks.Callback):
    """Sets one weight to NaN at the start of epoch `epoch` (from 0), as a diverging run would; records the
    best checkpoint's digest just before."""

    def __init__(self, epoch, checkpoint):
        super().__init__()
        self.epoch, self.checkpoint, self.digest_before = epoch, checkpoint, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.digest_before = digest(self.checkpoint)
            weight = self.model.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, weight.dtype))


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(rendered, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(rendered, run, schedule={"epochs": 5})
    poison = PoisonWeights(2, run / "best.weights.h5")
    callbacks = training._callbacks
    monkeypatch.setattr(training, "_callbacks", lambda *args: callbacks(*args) + [poison])
    with pytest.raises(training.TrainingError, match=r"the training loss became NaN at epoch 3, batch 1, and the "
                       r"run stopped; .*model.keras holds the best weights before it"):
        training.train(config)
    assert digest(run / "best.weights.h5") == poison.digest_before  # the NaN epoch saved nothing over it
    model = tfsep.load_model(run / "model.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 2  # last good epoch

    monkeypatch.setattr(training, "_callbacks", callbacks)  # the same config resumes from the last good epoch
    history = training.train(config)
    assert history.epoch == [2, 3, 4] and np.isfinite(history.history["loss"]).all()
    assert not (run / "backup").exists()


def wait_for_epochs(process, run, count, timeout=240):
    """Waits until history.csv holds `count` epochs; returns False if `process` ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(epochs_logged(run)) >= count:
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError(f"no epoch {count} within {timeout} s")


def kill_at_random_moment(process, run, moment, rng):
    """SIGKILLs `process` during start-up or inside an epoch; returns False if it ended first.

    The moments follow the run's own progress, not wall-clock seconds alone, so a faster
    machine cannot outrun them: "start-up" is 0.5-5 s after launch (imports, data loading,
    model building) or the end of its first epoch, whichever comes first; "epoch" waits for
    two more epochs, then kills after a random part of one epoch's duration (inside
    training, validation or the checkpoint writes).
    """
    done = len(epochs_logged(run))
    if moment == "start-up":
        deadline = time.time() + rng.uniform(0.5, 5.0)
        while time.time() < deadline and len(epochs_logged(run)) == done:
            if process.poll() is not None:
                return False
            time.sleep(0.02)
    else:
        if not wait_for_epochs(process, run, done + 1):
            return False
        started = time.time()
        if not wait_for_epochs(process, run, done + 2):
            return False
        time.sleep(rng.uniform(0.0, 1.0) * (time.time() - started))
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_and_finish_with_a_loadable_model(rendered, tmp_path):
    rng = np.random.default_rng(20261124)
    run, command = train_command(rendered, tmp_path, 12)
    # At most 2 × 1 + 2 × 3 epochs pass during the four kills, so the run is never done before one.
    for moment in rng.permutation(["start-up", "start-up", "epoch", "epoch"]):
        with open(tmp_path / "stderr.txt", "w+") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
            killed = kill_at_random_moment(process, run, moment, rng)
            stderr.seek(0)
            assert killed, f"the run ended before its {moment} kill: {stderr.read()[-2000:]}"
    # Then a kill in the final save: after the last epoch is logged, while the model is written.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_epochs(process, run, 12, timeout=600)
    time.sleep(rng.uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert epochs_logged(run)[-1] == 11
    model = tfsep.load_model(run / "model.keras")
    assert model.sources == ("vocals", "drums", "bass", "other")
    assert not list(run.rglob(".*.part*")) and (run / "finished.json").is_file() and not (run / "backup").exists()


@pytest.mark.slow
def test_a_run_killed_after_some_epochs_resumes_from_the_next_one(rendered, tmp_path):
    run, command = train_command(rendered, tmp_path, 8)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_epochs(first, run, 2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    resume_epoch = json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] + 1
    assert 2 <= resume_epoch < 8

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert epochs_logged(run)[-(8 - resume_epoch):] == list(range(resume_epoch, 8))
    assert f"epoch {resume_epoch + 1}/8" in second.stdout and "epoch 1/8" not in second.stdout
    assert (run / "model.keras").is_file() and not (run / "backup").exists()


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before the history row", "after the history row", "inside the history row"])
def test_a_run_killed_at_an_epochs_end_logs_each_epoch_once(moment, rendered, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(rendered, run, schedule={"epochs": 4})
    log, backup = training.keras.callbacks.CSVLogger.on_epoch_end, RunBackup.on_epoch_end

    def killed_before_the_row(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt
        log(self, epoch, logs)

    def killed_before_the_third_backup(self, epoch, logs=None):
        if epoch == 2:
            if moment == "inside the history row":
                history = (run / "history.csv").read_bytes()
                (run / "history.csv").write_bytes(history[:-7])
            raise KeyboardInterrupt
        backup(self, epoch, logs)

    if moment == "before the history row":
        monkeypatch.setattr(training.keras.callbacks.CSVLogger, "on_epoch_end", killed_before_the_row)
    else:
        monkeypatch.setattr(RunBackup, "on_epoch_end", killed_before_the_third_backup)
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    monkeypatch.undo()
    history = training.train(config)
    assert history.epoch == [2, 3]  # the epoch without a backup is trained again...
    assert epochs_logged(run) == [0, 1, 2, 3]  # ...and logged once


@pytest.mark.slow
def test_corrupt_checkpoints_stop_the_run_with_one_line_and_it_goes_on_once_removed(rendered, tmp_path,
                                                                                     monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(rendered, run, schedule={"epochs": 4})
    train_killed_after_two_epochs(config, monkeypatch)
    shutil.copytree(run, tmp_path / "good")
    cases = {
        "backup/latest.weights.h5": r"backup: the backup of this run is unreadable \(.+\); delete that folder",
        "backup/training_metadata.json": r"backup: the backup of this run is unreadable \(.+\); delete that folder",
        "best.weights.h5": r"best.weights.h5: unreadable checkpoint \(.+\); delete it",
    }
    for damaged, message in cases.items():
        path = run / damaged
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a bad copy
        result = run_cli(config, tmp_path / "config.yaml")
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and re.search(message, lines[0]), result.stderr[-2000:]
        assert (run / "history.csv").read_text() == (tmp_path / "good" / "history.csv").read_text()  # not trained
        shutil.copy(tmp_path / "good" / damaged, path)

    (run / "best.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(training.TrainingError, match="best.weights.h5: unreadable checkpoint"):
        training.best_model(run)
    (run / "best.weights.h5").unlink()  # as the message says: the run goes on and writes a new one
    again = run_cli(config, tmp_path / "config.yaml")
    assert again.returncode == 0, again.stderr[-2000:]
    assert epochs_logged(run) == [0, 1, 2, 3]
    tfsep.load_model(run / "model.keras")
    assert (run / "best.weights.h5").is_file()


@pytest.mark.slow
def test_a_finished_run_says_so_and_a_changed_config_is_refused_by_name(rendered, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(rendered, run, schedule={"epochs": 1})
    first = run_cli(config, tmp_path / "config.yaml")
    assert first.returncode == 0, first.stderr[-2000:]
    model, history = digest(run / "model.keras"), (run / "history.csv").read_text()
    assert json.loads((run / "finished.json").read_text())["epochs"] == 1 and not (run / "backup").exists()

    again = run_cli(config, tmp_path / "config.yaml")
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == (
        f"{run}: this run has finished; its model is {run / 'model.keras'} (restart it to train again)")
    assert digest(run / "model.keras") == model and (run / "history.csv").read_text() == history

    (run / "finished.json").unlink()
    saved = (run / "config.yaml").read_text()
    changed = run_cli({**config, "optimizer": {**config.get("optimizer", {}), "learning_rate": 0.5}},
                      tmp_path / "config.yaml")
    assert changed.returncode == 1
    assert re.search(r"was started with other settings: optimizer.learning_rate \(.+ -> 0.5\)", changed.stderr)
    assert (run / "config.yaml").read_text() == saved  # compared before anything is written


def test_run_seed_fixes_the_initial_weights(rendered):
    config = configuration.load_config(tiny_config(rendered, "unused"))
    weights = []
    for _ in range(2):
        tfsep._keras.keras.utils.set_random_seed(config.run.seed)
        weights.append(training.build_separation_model(config).get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_second_run_into_the_same_folder_is_refused_while_the_first_lives(rendered, tmp_path):
    run, command = train_command(rendered, tmp_path, 3)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((run / ".lock").is_file() and (run / ".lock").read_text()) and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    assert second.stderr.strip() == (f"tfsep: error: {run}: another tfsep train (process {first.pid}) is running "
                                     "into this folder; wait for it to end, or choose another run.output")
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert epochs_logged(run) == [0, 1, 2]
    assert json.loads((run / "finished.json").read_text())["best_val_sdr"] is not None


@pytest.mark.slow
def test_a_restart_killed_before_its_first_backup_loses_nothing(rendered, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(rendered, run, schedule={"epochs": 2})
    assert run_cli(config, tmp_path / "config.yaml").returncode == 0
    finished = {name: digest(run / name) for name in ("model.keras", "best.weights.h5", "history.csv")}
    command = [sys.executable, "-m", "tfsep.cli", "train", "--config", str(tmp_path / "config.yaml"), "--restart"]
    restart = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / ".previous").is_dir() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)  # into its start-up: data loading, model building
    restart.send_signal(signal.SIGKILL)
    restart.wait()
    assert not (run / "backup" / "training_metadata.json").exists()
    again = run_cli(config, tmp_path / "config.yaml")
    assert again.returncode == 0
    assert f"{run}: a restart ended before its first epoch's backup; the previous run is back" in again.stderr
    assert "this run has finished" in again.stdout
    assert {name: digest(run / name) for name in finished} == finished and not (run / ".previous").exists()


@pytest.mark.slow
def test_a_restart_that_fails_puts_the_previous_run_back_and_one_that_trains_drops_it(rendered, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(rendered, run, schedule={"epochs": 2})
    assert run_cli(config, tmp_path / "config.yaml").returncode == 0
    model = digest(run / "model.keras")
    broken = tmp_path / "broken"  # the same data set, with a track that lacks a stem
    shutil.copytree(rendered, broken)
    next((broken / "train").iterdir()).joinpath("bass.wav").unlink()
    (tmp_path / "restart.yaml").write_text(yaml.safe_dump({**config, "data": {**config["data"],
                                                                                "root": str(broken)}}))
    failed = subprocess.run([sys.executable, "-m", "tfsep.cli", "train", "--config", str(tmp_path / "restart.yaml"),
                             "--restart"], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "missing bass.wav" in failed.stderr
    assert digest(run / "model.keras") == model and not (run / ".previous").exists()
    done = subprocess.run([sys.executable, "-m", "tfsep.cli", "train", "--config", str(tmp_path / "config.yaml"),
                           "--restart"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and epochs_logged(run) == [0, 1] and not (run / ".previous").exists()
