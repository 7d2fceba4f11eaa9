"""The callbacks of a training run: validation SDR and its summary line, TensorBoard examples, and the files that
let a killed run resume (the best weights, the per-epoch backup), each written whole.

Every file goes through a temporary file renamed into place (`files.replace_atomically`),
so a kill at any moment leaves the previous version or the new one, never half of one.
Only Keras's public hooks are used: a resumed run loads `RunBackup`'s weights itself and
passes its epoch count to `fit(initial_epoch=...)`.
"""

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfsep._keras import keras
from tfsep.audio import error_reason
from tfsep.files import replace_atomically
from tfsep.plots import spectrogram_image


class TrainingError(RuntimeError):
    """A run that cannot start or go on: an unreadable checkpoint or backup, or a loss that became NaN."""


def save_weights(model, path):
    """model.save_weights(path), written whole: through a temporary file beside it, renamed into place."""
    replace_atomically(path, lambda partial: model.save_weights(str(partial), overwrite=True), suffix=".weights.h5")


def load_weights(model, path, unreadable):
    """model.load_weights(path) with its optimizer's state (built first if need be); if the file cannot be read,
    TrainingError with `unreadable(reason)` as its message."""
    try:
        optimizer = getattr(model, "optimizer", None)  # None before compile
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)  # so that its saved state loads too
        model.load_weights(path)
    except Exception as error:
        raise TrainingError(unreadable(error_reason(error))) from None


def load_checkpoint(model, path):
    """Load the weights file `path` (the best checkpoint) into `model`; one-line TrainingError if unreadable."""
    load_weights(model, path, lambda reason: f"{path}: unreadable checkpoint ({reason}); delete it, and the run "
                 "writes a new one at its next best epoch")


def logged_values(history_csv, key):
    """The finite values of column `key` in a run's history.csv, epoch by epoch ([] without any)."""
    try:
        with open(history_csv, newline="") as file:
            values = [float(row[key]) for row in csv.DictReader(file) if row.get(key)]
    except (OSError, ValueError, KeyError):
        return []
    return [value for value in values if np.isfinite(value)]


def best_validation_sdr(history_csv):
    """The highest finite val_sdr in a run's history.csv, or None."""
    return max(logged_values(history_csv, "val_sdr"), default=None)


class MeanSDR(keras.callbacks.Callback):
    """Adds `val_sdr`, the mean over sources of the validation global SDR, to the logs."""

    def __init__(self, sources):
        super().__init__()
        self.sources = sources

    def on_epoch_end(self, epoch, logs=None):
        values = [logs[f"val_{s}_sdr"] for s in self.sources if f"val_{s}_sdr" in logs]
        if values:
            logs["val_sdr"] = float(np.mean(values))


class WallClock(keras.callbacks.Callback):
    """Adds `minutes`, the training time so far (epochs and their validation), to the logs, so that
    history.csv holds learning curves against time; stops the run after the first epoch that ends past
    `limit` minutes, if given.

    `minutes_before` is the time of a resumed run's earlier epochs.
    """

    def __init__(self, limit=None, minutes_before=0.0):
        super().__init__()
        self.limit, self.minutes = limit, minutes_before

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.minutes += (time.perf_counter() - self.start) / 60
        logs["minutes"] = self.minutes
        if self.limit is not None and self.minutes >= self.limit:
            self.model.stop_training = True


class TrainingProgress(keras.callbacks.Callback):
    """A progress bar of the epoch's steps showing the loss only (tqdm, on stderr, where it is a terminal), which it
    clears at the epoch's end, so that `EpochSummary`'s line is all an epoch leaves on the terminal or in a log."""

    def __init__(self, epochs, steps):
        super().__init__()
        self.epochs, self.steps, self.bar = epochs, steps, None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False,
                        dynamic_ncols=True, disable=None)  # None: off where stderr is no terminal

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix_str(f"loss {float(logs['loss']):.4g}", refresh=False)

    def on_test_begin(self, logs=None):
        if self.bar is not None:
            self.bar.set_postfix_str("validating", refresh=True)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()


class EpochSummary(keras.callbacks.Callback):
    """One readable line per epoch: losses, validation SDR per source and mean, learning rate, time."""

    def __init__(self, sources, epochs, stream=sys.stdout):
        super().__init__()
        self.sources, self.epochs, self.stream = sources, epochs, stream

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        sdrs = " ".join(f"{s} {logs[f'val_{s}_sdr']:.2f}" for s in self.sources if f"val_{s}_sdr" in logs)
        mean = f" mean {logs['val_sdr']:.2f} dB" if "val_sdr" in logs else ""
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        print(f"epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4g}, val_loss "
              f"{logs.get('val_loss', float('nan')):.4g} | val SDR {sdrs}{mean} | lr {rate:.2g} | "
              f"{time.perf_counter() - self.start:.1f} s", file=self.stream, flush=True)


class ValidationExamples(keras.callbacks.Callback):
    """Every `every` epochs, TensorBoard spectrograms (`plots.spectrogram_image`) and audio of a validation
    mixture, its estimates and references.

    Args:
        example: (mixture, {source: stem}), each (batch, samples, channels); the first of the batch is shown.
    """

    def __init__(self, log_dir, example, sources, sample_rate, every):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "examples"))
        self.mixture, self.stems = example
        self.sources, self.sample_rate, self.every = sources, sample_rate, every

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every:
            return
        estimates = self.model(self.mixture, training=False)
        with self.writer.as_default(step=epoch):
            tracks = {"mixture": self.mixture}
            for source in self.sources:
                tracks[f"{source}/estimate"] = estimates[source]
                tracks[f"{source}/reference"] = self.stems[source]
            for name, waveform in tracks.items():
                waveform = tf.cast(waveform[:1], tf.float32)
                tf.summary.image(f"spectrogram/{name}", spectrogram_image(waveform[0].numpy()))
                tf.summary.audio(f"audio/{name}", tf.clip_by_value(waveform, -1.0, 1.0), self.sample_rate)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras's TerminateOnNaN, which also records where it stopped: `where` is (epoch, batch), from 1."""

    def __init__(self):
        super().__init__()
        self.where, self._epoch = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.where is None and loss is not None and not np.isfinite(float(loss)):
            self.where = (self._epoch + 1, batch + 1)
        super().on_batch_end(batch, logs)


class BestWeights(keras.callbacks.Callback):
    """Writes the model's weights to `path` whenever `monitor` (higher is better) beats its best so far.

    `initial_best` is the best of the epochs before a resumed run's, which a new best must beat.
    """

    def __init__(self, path, monitor="val_sdr", initial_best=None):
        super().__init__()
        self.path, self.monitor = path, monitor
        self.best = -np.inf if initial_best is None else initial_best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and np.isfinite(value) and value > self.best:
            self.best = float(value)
            save_weights(self.model, self.path)


class RunBackup(keras.callbacks.Callback):
    """After every epoch, the model's weights with its optimizer's state, then the number of epochs done, into
    `backup_dir` (`latest.weights.h5`, `training_metadata.json`), each written whole.

    The count is written last, so it never counts an epoch whose weights are not there.
    After a NaN loss (`nan_guard.where` set) the last good epoch's backup is kept as it is.
    A resumed run calls `restore` before `fit(initial_epoch=epochs_done(backup_dir))`.
    """

    WEIGHTS, METADATA = "latest.weights.h5", "training_metadata.json"

    def __init__(self, backup_dir, nan_guard):
        super().__init__()
        self.backup_dir, self.nan_guard = Path(backup_dir), nan_guard

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.where:
            return
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, self.backup_dir / self.WEIGHTS)
        metadata = json.dumps({"epoch": epoch + 1})
        replace_atomically(self.backup_dir / self.METADATA, lambda partial: Path(partial).write_text(metadata))

    @classmethod
    def epochs_done(cls, backup_dir):
        """The number of epochs that the backup in `backup_dir` holds (0 without one)."""
        metadata = Path(backup_dir) / cls.METADATA
        if not metadata.exists():  # no backup, or killed before its first count was written
            return 0
        try:
            return int(json.loads(metadata.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise unreadable_backup(backup_dir, error_reason(error)) from None

    @classmethod
    def restore(cls, model, backup_dir):
        """Load the backup's weights and optimizer state into the compiled `model`."""
        load_weights(model, Path(backup_dir) / cls.WEIGHTS, lambda reason: str(unreadable_backup(backup_dir, reason)))


def unreadable_backup(backup_dir, reason):
    return TrainingError(f"{backup_dir}: the backup of this run is unreadable ({reason}); delete that folder to "
                         "start the run again from its first epoch")
