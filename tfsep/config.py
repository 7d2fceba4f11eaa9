"""Training configs: the dataclasses of a run's YAML config, read, range-checked and compared before anything runs.

A config has six sections, `data`, `model`, `loss`, `optimizer`, `schedule` and `run` (see
`configs/`); every key has a default, a type, and for numbers a range (RANGES), and
options that would have no effect together are refused. Errors are ConfigError, naming
the key.
"""

import dataclasses
import json
import math
import re
import types
import typing
from pathlib import Path

import yaml

from tfsep.names import SOURCES


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
    minutes: float | None = None  # stop after the first epoch that ends past this much training time
    early_stopping_patience: int = 20
    lr_patience: int = 8
    lr_factor: float = 0.3
    normalization_batches: int = 4  # training batches for the per-bin input mean and scale


@dataclasses.dataclass
class RunConfig:
    output: str = "runs/default"
    mixed_precision: str | None = None  # mixed_float16 or mixed_bfloat16
    jit_compile: bool = False
    micro_batches: int = 1  # slices of each batch run one after the other, their gradients summed (train.Trainer)
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
    "schedule.minutes": POSITIVE,
    "schedule.early_stopping_patience": AT_LEAST_ONE,
    "schedule.lr_patience": AT_LEAST_ONE,
    "schedule.lr_factor": _range("between 0 and 1", lambda value: 0 < value < 1),
    "schedule.normalization_batches": AT_LEAST_ONE,
    "run.micro_batches": AT_LEAST_ONE,
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


IGNORED_ON_RESUME = {"run.verbose"}  # keys that do not change what a run computes


def _flat(values, prefix=""):
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "network":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_run(saved, config):
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
