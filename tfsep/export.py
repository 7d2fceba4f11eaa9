"""Export a SeparationModel for serving: a SavedModel for TF Serving, a builtin-only TFLite model.

`export_savedmodel(model, PATH)` writes `PATH/<version>/` (saved_model.pb, variables/,
assets.extra/tfsep.json) with three signatures, none of which needs tfsep to load:

- `serving_default`: input `waveform` float32 [batch, samples, channels] at the model's
  rate, any samples >= 1; one output per source, named by the source.
- `chunk`: the same for fixed-length chunks [batch, chunk_samples, channels], for clients
  that stream (overlap the chunks and crossfade, as `tfsep.separate` does).
- `metadata`: no input; sources, sample rate, channels, STFT settings, chunk length and
  versions as constant tensors.

Bad input (channel count, an empty batch or no samples) fails inside the graph with a
message that says what the signature expects; wrong rank or dtype are refused by the
signature itself.

`export_tflite(model, PATH)` writes one `.tflite` file that converts with TFLite builtin
ops only (no Flex), with a resizable input length and batch: signature `serving_default`,
input `waveform`, outputs named by the sources, and the same description as a "tfsep"
JSON entry in the flatbuffer's metadata (`formats.tflite.describe(PATH)` reads it back). With
`block_seconds`, it writes the streaming form instead (see `streaming_model`): fixed,
hop-aligned blocks in, the stems of an earlier block out, and the recent input carried
as explicit state.
"""

import json
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfsep import files, networks, quiet
from tfsep._keras import keras
from tfsep._version import __version__
from tfsep.formats.tflite import METADATA as TFLITE_METADATA
from tfsep.framing import whole_hops
from tfsep.models import chunk_model, describe, inference_model, reconfigure
from tfsep.names import QUANTIZATIONS

STATE = "next_state"  # the streaming form's state output; no source may take this name
UNBOUNDED_CONTEXT_SECONDS = 3.0  # streaming context for networks whose reach has no bound


def metadata(model):
    """What an exported model needs to say about itself: `models.describe` and the tfsep version."""
    return {**describe(model), "tfsep_version": __version__}


class _Serving(tf.Module):
    """The model and its signatures, as a tf.Module that tf.saved_model can save."""

    def __init__(self, model, chunk_samples, description):
        super().__init__(name="tfsep")
        self.model = model
        self.channels = model.get_config()["channels"]
        self.description = description
        self.serve = tf.function(self._separate, input_signature=[
            tf.TensorSpec([None, None, None], tf.float32, name="waveform")])
        self.serve_chunk = tf.function(self._separate, input_signature=[
            tf.TensorSpec([None, chunk_samples, None], tf.float32, name="waveform")])
        self.describe = tf.function(self._metadata, input_signature=[])

    def _separate(self, waveform):
        expected = f"waveform must be float32 [batch, samples, {self.channels}] at {self.description['sample_rate']} Hz"
        # A server feeds the graph without enforcing the signature's rank; padding the shape lets a
        # rank-1 or rank-2 input reach the channel check instead of failing in a slice.
        shape = tf.concat([tf.shape(waveform), [0, 0, 0]], 0)
        checks = [
            tf.debugging.assert_equal(shape[2], self.channels, message=f"{expected}: wrong rank or channel count"),
            tf.debugging.assert_positive(shape[0], message=f"{expected}: the batch is empty"),
            tf.debugging.assert_positive(shape[1], message=f"{expected}: no samples"),
            tf.debugging.assert_less_equal(
                shape[0] * shape[1], self.description["max_samples"],
                message=f"{expected}: batch × samples exceeds the limit of {self.description['max_samples']} "
                f"samples per request; send longer audio as several requests (see the chunk signature)"),
        ]
        with tf.control_dependencies(checks):
            waveform = tf.ensure_shape(waveform, [None, None, self.channels])  # static channels for the network
        return dict(self.model(waveform, training=False))

    def _metadata(self):
        return {key: tf.constant(value) for key, value in self.description.items()}


def export_savedmodel(model, path, version=1, chunk_seconds=10.0, wiener_iterations=None, max_seconds=120.0,
                      griffin_lim_iterations=None, mixture_consistent=None):
    """Write `model` to `path/<version>/` for TF Serving; returns that folder.

    A request may hold at most `max_seconds` of audio (batch × samples, at the model's
    rate); a longer one is refused inside the graph rather than exhausting the server's
    memory (`bandconv` base holds about 30 MB per second of stereo audio). The folder is
    written beside its target and renamed into place, so an existing export is never
    half-replaced; an existing `path/<version>` is refused. The graph takes the model's
    `bitcast` spectral form (`models.inference_model`), TensorFlow's fastest.
    """
    model = inference_model(model, wiener_iterations=wiener_iterations, griffin_lim_iterations=griffin_lim_iterations,
                            mixture_consistent=mixture_consistent)
    hop = model.get_config()["hop"]
    chunk_samples = whole_hops(chunk_seconds, model.sample_rate, hop)
    target = Path(path) / str(int(version))
    if target.exists():
        raise FileExistsError(f"{target}: already exists; export another --version or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not max_seconds * model.sample_rate >= chunk_samples:
        raise ValueError(f"max_seconds ({max_seconds}) must allow at least one chunk ({chunk_seconds} s)")
    description = {**metadata(model), "chunk_samples": chunk_samples, "model_version": int(version),
                   "max_samples": int(max_seconds * model.sample_rate)}
    module = _Serving(model, chunk_samples, description)
    signatures = {"serving_default": module.serve, "chunk": module.serve_chunk, "metadata": module.describe}

    def write(folder):
        tf.saved_model.save(module, str(folder), signatures=signatures)
        (folder / "assets.extra").mkdir()
        (folder / "assets.extra" / "tfsep.json").write_text(json.dumps(description, indent=2))

    return files.write_folder(target, write)


def streaming_model(model, block_seconds=1.0, context_seconds=None):
    """`model` as a block-by-block separator whose recent input is explicit state; returns (keras.Model, description).

    Inputs: `block` (batch, block_samples, channels), the next samples of the stream, and
    `state` (batch, 2 · context_samples, channels), the samples before them (zeros at the
    start of a stream). The model separates the window [state, block] and returns, per
    source, (batch, block_samples, channels): the stems of the samples that end
    `context_samples` before the block does, so the output lags the input by that latency;
    and `next_state`, the window's last 2 · context_samples samples, to feed back.

    Block and context are whole hops, so the window's frames are the whole stream's. The
    default context is the network's receptive field plus one FFT length: then, away from
    the start of the stream, every output sample is the whole-signal result. For networks
    without a bounded, shift-equivariant reach (umx, unet) the default is
    UNBOUNDED_CONTEXT_SECONDS on each side, and the stream approximates offline
    separation; so does Wiener filtering, whose EM statistics span the window.
    """
    config = model.get_config()
    hop, channels, rate = config["hop"], config["channels"], model.sample_rate
    if STATE in model.sources:
        raise ValueError(f"a source named {STATE!r} clashes with the streaming form's state output")
    if not block_seconds > 0 or (context_seconds is not None and not context_seconds > 0):
        raise ValueError(f"stream block ({block_seconds} s) and context ({context_seconds} s) must be positive")
    block = whole_hops(block_seconds, rate, hop, up=True)
    if context_seconds is None:
        options = networks.network_options(config["architecture"], config["size"], config["network"])
        reach = networks.receptive_field(config["architecture"], options)
        context_seconds = UNBOUNDED_CONTEXT_SECONDS if reach is None else (reach * hop + config["n_fft"]) / rate
    context = whole_hops(context_seconds, rate, hop, up=True)

    block_input = keras.Input((block, channels), name="block")
    state_input = keras.Input((2 * context, channels), name="state")
    window = keras.layers.Concatenate(axis=1, name="window")([state_input, block_input])
    stems = model(window)
    outputs = {source: keras.layers.Cropping1D((context, context), name=f"{source}_block")(stems[source])
               for source in model.sources}
    outputs[STATE] = keras.layers.Cropping1D((block, 0), name=STATE)(window)
    streaming = keras.Model([block_input, state_input], outputs, name=f"{model.name}_stream")
    description = {"block_samples": block, "state_samples": 2 * context, "latency_samples": context}
    return streaming, description


def export_tflite(model, path, quantize="none", wiener_iterations=None, block_seconds=None, context_seconds=None,
                  griffin_lim_iterations=None, mixture_consistent=None):
    """Convert `model` to a TFLite file at `path` with builtin ops only; returns the path.

    quantize: "none" (float32), "float16" (weights stored as float16) or "dynamic-int8"
    (dynamic-range quantisation: int8 weights, float activations). Without `block_seconds`
    the file separates whole clips of any length; with it, it is `streaming_model`'s
    block-by-block form (block and latency in its metadata). The inverse STFT takes its
    builtin-op form, and umx's LSTMs become `FusedLSTM`s, with the same weights. A whole-clip
    file of a model that cuts its frames into segments also holds a `chunk` signature, the
    model's `valid` form (`models.chunk_model`), through which `Separator` sums chunks
    exactly; the two signatures share each weight buffer. The file is written atomically.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {list(QUANTIZATIONS)}, got {quantize!r}")
    config = model.get_config()
    changes = {"wiener_iterations": wiener_iterations, "griffin_lim_iterations": griffin_lim_iterations,
               "mixture_consistent": mixture_consistent, "inverse_fft": "builtin"}
    changes["network"] = networks.tflite_options(config["architecture"], config["network"])
    model = reconfigure(model, **changes)
    description = {**metadata(model), "quantize": quantize}
    converted = model
    if block_seconds is not None:
        converted, streaming = streaming_model(model, block_seconds, context_seconds)
        description.update(streaming)
    try:
        flatbuffer = convert_to_tflite(converted, quantize)
        if block_seconds is None and description["segment_frames"]:
            flatbuffer = merge_signatures(flatbuffer, convert_to_tflite(chunk_model(model), quantize), "chunk")
    except Exception as error:  # the converter's own message names the ops it could not map
        raise ValueError(f"{config['architecture']} does not convert to TFLite builtin ops "
                         f"({_conversion_failure(str(error))})") from None
    flatbuffer = _with_metadata(flatbuffer, TFLITE_METADATA, json.dumps(description).encode())
    path = Path(path)
    files.replace_atomically(path, lambda temporary: Path(temporary).write_bytes(flatbuffer))
    return path


def convert_to_tflite(model, quantize="none"):
    """The Keras `model` as a TFLite flatbuffer (bytes) with builtin ops only, quantised as `quantize` says.

    The converter gives every fused LSTM a cell-state clip at ±10, which Keras's LSTM does
    not have and which changes a trained model whose cell states grow past it; the clip is
    taken out of the flatbuffer.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with quiet.native_output():  # Keras prints every captured variable of the traced model, absl its warnings
        flatbuffer = converter.convert()
    converted = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    clipped = [operator.builtinOptions for subgraph in converted.subgraphs for operator in subgraph.operators
               if isinstance(operator.builtinOptions, schema.UnidirectionalSequenceLSTMOptionsT)]
    if not clipped:
        return flatbuffer
    for options in clipped:
        options.cellClip = 0.0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(converted))


def merge_signatures(primary, secondary, key):
    """One TFLite flatbuffer with the subgraphs and signatures of `primary` and, as `key`, the signature of
    `secondary`, each distinct buffer stored once (the converter freezes one signature per file, and
    two forms of one model hold the same weights)."""
    from tensorflow.lite.tools import flatbuffer_utils

    merged = flatbuffer_utils.convert_bytearray_to_object(bytearray(primary))
    other = flatbuffer_utils.convert_bytearray_to_object(bytearray(secondary))
    if len(other.signatureDefs) != 1:
        raise ValueError(f"the {key} form has {len(other.signatureDefs)} signatures, not one")
    stored = {bytes(buffer.data): index for index, buffer in enumerate(merged.buffers) if buffer.data is not None}

    def buffer_index(index):
        data = other.buffers[index].data
        if data is None or not len(data):
            return 0  # the empty buffer of tensors without data
        if bytes(data) not in stored:
            stored[bytes(data)] = len(merged.buffers)
            merged.buffers.append(other.buffers[index])
        return stored[bytes(data)]

    codes = {}
    for index, code in enumerate(other.operatorCodes):
        key_of = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
        matches = [i for i, c in enumerate(merged.operatorCodes)
                   if (c.builtinCode, c.deprecatedBuiltinCode, c.customCode, c.version) == key_of]
        if not matches:
            merged.operatorCodes.append(code)
            matches = [len(merged.operatorCodes) - 1]
        codes[index] = matches[0]
    offset = len(merged.subgraphs)
    for subgraph in other.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = buffer_index(tensor.buffer)
        for operator in subgraph.operators:
            operator.opcodeIndex = codes[operator.opcodeIndex]
            for name, value in list(getattr(operator.builtinOptions, "__dict__", {}).items()):
                if name.endswith("SubgraphIndex"):  # control flow (WHILE, IF, CALL_ONCE) names subgraphs
                    setattr(operator.builtinOptions, name, value + offset)
        merged.subgraphs.append(subgraph)
    signature = other.signatureDefs[0]
    signature.signatureKey, signature.subgraphIndex = key, signature.subgraphIndex + offset
    merged.signatureDefs.append(signature)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(merged))


def _conversion_failure(message):
    """The line of a converter error that says what failed: the TF Select ops it needed, or the first error."""
    lines = message.splitlines()
    for line in lines:
        if line.startswith("TF Select ops:"):
            return line.strip()
    errors = [re.sub(r"^loc\(.*\)\): ", "", line.split("error: ", 1)[1]) for line in lines if "error: " in line]
    return errors[0].strip() if errors else (lines[0] if lines else "unknown error")


def _with_metadata(flatbuffer, name, value):
    """The TFLite flatbuffer with one more metadata entry `name` holding the bytes `value`."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
