"""The private Keras that tfsep relies on, in one place: counting a loss in the `loss` metric of `fit`.

`train.Trainer` runs a batch as slices, and counts each slice's loss in the `loss` metric
that `fit` and `evaluate` report, as Keras's own `train_step` and `test_step` count a whole
batch's. Keras 3 has no public way to do that: the public `Model.compute_loss` returns the
loss without counting it, and Keras's steps update the private `Model._loss_tracker` (the
`Mean` that `compile` makes) with the loss multiplied back by the number of tf.distribute
replicas (the private `keras.src.losses.loss.unscale_loss_for_distribution`, which
keras-team/keras#20610 added to those steps), since a compiled loss comes back divided by
it (keras-team/keras#20609). Keras's own unscaling is taken rather than rewritten, so that
it stays the inverse of the scaling that `compute_loss` applies. No upstream issue asks for
a public hook.

Tested with Keras 3.12.4 (TensorFlow 2.21) and 3.15.1 (TensorFlow 2.17 and 2.21);
`tests/test_keras_private.py` fails, in one message, when a Keras release changes either.
"""

from tfsep._keras import keras

try:
    from keras.src.losses.loss import unscale_loss_for_distribution
except ImportError:  # a Keras release without it: `track_loss` says so
    unscale_loss_for_distribution = None

TESTED = ("3.12.4", "3.15.1")


def upstream_changed(what):
    """The one-line error for this Keras release, of which `what` is said (e.g. "has no X"), naming those tested."""
    return (f"Keras {keras.__version__} {what}, which tfsep's micro-batched training (train.Trainer) relies on; "
            f"tfsep was tested with Keras {' and '.join(TESTED)} (see tfsep/_keras_private.py)")


def track_loss(model, loss, count):
    """Count `loss`, as `model.compute_loss` returns it for `count` examples, in the `loss` metric of `model`'s logs,
    as Keras's own train and test steps count a batch's loss: a mean over examples, unscaled for tf.distribute."""
    if unscale_loss_for_distribution is None:
        raise RuntimeError(upstream_changed("has no keras.src.losses.loss.unscale_loss_for_distribution"))
    tracker = getattr(model, "_loss_tracker", None)
    if not isinstance(tracker, keras.metrics.Mean):
        raise RuntimeError(upstream_changed("makes no keras.metrics.Mean `Model._loss_tracker` in compile"))
    tracker.update_state(unscale_loss_for_distribution(loss), sample_weight=count)
