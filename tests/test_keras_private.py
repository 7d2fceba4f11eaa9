"""The private Keras that tfsep relies on (`_keras_private`) against Keras's own training steps: a Keras release
that changes it fails here, in one message."""

import json
import subprocess
import sys

import pytest

from tfsep import _keras_private
from tfsep._keras_private import track_loss, upstream_changed

COUNTED_SCRIPT = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfsep._keras import keras
from tfsep._keras_private import track_loss


class Counted(keras.Model):
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, training=True)
            track_loss(self, loss, tf.shape(x)[0])
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, self.trainable_weights), self.trainable_weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=None)

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        track_loss(self, self.compute_loss(x, y, y_pred, training=False), tf.shape(x)[0])
        return self.compute_metrics(x, y, y_pred, sample_weight=None)


def history(model_class):
    keras.utils.set_random_seed(0)
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        inputs = keras.Input((3,))
        model = model_class(inputs, keras.layers.Dense(2)(inputs))
        model.compile(keras.optimizers.Adam(0.1), loss="mse", metrics=["mae"])
    x = np.arange(30, dtype="float32").reshape(10, 3) / 30
    data = tf.data.Dataset.from_tensor_slices((x, np.ones((10, 2), "float32"))).batch(4)  # 4, 4 and 2 examples
    return model.fit(data, validation_data=data, epochs=2, verbose=0).history


print(json.dumps({"keras": history(keras.Model), "tfsep": history(Counted)}))
"""


def test_track_loss_logs_the_loss_that_keras_own_steps_log():
    """Steps that count their loss with `track_loss` log the same `loss` and `val_loss` as Keras's own, bit for bit,
    over two replicas (the loss unscaled) and batches of unequal size (a mean over examples)."""
    result = subprocess.run([sys.executable, "-c", COUNTED_SCRIPT], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        pytest.fail(next((line for line in lines if "tfsep was tested with Keras" in line), result.stderr[-3000:]))
    logs = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(logs["keras"]) >= {"loss", "val_loss", "mae"}
    assert logs["tfsep"] == logs["keras"], f"{upstream_changed('logs another loss than track_loss counts')}: {logs}"


@pytest.mark.smoke
def test_a_keras_without_the_private_parts_is_named_in_one_message(monkeypatch):
    with pytest.raises(RuntimeError, match=r"^Keras \S+ makes no keras.metrics.Mean `Model._loss_tracker`.*tested "
                                           r"with Keras 3.12.4 and 3.15.1"):
        track_loss(object(), 1.0, 1)
    monkeypatch.setattr(_keras_private, "unscale_loss_for_distribution", None)
    with pytest.raises(RuntimeError, match=r"has no keras.src.losses.loss.unscale_loss_for_distribution, which tfsep"):
        track_loss(object(), 1.0, 1)
