"""Writing the TFLite forms (`tflite.write`): builtin ops only, whole clips or the streaming form."""

import json
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfsep import files, networks, quiet
from tfsep._keras import keras
from tfsep.chunking import chunk_plan
from tfsep.formats import exported_description, flatbuffer
from tfsep.formats.tflite import METADATA, STATE
from tfsep.framing import whole_hops
from tfsep.models import chunk_model, reconfigure
from tfsep.names import QUANTIZATIONS

UNBOUNDED_CONTEXT_SECONDS = 3.0  # streaming context for networks whose reach has no bound


def write(model, path, *, quantize="none", wiener_iterations=None, block_seconds=None, context_seconds=None,
          griffin_lim_iterations=None, mixture_consistent=None, fixed_seconds=None):
    """Convert `model` to a TFLite file at `path` with builtin ops only; returns the path.

    quantize: "none" (float32), "float16" (weights stored as float16) or "dynamic-int8"
    (dynamic-range quantisation: int8 weights, float activations). Without `block_seconds`
    the file separates whole clips of any length; with it, it is `streaming_model`'s
    block-by-block form (block and latency in its metadata). The inverse STFT takes its
    builtin-op form, and umx's LSTMs become `FusedLSTM`s, with the same weights. A whole-clip
    file of a model that cuts its frames into segments also holds a `chunk` signature, the
    model's `valid` form (`models.chunk_model`), through which `Separator` sums chunks
    exactly; the two signatures share each weight buffer. The file is written atomically.

    With `fixed_seconds`, the whole-clip form is built at one shape, for runtimes that cannot
    resize (LiteRT.js): input `waveform` (1, fixed_samples, channels), each stem the same,
    where fixed_samples is the chunk of `chunking.chunk_plan(description, fixed_seconds)`;
    built at that shape, its shape ops fold away. The metadata adds `fixed_samples` and the
    plan's `overlap_samples`. Models that cut frames into segments (summed chunks) are refused, and
    umx's LSTMs stay Keras LSTMs (WHILE loops): LiteRT.js refuses the fused LSTM's variable tensors.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {list(QUANTIZATIONS)}, got {quantize!r}")
    config = model.get_config()
    changes = {"wiener_iterations": wiener_iterations, "griffin_lim_iterations": griffin_lim_iterations,
               "mixture_consistent": mixture_consistent, "inverse_fft": "builtin"}
    changes["network"] = networks.tflite_options(config["architecture"], config["network"], fixed_seconds is not None)
    model = reconfigure(model, **changes)
    description = {**exported_description(model), "quantize": quantize}
    converted = model
    if fixed_seconds is not None:
        if block_seconds is not None:
            raise ValueError("the fixed-shape form is a whole-clip form; it takes no stream block")
        converted, fixed = fixed_model(model, description, fixed_seconds)
        description.update(fixed)
    if block_seconds is not None:
        converted, streaming = streaming_model(model, block_seconds, context_seconds)
        description.update(streaming)
    try:
        packed = convert_to_tflite(converted, quantize)
        if block_seconds is None and description["segment_frames"]:
            packed = merge_signatures(packed, convert_to_tflite(chunk_model(model), quantize), "chunk")
    except Exception as error:  # the converter's own message names the ops it could not map
        raise ValueError(f"{config['architecture']} does not convert to TFLite builtin ops "
                         f"({_conversion_failure(str(error))})") from None
    packed = _with_metadata(packed, METADATA, json.dumps(description).encode())
    path = Path(path)
    files.replace_atomically(path, lambda temporary: Path(temporary).write_bytes(packed))
    return path


def fixed_model(model, description, fixed_seconds):
    """`model` taking and giving one chunk of `chunking.chunk_plan(description, fixed_seconds)` samples at batch 1;
    returns (keras.Model, {"fixed_samples", "overlap_samples"}). ValueError for summed-chunk models, which have no
    fixed whole-clip shape here."""
    check_fixable(description)
    plan = chunk_plan(description, fixed_seconds)
    waveform = keras.Input(batch_shape=(1, plan.chunk, description["channels"]), name="waveform")
    fixed = keras.Model(waveform, model(waveform), name=f"{model.name}_fixed")
    return fixed, {"fixed_samples": plan.chunk, "overlap_samples": plan.overlap}


def check_fixable(description):
    """ValueError for a model that `fixed_model` cannot fix: one that cuts its frames into segments."""
    if description["segment_frames"]:
        raise ValueError(f"this {description['architecture']} model cuts its frames into "
                         f"{description['segment_frames']}-frame segments (summed chunks, as Spleeter's), which "
                         "the fixed-shape form (and --format web) does not support")


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


def convert_to_tflite(model, quantize="none"):
    """The Keras `model` as a TFLite flatbuffer (bytes) with builtin ops only, quantised as `quantize` says.

    The converter gives every fused LSTM a cell-state clip at ±10, which Keras's LSTM does
    not have and which changes a trained model whose cell states grow past it; the clip is
    taken out of the flatbuffer.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with quiet.native_output():  # Keras prints every captured variable of the traced model, absl its warnings
        packed = converter.convert()
    converted = flatbuffer.read(packed)
    clipped = [operator.builtinOptions for subgraph in converted.subgraphs for operator in subgraph.operators
               if isinstance(operator.builtinOptions, flatbuffer.schema().UnidirectionalSequenceLSTMOptionsT)]
    if not clipped:
        return packed
    for options in clipped:
        options.cellClip = 0.0
    return flatbuffer.write(converted)


def merge_signatures(primary, secondary, key):
    """One TFLite flatbuffer with the subgraphs and signatures of `primary` and, as `key`, the signature of
    `secondary`, each distinct buffer stored once (the converter freezes one signature per file, and
    two forms of one model hold the same weights)."""
    merged, other = flatbuffer.read(primary), flatbuffer.read(secondary)
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
    return flatbuffer.write(merged)


def _conversion_failure(message):
    """The line of a converter error that says what failed: the TF Select ops it needed, or the first error."""
    lines = message.splitlines()
    for line in lines:
        if line.startswith("TF Select ops:"):
            return line.strip()
    errors = [re.sub(r"^loc\(.*\)\): ", "", line.split("error: ", 1)[1]) for line in lines if "error: " in line]
    return errors[0].strip() if errors else (lines[0] if lines else "unknown error")


def _with_metadata(converted, name, value):
    """The TFLite flatbuffer `converted` with one more metadata entry `name` holding the bytes `value`."""
    schema = flatbuffer.schema()
    model = flatbuffer.read(converted)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return flatbuffer.write(model)
