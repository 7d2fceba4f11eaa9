"""Training: one YAML config -> data, model, losses, optimiser and callbacks -> `model.fit`.

A run is described completely by its config (`config.TrainConfig`, see `configs/`),
checked before anything runs. It writes into `run.output`:

- `model.keras`: the SeparationModel with the weights of the best validation SDR;
- `best.weights.h5` (`callbacks.BestWeights` on the mean validation SDR), `history.csv` (CSVLogger);
- `backup/`: `callbacks.RunBackup`'s weights and epoch count, so that the same command
  resumes a killed run; kept after a NaN loss, which stops the run with `TrainingError`;
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

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from tfsep import data, providers, runfolder
from tfsep._keras import keras
from tfsep._keras_private import track_loss
from tfsep.callbacks import (
    BestWeights,
    EpochSummary,
    MeanSDR,
    RunBackup,
    StopOnNaN,
    TrainingError,
    TrainingProgress,
    ValidationExamples,
    WallClock,
    best_validation_sdr,
    load_checkpoint,
    logged_values,
)
from tfsep.config import ConfigError, check_same_run, load_config
from tfsep.files import replace_atomically
from tfsep.layers import SplitSources
from tfsep.losses import MagnitudeLoss, WaveformLoss
from tfsep.metrics import GlobalSDR
from tfsep.models import build_model, load_model, reconfigure, stem_magnitudes
from tfsep.networks.common import Standardize


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


def training_form(config):
    """The spectral form a run trains in (`layers.InverseSTFT`): `signal` when XLA compiles the step
    (`run.jit_compile`), else `bitcast`, whose complex views have gradients that copy nothing."""
    return "signal" if config.run.jit_compile else "bitcast"


def build_separation_model(config):
    """The SeparationModel of `config.model` for `config.data`'s sources and rate, in `training_form`.

    With `model.init`, the model of that file or pretrained name (`providers.resolve`),
    rebuilt under the current dtype policy with its weights; its sources and rate must be
    the data's.
    """
    model = config.model
    form = training_form(config)
    if model.init is not None:
        start = load_model(providers.resolve(model.init))
        if list(start.sources) != list(config.data.sources) or start.sample_rate != config.data.sample_rate:
            raise ConfigError(f"model.init {model.init} separates {list(start.sources)} at {start.sample_rate} Hz, "
                              f"but data.sources is {config.data.sources} at {config.data.sample_rate} Hz; set "
                              "data.sources (and data.remainder for a source that is the rest of the mix) to match")
        return reconfigure(start, inverse_fft=form)
    return build_model(
        model.architecture, config.data.sources, config.data.sample_rate, size=model.size, channels=model.channels,
        n_fft=model.n_fft, hop=model.hop, bandwidth=model.bandwidth, mask_activation=model.mask_activation,
        mask_extension=model.mask_extension, inverse_fft=form, **model.network,
    )


class Trainer(keras.Model):
    """A functional model whose training and validation steps can run each batch as `micro_batches` slices.

    With micro_batches = k > 1, `train_step` runs forward and backward on one slice of
    batch / k examples after the other (a `tf.while_loop` of one iteration at a time), sums
    their gradients and applies their mean once, and `test_step` runs the forward pass the
    same way. Losses and metrics are means over examples, so the update, the loss and the
    metrics are the whole batch's, while only one slice's activations are alive at a time:
    memory falls about k-fold. Networks with batch norms (umx, unet) normalise each slice by
    its own statistics in training.
    """

    def __init__(self, inputs, outputs, micro_batches=1, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        if micro_batches < 1:
            raise ValueError(f"micro_batches must be >= 1, got {micro_batches}")
        self.micro_batches = micro_batches

    def _sliced(self, data, step, state, size):
        """Run `step(x, y, sample_weight, slice size, state) -> state` on consecutive `size`-example slices of
        `data`, one after the other; returns the final state."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        batch = tf.shape(x)[0]

        def body(index, state):
            start = index * size
            xs, ys, ws = tf.nest.map_structure(lambda t: None if t is None else t[start:start + size],
                                               (x, y, sample_weight))
            return index + 1, step(xs, ys, ws, tf.minimum(size, batch - start), state)

        count = (batch + size - 1) // size
        return tf.while_loop(lambda index, _: index < count, body, (tf.constant(0), state), parallel_iterations=1)[1]

    def train_step(self, data):
        if self.micro_batches == 1:
            return super().train_step(data)
        batch = tf.shape(keras.utils.unpack_x_y_sample_weight(data)[0])[0]
        size = batch // self.micro_batches
        tf.debugging.assert_equal(size * self.micro_batches, batch, message=(
            f"a training batch (per replica) must split into micro_batches = {self.micro_batches} equal slices"))
        weights = self.trainable_weights

        def step(xs, ys, ws, count, sums):
            with tf.GradientTape() as tape:
                y_pred = self(xs, training=True)
                loss = self.compute_loss(xs, ys, y_pred, ws, training=True)
                track_loss(self, loss, count)
                scaled = self.optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            self.compute_metrics(xs, ys, y_pred, sample_weight=ws)
            return [total + gradient for total, gradient in zip(sums, gradients)]

        sums = self._sliced(data, step, [tf.zeros(weight.shape, weight.dtype) for weight in weights], size)
        self.optimizer.apply_gradients(zip([total / self.micro_batches for total in sums], weights))
        return self.get_metrics_result()

    def test_step(self, data):
        if self.micro_batches == 1:
            return super().test_step(data)
        batch = tf.shape(keras.utils.unpack_x_y_sample_weight(data)[0])[0]

        def step(xs, ys, ws, count, state):
            y_pred = self(xs, training=False)
            loss = self.compute_loss(xs, ys, y_pred, ws, training=False)
            track_loss(self, loss, count)
            self.compute_metrics(xs, ys, y_pred, sample_weight=ws)
            return state

        # A validation batch may be short (the last one): slices of ceil(batch / k), the last one shorter. The loss
        # and the metrics stay means over examples; Keras's per-output loss logs become means over the slices.
        self._sliced(data, step, tf.constant(0), (batch + self.micro_batches - 1) // self.micro_batches)
        return self.get_metrics_result()


def training_model(model, magnitudes, micro_batches=1):
    """`model` with, if `magnitudes`, one more output per source: its masked magnitude `<source>_magnitude`,
    as a `Trainer` that runs each batch as `micro_batches` slices."""
    outputs = {source: model.get_layer("split_sources").output[k] for k, source in enumerate(model.sources)}
    if magnitudes:
        split = SplitSources(len(model.sources), name="split_magnitudes")(stem_magnitudes(model))
        outputs.update({f"{source}_magnitude": split[k] for k, source in enumerate(model.sources)})
    return Trainer(model.input, outputs, micro_batches, name=f"{model.name}_training")


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
    load_checkpoint(training_model(model, config.loss.magnitude > 0), checkpoint)
    return reconfigure(model, inverse_fft="signal")


def set_input_normalization(model, batches):
    """Set the network's per-bin input mean and scale from training mixtures, as Open-Unmix does (each of its
    standardisations alike: umx's `per_source` networks have one each)."""
    features = keras.Model(model.input, model.get_layer("crop_bins").output)
    magnitudes = np.concatenate([np.asarray(features(mixture)) for mixture, _ in batches])  # (n, frames, bins, ch)
    for standardize in (layer for layer in model.layers if isinstance(layer, Standardize)):
        values = np.log1p(magnitudes) if standardize.log else magnitudes
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


def _callbacks(config, output, chief, example, nan_guard, resuming):
    run, schedule, sources = config.run, config.schedule, config.data.sources
    history = output / "history.csv"
    callbacks = [
        MeanSDR(sources),
        WallClock(schedule.minutes, sum(logged_values(history, "minutes")[-1:]) if resuming else 0.0),
        nan_guard,
        # A resumed run keeps the best checkpoint of its earlier epochs unless it beats it.
        BestWeights(output / "best.weights.h5", "val_sdr",
                    best_validation_sdr(history) if resuming else None),
        keras.callbacks.EarlyStopping(monitor="val_sdr", mode="max", patience=schedule.early_stopping_patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_sdr", mode="max", patience=schedule.lr_patience,
                                          factor=schedule.lr_factor),
        keras.callbacks.CSVLogger(str(history), append=True),
    ]
    if chief:
        callbacks += [
            keras.callbacks.TensorBoard(str(output / "tensorboard")),
            ValidationExamples(output / "tensorboard", example, sources, config.data.sample_rate,
                               run.tensorboard_every),
        ]
        # The progress, then the epoch's line: Keras's own bar of every metric with run.verbose 2, else a bar of
        # the loss that clears itself (verbose 1), or none (0). Keras's bar finishes before the line is printed.
        if run.verbose == 2:
            callbacks.append(keras.callbacks.ProgbarLogger())
        elif run.verbose == 1:
            callbacks.append(TrainingProgress(schedule.epochs, config.data.steps_per_epoch))
        callbacks.append(EpochSummary(sources, schedule.epochs))
    # Last, so that an epoch counts as done only once its checkpoint and history row are written; then a restart's
    # previous run, kept until now, can go.
    return callbacks + [RunBackup(output / "backup", nan_guard),
                        keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: runfolder.forget_previous(output))]


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
    with runfolder.claimed(output):
        said = runfolder.recover(output)
        if said:
            print(f"tfsep: {said}", file=sys.stderr)
        return _run(config, strategy, chief, output, restart)


def _run(config, strategy, chief, output, restart):
    """`train` in the run folder `output`, which this process holds (`runfolder.claimed`)."""
    settings = yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
    if restart:
        runfolder.set_aside(output)  # kept until the new run's first backup: a restart killed sooner loses nothing
    elif (output / "finished.json").is_file() and (output / "model.keras").is_file():
        print(f"{output}: this run has finished; its model is {output / 'model.keras'} (restart it to train again)")
        return None
    else:
        check_same_run(output / "config.yaml", config)
    for leftover in [*output.glob(".*.part*"), *(output / "backup").glob(".*.part*")]:
        leftover.unlink()  # temporary files of a run killed before it could rename them into place
    replace_atomically(output / "config.yaml", lambda partial: Path(partial).write_text(settings))
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.run.mixed_precision or "float32")
    try:
        return _fit(config, strategy, chief, output)
    except BaseException:
        if (output / runfolder.PREVIOUS).is_dir() and not (output / runfolder.BACKUP_COUNT).exists():
            runfolder.put_back(output)  # the restart failed before its first backup: the previous run is back
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


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
    keras.utils.set_random_seed(config.run.seed)
    with strategy.scope():
        model = build_separation_model(config)  # settings are checked before any data is read
    backup = output / "backup"
    done = RunBackup.epochs_done(backup)
    if not done:
        shutil.rmtree(backup, ignore_errors=True)  # a run killed before its first epoch's backup starts afresh
    _keep_history_rows(output / "history.csv", done)
    training, validation = make_datasets(config, progress=config.run.verbose > 0 and chief,
                                         first_example=done * config.data.steps_per_epoch * config.data.batch_size)
    example = next(iter(validation))

    magnitudes = config.loss.magnitude > 0
    best = output / "best.weights.h5"
    with strategy.scope():
        if config.model.init is not None:
            freeze_batch_norm(model)
        elif not done:
            set_input_normalization(model, training.take(config.schedule.normalization_batches))
        trainer = training_model(model, magnitudes, fitted_micro_batches(config, strategy.num_replicas_in_sync))
        compile_model(trainer, config)
        if done:
            if best.is_file():
                load_checkpoint(trainer, best)  # an unreadable one stops the run now, not after training
            RunBackup.restore(trainer, backup)

    nan_guard = StopOnNaN()
    history = trainer.fit(
        training.map(lambda mixture, stems: (mixture, training_targets(stems, magnitudes))),
        validation_data=validation.map(lambda mixture, stems: (mixture, training_targets(stems, magnitudes))),
        epochs=config.schedule.epochs,
        initial_epoch=done,
        steps_per_epoch=config.data.steps_per_epoch,
        callbacks=_callbacks(config, output, chief, example, nan_guard, done > 0),
        verbose=1 if chief and config.run.verbose == 2 else 0,  # the callbacks above show the progress
        shuffle=False,  # the stream is already random
    )
    if best.is_file():
        load_checkpoint(trainer, best)
    if chief and (best.is_file() or not nan_guard.where):
        saved = reconfigure(model, inverse_fft="signal")  # the form every other path starts from
        replace_atomically(output / "model.keras", lambda partial: saved.save(partial), suffix=".keras")
    if chief and not nan_guard.where:
        summary = json.dumps({"epochs": done + len(history.epoch), "best_val_sdr": best_validation_sdr(
            output / "history.csv")})
        replace_atomically(output / "finished.json", lambda partial: Path(partial).write_text(summary))
        shutil.rmtree(backup, ignore_errors=True)  # only now: a kill before here resumes and saves
    if nan_guard.where:
        epoch, batch = nan_guard.where
        kept = (f"{output / 'model.keras'} holds the best weights before it" if best.is_file()
                else "no epoch finished before it, so no model was saved")
        resume = (f"{backup} holds the last good epoch, from which the same command resumes"
                  if backup.exists() else "the same command starts it again")
        raise TrainingError(f"the training loss became NaN at epoch {epoch}, batch {batch}, and the run stopped; "
                            f"{kept}; {resume} (lower optimizer.learning_rate or raise optimizer.clipnorm first)")
    return history


def fitted_micro_batches(config, replicas=1):
    """`run.micro_batches`, or if it does not divide each replica's batch the largest number of slices that does,
    saying so in one line: a small batch tried on a CPU takes the config's other settings as they are."""
    per_replica, asked = max(1, config.data.batch_size // replicas), config.run.micro_batches
    fitted = max(k for k in range(1, min(asked, per_replica) + 1) if per_replica % k == 0)
    if fitted != asked:
        print(f"tfsep: run.micro_batches {asked} does not divide the batch of {per_replica}"
              f"{' per replica' if replicas > 1 else ''}; running it as {fitted} slices of {per_replica // fitted}",
              file=sys.stderr)
    return fitted


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
