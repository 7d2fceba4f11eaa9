"""The one place where tfsep edits TFLite flatbuffers, through private TensorFlow modules.

TensorFlow offers no public Python API to read or edit a `.tflite` file
(tensorflow/tensorflow#16561); its own tools use the generated schema bindings
`tensorflow.lite.python.schema_py_generated` and `tensorflow.lite.tools.flatbuffer_utils`,
which have broken before (tensorflow/tensorflow#41846). tfsep uses them here only, to
unclip fused LSTM cell states, merge two signatures into one file and add its metadata.
Tested with TensorFlow 2.17.1 and 2.21.0; `tests/test_export.py` checks each name used
here and fails naming it if an upgrade moves it. (Reading the metadata back needs none of
this: `formats.tflite` reads it with the `flatbuffers` runtime alone.)
"""


def schema():
    """TFLite's generated schema bindings (object API: ModelT, BufferT, MetadataT, ...)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read(flatbuffer):
    """The TFLite flatbuffer (bytes) as a mutable `schema().ModelT`."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))


def write(model):
    """The `schema().ModelT` `model` as TFLite flatbuffer bytes."""
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


NAMES = ("ModelT", "BufferT", "MetadataT", "UnidirectionalSequenceLSTMOptionsT")  # what tfsep takes of `schema()`
