"""Training: one YAML config -> data, model, losses, optimiser and callbacks -> `model.fit`.

A run is described completely by its config (see `configs/`), checked before anything
runs. It writes into `run.output`:

- `model.keras`: the SeparationModel with the weights of the best validation SDR;
- `best.weights.h5` (ModelCheckpoint on the mean validation SDR), `history.csv` (CSVLogger);
- `backup/`: BackupAndRestore's state, so that the same command resumes a killed run;
  kept after a NaN loss, which stops the run with `TrainingError`;
- `tensorboard/`: scalars, spectrograms and audio of validation examples;
- `config.yaml`: the config as run;
- `finished.json`: written last, once `model.keras` is in place: the run is done, and the
  same command says so instead of training again (`restart=True` trains it again).

A run resumes only with the config it was started with; a changed key is refused by name.
`run.seed` seeds the weights' initialisation, and a resumed run continues the data stream
where its last finished epoch left it.

Checkpoints are written beside their target and renamed into place, so a run killed at
any moment keeps whole files, and unreadable ones stop a resumed run before it trains.
"""

import csv
import dataclasses
import json
import math
import re
import shutil
import sys
import time
import types
import typing
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from tfsep import data, pretrained
from tfsep.audio import error_reason
from tfsep.files import replace_atomically
from tfsep._keras import keras
from tfsep.layers import STFT, Magnitude, SplitSources
from tfsep.losses import MagnitudeLoss, WaveformLoss
from tfsep.metrics import GlobalSDR
from tfsep.models import SOURCES, build_model, load_model, reconfigure, stem_magnitudes


class TrainingError(RuntimeError):
    """A run that cannot start or go on: an unreadable checkpoint, or a loss that became NaN."""


class ConfigError(ValueError):
    """A config that cannot run; the message names the key."""


@dataclasses.dataclass
class DataConfig:
    root: str = "data/band"
    format: str = "folder"  # folder (rendered, MUSDB18-HQ, any named-stem tree) or musdb (.stem.mp4)
    sources: list[str] = dataclasses.field(default_factory=lambda: list(SOURCES))
    sample_rate: int = 44100
    chunk_seconds: float = 6.0
    batch_size: int = 16
    steps_per_epoch: int = 100
    validation_batches: int | None = None  # None: the whole validation set
    cache_dir: str | None = None
    remix: bool = True
    gain: list[float] = dataclasses.field(default_factory=lambda: [0.25, 1.25])
    channel_swap: bool = True
    silence_threshold: float | None = None
    remainder: str | None = None  # a source that tracks without its file take as the mixture minus the others
    seed: int = 0


@dataclasses.dataclass
class ModelConfig:
    init: str | None = None  # start from this .keras model or pretrained name; it replaces the keys below
    architecture: str = "bandconv"
    size: str = "base"
    channels: int = 2
    n_fft: int = 4096
    hop: int = 1024
    bandwidth: float | None = 16000.0
    mask_activation: str = "sigmoid"
    mask_extension: str = "average"
    network: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LossConfig:
    magnitude: float = 1.0  # weight of L1/MSE between M ⊙ |X| and |Y|
    magnitude_kind: str = "l1"
    l1: float = 0.0  # waveform losses
    sdr: float = 0.0
    si_sdr: float = 0.0


@dataclasses.dataclass
class OptimizerConfig:
    name: str = "adam"  # adam or adamw
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    clipnorm: float | None = 5.0


@dataclasses.dataclass
class ScheduleConfig:
    epochs: int = 100
    early_stopping_patience: int = 20
    lr_patience: int = 8
    lr_factor: float = 0.3
    normalization_batches: int = 4  # training batches for the per-bin input mean and scale


@dataclasses.dataclass
class RunConfig:
    output: str = "runs/default"
    mixed_precision: str | None = None  # mixed_float16 or mixed_bfloat16
    jit_compile: bool = False
    distribute: str = "none"  # none, mirrored or multiworker (TF_CONFIG)
    devices: list[str] | None = None  # for mirrored; None: every GPU
    tensorboard_every: int = 5  # epochs between spectrogram images and audio clips
    verbose: int = 1
    seed: int = 0  # weight initialisation


@dataclasses.dataclass
class TrainConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)


CHOICES = {
    "data.format": ("folder", "musdb"),
    "loss.magnitude_kind": ("l1", "mse"),
    "optimizer.name": ("adam", "adamw"),
    "run.mixed_precision": (None, "mixed_float16", "mixed_bfloat16"),
    "run.distribute": ("none", "mirrored", "multiworker"),
}


def _range(text, test):
    return text, lambda value: (isinstance(value, int) or math.isfinite(value)) and test(value)


AT_LEAST_ONE = _range(">= 1", lambda value: value >= 1)
NOT_NEGATIVE = _range("finite and >= 0", lambda value: value >= 0)
POSITIVE = _range("finite and > 0", lambda value: value > 0)
RANGES = {  # every numeric key (tests check that none is missing); None, where allowed, is not checked
    "data.sample_rate": _range(">= 1000", lambda value: value >= 1000),
    "data.chunk_seconds": POSITIVE,
    "data.batch_size": AT_LEAST_ONE,
    "data.steps_per_epoch": AT_LEAST_ONE,
    "data.validation_batches": AT_LEAST_ONE,
    "data.gain": NOT_NEGATIVE,
    "data.silence_threshold": _range("from -200 to 0 (dBFS)", lambda value: -200 <= value <= 0),
    "data.seed": NOT_NEGATIVE,
    "model.channels": AT_LEAST_ONE,
    "model.n_fft": _range(">= 16", lambda value: value >= 16),
    "model.hop": AT_LEAST_ONE,
    "model.bandwidth": POSITIVE,
    "loss.magnitude": NOT_NEGATIVE,
    "loss.l1": NOT_NEGATIVE,
    "loss.sdr": NOT_NEGATIVE,
    "loss.si_sdr": NOT_NEGATIVE,
    "optimizer.learning_rate": POSITIVE,
    "optimizer.weight_decay": NOT_NEGATIVE,
    "optimizer.clipnorm": POSITIVE,
    "schedule.epochs": AT_LEAST_ONE,
    "schedule.early_stopping_patience": AT_LEAST_ONE,
    "schedule.lr_patience": AT_LEAST_ONE,
    "schedule.lr_factor": _range("between 0 and 1", lambda value: 0 < value < 1),
    "schedule.normalization_batches": AT_LEAST_ONE,
    "run.tensorboard_every": AT_LEAST_ONE,
    "run.verbose": _range("0, 1 or 2", lambda value: value in (0, 1, 2)),
    "run.seed": NOT_NEGATIVE,
}


def _check_range(value, key):
    """Raise ConfigError naming `key` if the number `value` (or a number in the list) is out of RANGES[key]."""
    text, test = RANGES[key]
    for number in value if isinstance(value, list) else [value]:
        if not test(number):
            raise ConfigError(f"config key {key!r} must be {text}, got {number!r}")


def _check_value(value, annotation, key):
    """`value` converted to `annotation`, or ConfigError naming `key`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check_value(value, next(a for a in args if a is not type(None)), key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        return [_check_value(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is dict and isinstance(value, dict):
        return value
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ConfigError(f"config key {key!r} must be {annotation.__name__}, got {value!r}")
    return value


def _build(cls, values, prefix):
    if not isinstance(values, dict):
        raise ConfigError(f"config key {prefix.rstrip('.') or 'config'!r} must be a mapping, got {values!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; known keys here: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        key = prefix + name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, key + ".")
        else:
            kwargs[name] = _check_value(value, hints[name], key)
            if key in RANGES and kwargs[name] is not None:
                _check_range(kwargs[name], key)
            if key in CHOICES and kwargs[name] not in CHOICES[key]:
                raise ConfigError(f"config key {key!r} must be one of {list(CHOICES[key])}, got {value!r}")
    return cls(**kwargs)


class _Loader(yaml.SafeLoader):
    """YAML as PyYAML reads it, and also YAML 1.2's floats without a dot, such as 3e-4 (PyYAML's YAML 1.1
    reads those as strings)."""


_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789"))


def read_yaml(text):
    return yaml.load(text, Loader=_Loader)


def parse_override(text):
    """'section.key=value' -> ('section.key', value parsed as YAML)."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    return key.strip(), read_yaml(value)


def load_config(config=None, overrides=()):
    """A checked TrainConfig from a YAML path, a dict or None (defaults), with 'a.b=value' overrides."""
    if isinstance(config, TrainConfig):
        values = dataclasses.asdict(config)
    elif config is None:
        values = {}
    elif isinstance(config, dict):
        values = json.loads(json.dumps(config))
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            values = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
    for override in overrides:
        key, value = parse_override(override)
        section = values
        *parents, leaf = key.split(".")
        for parent in parents:
            section = section.setdefault(parent, {})
            if not isinstance(section, dict):
                raise ConfigError(f"override {override!r}: {parent!r} is not a section")
        section[leaf] = value
    config = _build(TrainConfig, values, "")
    low, high = (config.data.gain + [None, None])[:2]
    if len(config.data.gain) != 2 or not low <= high:
        raise ConfigError(f"config key 'data.gain' must be [low, high] with 0 <= low <= high, got {config.data.gain}")
    if config.loss.magnitude + config.loss.l1 + config.loss.sdr + config.loss.si_sdr <= 0:
        raise ConfigError("config section 'loss' must give at least one loss a positive weight")
    _check_combinations(config)
    return config


def _check_combinations(config):
    """Refuse options that would have no effect beside the others given."""
    if config.optimizer.weight_decay and config.optimizer.name != "adamw":
        raise ConfigError("config key 'optimizer.weight_decay' needs optimizer.name adamw (Adam has no decoupled "
                          "weight decay)")
    if config.run.devices is not None and config.run.distribute != "mirrored":
        raise ConfigError("config key 'run.devices' applies to run.distribute mirrored only")
    if config.data.cache_dir is not None and config.data.format == "musdb":
        raise ConfigError("config key 'data.cache_dir' applies to data.format folder only (the musdb package "
                          "decodes .stem.mp4 tracks itself)")
    if config.model.hop > config.model.n_fft:
        raise ConfigError(f"config key 'model.hop' ({config.model.hop}) must not exceed model.n_fft "
                          f"({config.model.n_fft})")


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with the `reduce` that Keras 3's `fit` expects of it.

    Keras 3 (keras-team/keras#20585) reduces the whole first batch, (mixture, {source:
    stem}), in one `strategy.reduce` call, which the collective strategy takes for single
    tensors only, and it reduces scalar logs with `axis=0`. Here values go leaf by leaf,
    and scalars are averaged over replicas.
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_leaf(leaf):
            scalar = self.experimental_local_results(leaf)[0].shape.rank == 0
            return super(MultiWorkerStrategy, self).reduce(reduce_op, leaf, None if scalar else axis)

        return tf.nest.map_structure(reduce_leaf, value)


def make_strategy(run):
    """The tf.distribute strategy of `run.distribute`."""
    if run.distribute == "mirrored":
        return tf.distribute.MirroredStrategy(devices=run.devices)
    if run.distribute == "multiworker":
        return MultiWorkerStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is None or resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def build_separation_model(config):
    """The SeparationModel of `config.model` for `config.data`'s sources and rate.

    With `model.init`, the model of that file or pretrained name (`pretrained.resolve`),
    rebuilt under the current dtype policy with its weights; its sources and rate must be
    the data's.
    """
    model = config.model
    if model.init is not None:
        start = load_model(pretrained.resolve(model.init))
        if list(start.sources) != list(config.data.sources) or start.sample_rate != config.data.sample_rate:
            raise ConfigError(f"model.init {model.init} separates {list(start.sources)} at {start.sample_rate} Hz, "
                              f"but data.sources is {config.data.sources} at {config.data.sample_rate} Hz; set "
                              "data.sources (and data.remainder for a source that is the rest of the mix) to match")
        return reconfigure(start)
    return build_model(
        model.architecture, config.data.sources, config.data.sample_rate, size=model.size, channels=model.channels,
        n_fft=model.n_fft, hop=model.hop, bandwidth=model.bandwidth, mask_activation=model.mask_activation,
        mask_extension=model.mask_extension, **model.network,
    )


def training_model(model, magnitudes):
    """`model` with, if `magnitudes`, one more output per source: its masked magnitude `<source>_magnitude`."""
    outputs = {source: model.get_layer("split_sources").output[k] for k, source in enumerate(model.sources)}
    if magnitudes:
        split = SplitSources(len(model.sources), name="split_magnitudes")(stem_magnitudes(model))
        outputs.update({f"{source}_magnitude": split[k] for k, source in enumerate(model.sources)})
    return keras.Model(model.input, outputs, name=f"{model.name}_training")


def best_model(output):
    """The SeparationModel of the run written in folder `output`, with the weights of its best checkpoint.

    For a run that was stopped before it wrote `model.keras`: its `config.yaml` rebuilds
    the model and `best.weights.h5` (ModelCheckpoint on validation SDR) fills it.
    """
    output = Path(output)
    checkpoint = output / "best.weights.h5"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no best checkpoint yet (the run has not finished an epoch)")
    config = load_config(output / "config.yaml")
    model = build_separation_model(config)
    _load_checkpoint(training_model(model, config.loss.magnitude > 0), checkpoint)
    return model


def set_input_normalization(model, batches):
    """Set the network's per-bin input mean and scale from training mixtures, as Open-Unmix does."""
    standardize = model.get_layer("input_standardize")
    features = keras.Model(model.input, model.get_layer("crop_bins").output)
    values = np.concatenate([np.asarray(features(mixture)) for mixture, _ in batches])  # (n, frames, bins, channels)
    if standardize.log:
        values = np.log1p(values)
    values = np.moveaxis(values, 2, -1).reshape(-1, values.shape[2])
    standardize.mean.assign(values.mean(0))
    standardize.scale.assign(np.maximum(values.std(0), 1e-4))


def freeze_batch_norm(model):
    """Keep every batch norm of `model` in inference mode with fixed parameters, for fine-tuning.

    Batch statistics of small fine-tuning batches would replace the trained ones at once;
    Spleeter's published U-Nets were moreover trained with their batch norms in inference
    mode (their moving means and variances are still 0 and 1).
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def compile_model(model, config):
    """Compile `training_model` outputs with the configured losses, optimiser and per-source SDR metric.

    The magnitude loss frames the references as the model's own STFT does.
    """
    loss, stft = config.loss, model.get_layer("stft")
    waveform_weights = {"l1": loss.l1, "sdr": loss.sdr, "si_sdr": loss.si_sdr}
    losses, weights, metrics = {}, {}, {}
    for source in config.data.sources:
        metrics[source] = [GlobalSDR(name="sdr")]
        if any(waveform_weights.values()):
            losses[source], weights[source] = WaveformLoss(waveform_weights), 1.0
        if loss.magnitude:
            key = f"{source}_magnitude"
            losses[key] = MagnitudeLoss(stft.n_fft, stft.hop, stft.window, loss.magnitude_kind, stft.framing)
            weights[key] = loss.magnitude
    optimizer_class = keras.optimizers.AdamW if config.optimizer.name == "adamw" else keras.optimizers.Adam
    options = {"learning_rate": config.optimizer.learning_rate, "clipnorm": config.optimizer.clipnorm}
    if config.optimizer.name == "adamw":
        options["weight_decay"] = config.optimizer.weight_decay
    model.compile(optimizer=optimizer_class(**options), loss=losses, loss_weights=weights, metrics=metrics,
                  jit_compile=config.run.jit_compile)


def training_targets(stems, magnitudes):
    """{source: stem} -> the targets of `training_model`: the stems, and with `magnitudes` each stem
    again as `<source>_magnitude` (MagnitudeLoss takes the reference's STFT itself)."""
    if not magnitudes:
        return stems
    return {**stems, **{f"{source}_magnitude": stem for source, stem in stems.items()}}


class MeanSDR(keras.callbacks.Callback):
    """Adds `val_sdr`, the mean over sources of the validation global SDR, to the logs."""

    def __init__(self, sources):
        super().__init__()
        self.sources = sources

    def on_epoch_end(self, epoch, logs=None):
        values = [logs[f"val_{s}_sdr"] for s in self.sources if f"val_{s}_sdr" in logs]
        if values:
            logs["val_sdr"] = float(np.mean(values))


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
    """Every `every` epochs, TensorBoard spectrograms and audio of a validation mixture, its estimates and references."""

    def __init__(self, log_dir, example, sources, sample_rate, every, n_fft, hop):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "examples"))
        self.mixture, self.stems = example
        self.sources, self.sample_rate, self.every = sources, sample_rate, every
        self.stft, self.magnitude = STFT(n_fft, hop), Magnitude()

    def _spectrogram(self, waveform):
        """(1, samples, channels) -> a (1, bins, frames, 1) image of the log magnitude, low frequencies at the bottom."""
        magnitude = self.magnitude(self.stft(waveform[:, :, :1]))[0, :, :, 0]
        image = tf.math.log(magnitude + 1e-3)
        image = (image - tf.reduce_min(image)) / (tf.reduce_max(image) - tf.reduce_min(image) + 1e-9)
        return tf.reverse(tf.transpose(image), [0])[None, :, :, None]

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
                tf.summary.image(f"spectrogram/{name}", self._spectrogram(waveform))
                tf.summary.audio(f"audio/{name}", tf.clip_by_value(waveform, -1.0, 1.0), self.sample_rate)


def _save_weights_atomically(model, path):
    """model.save_weights(path) through a temporary file beside it, renamed into place."""
    replace_atomically(path, lambda partial: model.save_weights(str(partial), overwrite=True), suffix=".weights.h5")


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite; `where` is then (epoch, batch), from 1."""

    def __init__(self):
        super().__init__()
        self.where, self._epoch = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.where = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


def unreadable_backup(backup, error):
    return TrainingError(f"{backup}: the backup of this run is unreadable ({error_reason(error)}); delete that "
                         "folder to start the run again from its first epoch")


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that writes whole files only, refuses unreadable ones, and keeps the backup after a NaN.

    The weights and the epoch count are each written to a temporary file and renamed into
    place, so a kill at any moment leaves the previous backup or the new one. After a NaN
    loss (`nan_guard.where` set) the last good epoch's backup is neither overwritten nor deleted.
    """

    def __init__(self, backup_dir, nan_guard):
        super().__init__(backup_dir)
        self.nan_guard = nan_guard

    def on_train_begin(self, logs=None):
        try:
            self._load_model()
        except Exception as error:
            raise unreadable_backup(self.backup_dir, error) from None

    def _save_model(self):
        if self.nan_guard.where:
            return
        _save_weights_atomically(self.model, self._weights_path)
        metadata = json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen})
        replace_atomically(self._training_metadata_path, lambda partial: Path(partial).write_text(metadata))

    def on_train_end(self, logs=None):
        """Keep the backup: `train` removes it once the model is saved, so a kill before that resumes."""


class SafeModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint of the best weights only, written through a temporary file renamed into place."""

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):  # compares with, and updates, self.best
            _save_weights_atomically(self.model, filepath)


def best_validation_sdr(history_csv):
    """The highest finite val_sdr in a run's history.csv, or None."""
    try:
        with open(history_csv, newline="") as file:
            values = [float(row["val_sdr"]) for row in csv.DictReader(file) if row.get("val_sdr")]
    except (OSError, ValueError, KeyError):
        return None
    values = [value for value in values if np.isfinite(value)]
    return max(values) if values else None


def _callbacks(config, output, chief, sources, example, nan_guard, stft):
    run, schedule = config.run, config.schedule
    resuming = (output / "backup").exists()
    callbacks = [
        MeanSDR(sources),
        nan_guard,
        # A resumed run keeps the best checkpoint of its earlier epochs unless it beats it.
        SafeModelCheckpoint(str(output / "best.weights.h5"), monitor="val_sdr", mode="max", save_best_only=True,
                            save_weights_only=True,
                            initial_value_threshold=best_validation_sdr(output / "history.csv") if resuming else None),
        keras.callbacks.EarlyStopping(monitor="val_sdr", mode="max", patience=schedule.early_stopping_patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_sdr", mode="max", patience=schedule.lr_patience,
                                          factor=schedule.lr_factor),
        keras.callbacks.CSVLogger(str(output / "history.csv"), append=True),
    ]
    if chief:
        callbacks += [
            keras.callbacks.TensorBoard(str(output / "tensorboard")),
            ValidationExamples(output / "tensorboard", example, sources, config.data.sample_rate,
                               run.tensorboard_every, stft.n_fft, stft.hop),
            EpochSummary(sources, schedule.epochs),
        ]
    # Last, so that an epoch counts as done only once its checkpoint and history row are written.
    return callbacks + [SafeBackupAndRestore(str(output / "backup"), nan_guard)]


def _find_tracks(config, subset):
    if config.data.format == "musdb":
        return data.find_musdb_tracks(config.data.root, subset, config.data.sources)
    return data.find_tracks(config.data.root, subset, config.data.sources, config.data.remainder)


def train(config=None, overrides=(), restart=False):
    """Run the training that `config` describes (a TrainConfig, dict, YAML path or None); returns the History,
    or None for a run that has already finished (it says so, naming its model).

    Started again with the same config after a crash, it resumes from its last finished
    epoch; a config that differs from the run's own is refused, naming the changed keys.
    `restart` trains the run again from its first epoch. The best model is saved as
    `run.output/model.keras`.
    """
    config = load_config(config, overrides)
    strategy = make_strategy(config.run)
    chief = is_chief(strategy)
    output = Path(config.run.output)
    if not chief:
        output = output / f"worker-{strategy.cluster_resolver.task_id}"
    settings = yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
    if restart:
        for name in ("finished.json", "best.weights.h5", "history.csv", "model.keras"):
            (output / name).unlink(missing_ok=True)
        shutil.rmtree(output / "backup", ignore_errors=True)
    elif (output / "finished.json").is_file() and (output / "model.keras").is_file():
        print(f"{output}: this run has finished; its model is {output / 'model.keras'} (restart it to train again)")
        return None
    else:
        _check_same_run(output / "config.yaml", config)
    output.mkdir(parents=True, exist_ok=True)
    for leftover in [*output.glob(".*.part*"), *(output / "backup").glob(".*.part*")]:
        leftover.unlink()  # temporary files of a run killed before it could rename them into place
    replace_atomically(output / "config.yaml", lambda partial: Path(partial).write_text(settings))
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.run.mixed_precision or "float32")
    try:
        return _fit(config, strategy, chief, output)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


IGNORED_ON_RESUME = {"run.verbose"}  # keys that do not change what a run computes


def _flat(values, prefix=""):
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "network":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_same_run(saved, config):
    """Refuse to resume the run whose `config.yaml` is `saved` with another config, naming the keys that differ."""
    if not saved.is_file():
        return
    try:
        before = _flat(dataclasses.asdict(load_config(saved)))
    except (ConfigError, yaml.YAMLError):
        raise ConfigError(f"{saved}: the run's saved config is unreadable; use another run.output") from None
    now = _flat(dataclasses.asdict(config))
    changed = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key)
                     and key not in IGNORED_ON_RESUME)
    if changed:
        details = ", ".join(f"{key} ({before.get(key)!r} -> {now.get(key)!r})" for key in changed)
        raise ConfigError(f"{saved.parent} was started with other settings: {details}; resume it with its own config, "
                          "choose another run.output, or restart it")


def make_datasets(config, progress=True, first_example=0):
    """The (training, validation) tf.data pipelines of `config.data`: batches of (mixture, {source: stem}).

    The training stream starts at example `first_example`, where a resumed run left it.
    """
    sources = config.data.sources
    train_tracks, valid_tracks = _find_tracks(config, "train"), _find_tracks(config, "valid")
    train_library = data.load_tracks(train_tracks, sources, config.data.sample_rate, config.data.cache_dir,
                                     progress=progress)
    valid_library = data.load_tracks(valid_tracks, sources, config.data.sample_rate, config.data.cache_dir,
                                     progress=progress)
    samples = int(round(config.data.chunk_seconds * config.data.sample_rate))
    augmentation = data.Augmentation(config.data.remix, tuple(config.data.gain), config.data.channel_swap,
                                     config.data.silence_threshold)
    training = data.training_dataset(train_library, sources, samples, config.data.batch_size, config.data.seed,
                                     augmentation, start=first_example)
    validation = data.validation_dataset(valid_library, sources, samples, config.data.batch_size)
    if config.data.validation_batches:
        validation = validation.take(config.data.validation_batches)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return training.with_options(options), validation.with_options(options)


def _fit(config, strategy, chief, output):
    sources = config.data.sources
    keras.utils.set_random_seed(config.run.seed)
    with strategy.scope():
        model = build_separation_model(config)  # settings are checked before any data is read
    done = _backed_up_epochs(output / "backup")
    _keep_history_rows(output / "history.csv", done)
    training, validation = make_datasets(config, progress=config.run.verbose > 0 and chief,
                                         first_example=done * config.data.steps_per_epoch * config.data.batch_size)
    example = next(iter(validation))

    magnitudes = config.loss.magnitude > 0
    best = output / "best.weights.h5"
    with strategy.scope():
        if config.model.init is not None:
            freeze_batch_norm(model)
        elif not (output / "backup").exists():
            set_input_normalization(model, training.take(config.schedule.normalization_batches))
        trainer = training_model(model, magnitudes)
        compile_model(trainer, config)
        if (output / "backup").exists() and best.is_file():
            _load_checkpoint(trainer, best)  # an unreadable one stops the run now, not after training

    nan_guard = StopOnNaN()
    history = trainer.fit(
        training.map(lambda mixture, stems: (mixture, training_targets(stems, magnitudes))),
        validation_data=validation.map(lambda mixture, stems: (mixture, training_targets(stems, magnitudes))),
        epochs=config.schedule.epochs,
        steps_per_epoch=config.data.steps_per_epoch,
        callbacks=_callbacks(config, output, chief, sources, example, nan_guard, model.get_layer("stft")),
        verbose=config.run.verbose if chief else 0,
        shuffle=False,  # the stream is already random
    )
    if best.is_file():
        _load_checkpoint(trainer, best)
    if chief and (best.is_file() or not nan_guard.where):
        replace_atomically(output / "model.keras", lambda partial: model.save(partial), suffix=".keras")
    if chief and not nan_guard.where:
        summary = json.dumps({"epochs": len(history.epoch) + done, "best_val_sdr": best_validation_sdr(
            output / "history.csv")})
        replace_atomically(output / "finished.json", lambda partial: Path(partial).write_text(summary))
        shutil.rmtree(output / "backup", ignore_errors=True)  # only now: a kill before here resumes and saves
    if nan_guard.where:
        epoch, batch = nan_guard.where
        kept = (f"{output / 'model.keras'} holds the best weights before it" if best.is_file()
                else "no epoch finished before it, so no model was saved")
        resume = (f"{output / 'backup'} holds the last good epoch, from which the same command resumes"
                  if (output / "backup").exists() else "the same command starts it again")
        raise TrainingError(f"the training loss became NaN at epoch {epoch}, batch {batch}, and the run stopped; "
                            f"{kept}; {resume} (lower optimizer.learning_rate or raise optimizer.clipnorm first)")
    return history


def _backed_up_epochs(backup):
    """The number of epochs that the run's backup holds (0 without one)."""
    metadata = backup / "training_metadata.json"
    if not backup.exists():
        return 0
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise unreadable_backup(backup, error) from None


def _keep_history_rows(path, count):
    """Cut `history.csv` back to its first `count` complete rows: the epochs that the backup holds.

    A kill after an epoch's row but before its backup, or in the middle of the row, leaves
    rows that the resumed run writes again.
    """
    if not path.is_file():
        return
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [line for line in lines[: count + 1] if line.endswith(b"\n")]
    path.write_bytes(b"".join(kept))


def _load_checkpoint(trainer, path):
    try:
        optimizer = getattr(trainer, "optimizer", None)  # None before compile (best_model)
        if optimizer is not None and not optimizer.built:
            optimizer.build(trainer.trainable_variables)  # so that its saved state loads too
        trainer.load_weights(path)
    except Exception as error:
        raise TrainingError(f"{path}: unreadable checkpoint ({error_reason(error)}); delete it, and the run "
                            "writes a new one at its next best epoch") from None
