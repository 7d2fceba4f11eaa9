"""Keras, checked to run on the TensorFlow backend that every tfsep layer needs."""

import keras

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"tfsep needs Keras on the TensorFlow backend, but Keras runs on "
        f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before importing keras"
    )
