"""Training on a tiny rendered set: learning, config checks, precision, distribution
(faults: test_training_faults.py)."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_config, train_killed_after_two_epochs

from tfsep import config as configuration
from tfsep import train as training


@pytest.mark.slow
def test_a_few_epochs_lower_the_validation_loss_and_save_a_loadable_model(rendered, tmp_path):
    import tfsep

    history = training.train(tiny_config(rendered, tmp_path / "run"))
    assert history.history["val_loss"][-1] < history.history["val_loss"][0]
    assert {"val_sdr", "val_vocals_sdr", "val_bass_sdr"} <= set(history.history)
    model = tfsep.load_model(tmp_path / "run" / "model.keras")
    assert model.sources == ("vocals", "drums", "bass", "other") and model.sample_rate == 8000
    assert np.abs(model.get_layer("input_standardize").mean.numpy()).max() > 0  # normalisation set from data
    assert (tmp_path / "run" / "best.weights.h5").is_file()
    assert sorted(p.name for p in (tmp_path / "run" / "tensorboard").iterdir()) == ["examples", "train", "validation"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]
    minutes = [float(row["minutes"]) for row in rows]  # training time so far, for curves against time
    assert 0 < minutes[0] < minutes[1] < minutes[2] < minutes[3]
    restored = training.best_model(tmp_path / "run")  # what a run stopped early leaves usable
    mixture = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 4000, 2)).astype(np.float32)
    expected, outputs = model.predict(mixture, verbose=0), restored.predict(mixture, verbose=0)
    for source in expected:
        np.testing.assert_array_equal(outputs[source], expected[source])
    with pytest.raises(FileNotFoundError, match="no best checkpoint yet"):
        training.best_model(tmp_path)


@pytest.mark.slow
def test_a_time_budget_ends_the_run_after_the_epoch_that_passes_it(rendered, tmp_path):
    config = tiny_config(rendered, tmp_path / "run", schedule={"epochs": 3, "minutes": 1e-4,
                                                               "normalization_batches": 1})
    history = training.train(config)
    assert len(history.epoch) == 1 and history.history["minutes"][0] >= 1e-4
    assert json.loads((tmp_path / "run" / "finished.json").read_text())["epochs"] == 1


@pytest.mark.slow
def test_waveform_losses_alone_train_too(rendered, tmp_path):
    config = tiny_config(rendered, tmp_path / "run", loss={"magnitude": 0.0, "l1": 1.0, "si_sdr": 0.01},
                         optimizer={"name": "adamw", "weight_decay": 0.01, "learning_rate": 0.003},
                         schedule={"epochs": 2})
    history = training.train(config)
    assert "vocals_magnitude_loss" not in history.history
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.slow
def test_micro_batches_make_the_whole_batch_step():
    """Slices run one after the other give Keras's own whole-batch steps: same weights, loss and metrics, in training
    and in validation."""
    from tfsep._keras import keras

    config = configuration.load_config(None, ["model.size=tiny", "model.n_fft=256", "model.hop=64",
                                              "data.sample_rate=8000", "data.batch_size=8"])
    rng = np.random.default_rng(0)
    stems = {source: rng.normal(0, 0.1, (8, 4000, 2)).astype(np.float32) for source in config.data.sources}
    stems["bass"][:2] = 0  # silent references, which the SDR metric leaves out of its mean
    mixture, targets = sum(stems.values()), training.training_targets(stems, True)
    steps = {}
    for micro_batches in (1, 4):
        keras.utils.set_random_seed(0)
        model = training.build_separation_model(config)
        trainer = training.training_model(model, True, micro_batches)
        training.compile_model(trainer, config)
        logs = [trainer.train_on_batch(mixture, targets, return_dict=True) for _ in range(2)]
        # Validation: a full batch, and a short last one whose slices of ceil(7 / 4) = 2 end with a single example.
        logs += [trainer.test_on_batch(mixture[:n], {k: v[:n] for k, v in targets.items()}, return_dict=True)
                 for n in (8, 7)]
        steps[micro_batches] = logs, model.get_weights()
    (whole_logs, whole), (sliced_logs, sliced) = steps[1], steps[4]
    assert len(whole) > 10 and any(np.abs(w).max() > 0 for w in whole)
    for expected, weights in zip(whole, sliced):
        np.testing.assert_allclose(weights, expected, atol=1e-6)
    for expected, logs in zip(whole_logs, sliced_logs):
        assert set(logs) == set(expected)
        # Keras weighs each update of a per-output loss tracker by the slice's static batch size, which slices of
        # a dynamic size lack: on the short batch only the loss and the metrics are means over examples.
        keys = [key for key in expected if logs is not sliced_logs[-1] or not key.endswith("_magnitude_loss")]
        assert "loss" in keys and "vocals_sdr" in keys
        np.testing.assert_allclose([logs[key] for key in keys], [expected[key] for key in keys], rtol=1e-5, atol=1e-6)


@pytest.mark.smoke
@pytest.mark.parametrize("batch, replicas, asked, fitted", [(16, 1, 8, 8), (2, 1, 8, 2), (12, 1, 8, 6), (16, 2, 8, 8),
                                                          (6, 2, 2, 1), (7, 1, 4, 1)])
def test_micro_batches_that_do_not_divide_the_batch_take_its_largest_divisor(batch, replicas, asked, fitted, capsys):
    config = configuration.load_config(None, [f"data.batch_size={batch}", f"run.micro_batches={asked}"])
    assert training.fitted_micro_batches(config, replicas) == fitted
    said = capsys.readouterr().err
    assert (f"running it as {fitted} slices of {batch // replicas // fitted}" in said) == (fitted != asked), said


@pytest.mark.smoke
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.sorces=[a]"], r"unknown config key 'data.sorces'"),
        (["optimiser.name=adam"], r"unknown config key 'optimiser'"),
        (["data.batch_size=big"], r"config key 'data.batch_size' must be int, got 'big'"),
        (["optimizer.learning_rate=[1]"], r"'optimizer.learning_rate' must be float"),
        (["optimizer.name=sgd"], r"'optimizer.name' must be one of \['adam', 'adamw'\]"),
        (["run.distribute=tpu"], r"'run.distribute' must be one of"),
        (["data.gain=[2, 1]"], r"'data.gain' must be \[low, high\]"),
        (["loss.magnitude=0"], r"at least one loss"),
        (["epochs"], r"must look like section.key=value"),
    ],
)
def test_bad_configs_are_refused_naming_the_key(overrides, message):
    with pytest.raises(configuration.ConfigError, match=message):
        configuration.load_config(None, overrides)


def numeric_keys():
    """Every int or float key of TrainConfig, with its type (lists of numbers included)."""
    import dataclasses
    import typing

    keys = {}
    for section in dataclasses.fields(configuration.TrainConfig):
        for field in dataclasses.fields(section.type):
            kinds = set(typing.get_args(field.type)) | {field.type}
            kinds |= {arg for kind in kinds for arg in typing.get_args(kind)}
            if kinds & {int, float}:
                keys[f"{section.name}.{field.name}"] = float if float in kinds else int
    return keys


@pytest.mark.smoke
def test_every_numeric_config_key_is_range_checked_naming_it():
    keys = numeric_keys()
    assert set(keys) == set(configuration.RANGES)
    for key, kind in keys.items():
        for bad in (["-1e9", ".nan", ".inf"] if kind is float else ["-1000000000"]):  # as YAML writes them
            value = f"[{bad}, 1.0]" if key == "data.gain" else bad
            with pytest.raises(configuration.ConfigError, match=rf"config key '{key}' must be .*, got "):
                configuration.load_config(None, [f"{key}={value}"])


@pytest.mark.smoke
def test_yaml_floats_without_a_dot_read_as_numbers(tmp_path):
    (tmp_path / "config.yaml").write_text("optimizer:\n  learning_rate: 3e-4\n  clipnorm: 1E1\n")
    config = configuration.load_config(tmp_path / "config.yaml", ["schedule.lr_factor=5e-1"])
    assert (config.optimizer.learning_rate, config.optimizer.clipnorm, config.schedule.lr_factor) == (3e-4, 10.0, 0.5)


@pytest.mark.smoke
@pytest.mark.parametrize("overrides, message", [
    (["optimizer.weight_decay=0.01"], r"'optimizer.weight_decay' needs optimizer.name adamw"),
    (["run.devices=['/cpu:0']"], r"'run.devices' applies to run.distribute mirrored only"),
    (["data.format=musdb", "data.cache_dir=/tmp/cache"], r"'data.cache_dir' applies to data.format folder only"),
    (["model.hop=8192"], r"'model.hop' \(8192\) must not exceed model.n_fft \(4096\)"),
])
def test_options_without_effect_in_their_combination_are_refused(overrides, message):
    with pytest.raises(configuration.ConfigError, match=message):
        configuration.load_config(None, overrides)
    configuration.load_config(None, overrides[:-1] + ["optimizer.name=adamw"] * (overrides[0].startswith("optimizer"))
                         + ["run.distribute=mirrored"] * overrides[0].startswith("run"))


@pytest.mark.smoke
def test_config_files_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(configuration.ConfigError, match="no such config file"):
        configuration.load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(configuration.ConfigError, match="not valid YAML"):
        configuration.load_config(tmp_path / "bad.yaml")
    config = configuration.load_config(None, ["model.architecture=umx", "model.network={hidden: 64}",
                                              "data.gain=[0.5, 1]"])
    assert config.model.network == {"hidden": 64} and config.data.gain == [0.5, 1.0]
    with pytest.raises(ValueError, match="unknown architecture"):
        training.train(configuration.load_config(None, ["model.architecture=transformer", f"run.output={tmp_path}/r"]))
    assert not (tmp_path / "r" / "history.csv").exists()


@pytest.mark.smoke
def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert {c.stem for c in configs} >= {"band", "satb", "musdb18hq"}
    for path in configs:
        config = configuration.load_config(path)
        training.build_separation_model(config)


def test_cli_reports_config_errors_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tfsep.cli", "train", "data.batchsize=4"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("tfsep: error: unknown config key 'data.batchsize'")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_mixed_precision_training_keeps_outputs_float32(rendered, tmp_path):
    import tensorflow as tf

    from tfsep._keras import keras

    config = tiny_config(rendered, tmp_path / "run", run={"output": str(tmp_path / "run"), "verbose": 0,
                                                          "mixed_precision": "mixed_float16", "micro_batches": 2},
                         schedule={"epochs": 1, "normalization_batches": 1})
    history = training.train(config)
    assert np.isfinite(history.history["loss"]).all()
    trainer = history.model
    assert trainer.get_layer("bandconv_split").compute_dtype == "float16"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    outputs = trainer(tf.zeros((1, 800, 2)))
    assert {tensor.dtype for tensor in outputs.values()} == {tf.float32}
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfsep.train import train
history = train(json.loads(sys.argv[1]))
print(json.dumps({"replicas": history.model.distribute_strategy.num_replicas_in_sync,
                  "loss": history.history["loss"]}))
"""


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(rendered, tmp_path):
    config = tiny_config(rendered, tmp_path / "run", run={"output": str(tmp_path / "run"), "verbose": 0,
                                                          "distribute": "mirrored", "devices": ["/cpu:0", "/cpu:1"],
                                                          "micro_batches": 2})  # 2 slices of 2 per replica
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(config)], capture_output=True,
                            text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["loss"][-1] < report["loss"][0]


MULTIWORKER_SCRIPT = """
import json, sys
import numpy as np
from tfsep.train import train
history = train(json.loads(sys.argv[1]))
np.savez(sys.argv[2], *history.model.get_weights())
print(json.dumps({"replicas": history.model.distribute_strategy.num_replicas_in_sync,
                  "loss": history.history["loss"]}))
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multiworker_strategy_with_two_workers_on_loopback(rendered, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    config = tiny_config(rendered, tmp_path / "run", run={"output": str(tmp_path / "run"), "verbose": 0,
                                                          "distribute": "multiworker"},
                         schedule={"epochs": 3, "normalization_batches": 1})
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", MULTIWORKER_SCRIPT, json.dumps(config), str(tmp_path / f"weights{index}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=500)
        assert worker.returncode == 0, stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [r["replicas"] for r in reports] == [2, 2]
    assert all(r["loss"][-1] < r["loss"][0] for r in reports)
    first, second = np.load(tmp_path / "weights0.npz"), np.load(tmp_path / "weights1.npz")
    assert len(first.files) > 10
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    assert (tmp_path / "run" / "model.keras").is_file()  # written by the chief only
    assert not (tmp_path / "run" / "worker-1" / "model.keras").exists()


@pytest.mark.slow
def test_fine_tuning_starts_from_a_models_weights_on_its_own_sources(rendered, tmp_path):
    """model.init: the run starts from the given model (here a Spleeter-like vocals/accompaniment unet),
    keeps its batch norms frozen, and trains it on a four-stem set whose accompaniment is the remainder."""
    import tfsep
    from tfsep._keras import keras

    keras.utils.set_random_seed(3)
    start = tfsep.build_model("unet", ("vocals", "accompaniment"), 8000, n_fft=256, hop=64, size="tiny",
                              framing="pad_end", segment=64, ratio_mask_exponent=2.0, mask_extension="zeros")
    start.save(tmp_path / "start.keras")
    config = tiny_config(rendered, tmp_path / "run", data={"sources": ["vocals", "accompaniment"],
                                                          "remainder": "accompaniment"},
                         model={"init": str(tmp_path / "start.keras")}, schedule={"epochs": 4})
    history = training.train(config)
    assert np.isfinite(history.history["val_loss"]).all()
    tuned = tfsep.load_model(tmp_path / "run" / "model.keras")
    assert tuned.get_config() == {**start.get_config(), "name": tuned.name}
    for name in ("unet_vocals_conv1", "unet_accompaniment_deconv3", "unet_vocals_bn2", "input_standardize"):
        changed = [not np.array_equal(a, b) for a, b in zip(start.get_layer(name).get_weights(),
                                                              tuned.get_layer(name).get_weights())]
        assert any(changed) == name.endswith(("conv1", "deconv3")), name  # batch norms and statistics stay
    for name in ("unet_vocals_conv1", "unet_accompaniment_deconv3"):  # trained from the start's kernels, not anew
        before, after = (model.get_layer(name).get_weights()[0].ravel() for model in (start, tuned))
        assert np.corrcoef(before, after)[0, 1] > 0.9, name
    mismatched = tiny_config(rendered, tmp_path / "other", model={"init": str(tmp_path / "start.keras")})
    with pytest.raises(configuration.ConfigError, match=r"separates \['vocals', 'accompaniment'\] at 8000 Hz"):
        training.train(mismatched)


@pytest.mark.slow
def test_fine_tuning_from_a_converted_open_unmix_model_resumes_and_loads(rendered, tmp_path, monkeypatch):
    """model.init: a random-weight Open-Unmix conversion (umxhq's STFT, a tiny network) trains at 44.1 kHz with its
    batch norms frozen; a run stopped after its second epoch's backup resumes from the third, and its model loads."""
    from conftest import SOURCES, synthetic_song
    from test_openunmix import tiny_files

    import tfsep
    from tfsep import providers

    start = providers.convert("openunmix", tiny_files(tmp_path / "umx", SOURCES, hidden=16, bins=1487,
                                                      output_bins=2049, layers=1))
    start.save(tmp_path / "start.keras")
    run = tmp_path / "run"
    config = tiny_config(rendered, run, data={"sample_rate": 44100, "chunk_seconds": 0.5, "batch_size": 2,
                                              "steps_per_epoch": 2, "validation_batches": 1},
                         model={"init": str(tmp_path / "start.keras")}, schedule={"epochs": 4})
    train_killed_after_two_epochs(config, monkeypatch)
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 2  # epochs done
    history = training.train(config)
    assert history.epoch == [2, 3] and np.isfinite(history.history["loss"]).all()

    tuned = tfsep.load_model(run / "model.keras")
    assert tuned.get_config() == {**start.get_config(), "name": tuned.name}
    for name in ("umx_vocals_fc1", "umx_bass_fc3", "umx_drums_bn2", "umx_other_standardize"):
        before, after = start.get_layer(name).get_weights(), tuned.get_layer(name).get_weights()
        changed = any(not np.array_equal(a, b) for a, b in zip(before, after))
        assert changed == name.endswith(("fc1", "fc3")), name  # batch norms and input statistics stay
        if changed:  # trained from the converted weights, not anew
            assert np.corrcoef(before[0].ravel(), after[0].ravel())[0, 1] > 0.9, name
    stems = tuned.predict(synthetic_song(0.5, seed=3)[None], verbose=0)
    assert sorted(stems) == sorted(SOURCES) and all(np.isfinite(stem).all() for stem in stems.values())
