"""A `.tflite` file written by `tfsep export --format tflite` (`write`, in `tflite_writer`), run in LiteRT's
interpreter.

Its description is the JSON that the export put in the flatbuffer's metadata under the name
"tfsep", read here with the `flatbuffers` runtime alone: describing and running a TFLite model
imports no TensorFlow, so `tfsep separate` with one starts in a fraction of a second.
"""

import json
import queue
from pathlib import Path

import numpy as np

from tfsep import audio, files, quiet
from tfsep.backends import Backend, check_fixed_options

METADATA = "tfsep"  # the name of the description in the flatbuffer's metadata
STATE = "next_state"  # the streaming form's state output; no source may take this name
# Field slots of TFLite's schema (tensorflow/compiler/mlir/lite/schema/schema.fbs): Model.buffers is field 4 and
# Model.metadata field 6; Metadata.name 0 and Metadata.buffer 1; Buffer.data 0, Buffer.offset 1, Buffer.size 2.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def describe(path):
    """The description that `write` embedded in the TFLite file at `path`."""
    files.check_regular_file(path, missing="no such model file")
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror or error})") from None
    try:
        entries = dict(_metadata(data))
    except Exception:  # a flatbuffer read of other bytes fails with struct, index or unicode errors
        raise ValueError(f"{path}: not a TFLite model file") from None
    if METADATA not in entries:
        raise ValueError(f"{path}: has no tfsep metadata (not written by tfsep export)")
    try:
        return json.loads(entries[METADATA])
    except ValueError:
        raise ValueError(f"{path}: its tfsep metadata is not readable JSON") from None


def _metadata(data):
    """(name, bytes) of each metadata entry of the TFLite flatbuffer `data`."""
    from flatbuffers import number_types, table

    if data[4:8] != b"TFL3":  # the schema's file identifier
        raise ValueError("no TFLite file identifier")
    model = table.Table(bytearray(data), int.from_bytes(data[:4], "little"))  # the root table's offset
    buffers = _tables(model, _MODEL_BUFFERS)
    for entry in _tables(model, _MODEL_METADATA):
        name = entry.String(entry.Pos + _field(entry, _METADATA_NAME)).decode()
        index = entry.Get(number_types.Uint32Flags, entry.Pos + _field(entry, _METADATA_BUFFER))
        yield name, _buffer_bytes(buffers[index], data)


def _field(tab, slot):
    offset = tab.Offset(4 + 2 * slot)
    if not offset:
        raise ValueError(f"field {slot} is absent")
    return offset


def _tables(tab, slot):
    """The tables of the vector in field `slot` of `tab` ([] where absent)."""
    from flatbuffers import table

    offset = tab.Offset(4 + 2 * slot)
    if not offset:
        return []
    start = tab.Vector(offset)
    return [table.Table(tab.Bytes, tab.Indirect(start + 4 * k)) for k in range(tab.VectorLen(offset))]


def _buffer_bytes(buffer, data):
    """A Buffer's bytes: its `data` vector, or for files over 2 GB the (offset, size) span after the flatbuffer."""
    from flatbuffers import number_types

    offset = buffer.Offset(4 + 2 * _BUFFER_DATA)
    if offset:
        start = buffer.Vector(offset)
        return bytes(data[start:start + buffer.VectorLen(offset)])
    where = buffer.Get(number_types.Uint64Flags, buffer.Pos + _field(buffer, _BUFFER_OFFSET))
    size = buffer.Get(number_types.Uint64Flags, buffer.Pos + _field(buffer, _BUFFER_SIZE))
    return bytes(data[where:where + size])


def open(path, description, threads, options):  # noqa: A001 (the formats interface)
    return LiteRTBackend(path, description, threads, **options)


def __getattr__(name):
    """`write`, from `tflite_writer`, imported (with TensorFlow) when asked for."""
    if name == "write":
        from tfsep.formats.tflite_writer import write

        return write
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class LiteRTBackend(Backend):
    """A whole-clip TFLite file run in LiteRT, by `threads` single-threaded interpreters that take chunks at once.

    LiteRT's real FFT kernel runs on one thread whatever the interpreter's thread count, so
    one interpreter per thread, each separating its own chunk, keeps every core busy
    (`workers`: calls that may run at once from different threads). The file's weightless
    options (`backends.OPTIONS`) were fixed at export; asking for others raises ValueError, as
    does the streaming form. A model that cuts frames into segments runs the file's `chunk`
    signature, its `valid` form. A fixed-shape file (`fixed_samples` in its description, the
    web export's) takes one chunk of exactly that length: each shorter chunk is given to it
    zero-padded at the end, one at a time, and its stems are cropped to the chunk; the browser
    page does the same.
    """

    def __init__(self, path, description, threads=2, **options):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ImportError("running .tflite files needs LiteRT: pip install ai-edge-litert") from None
        if "block_samples" in description:
            raise ValueError(f"{path}: is the streaming form; separating files needs the whole-clip form")
        check_fixed_options(path, description, options)
        signature = "chunk" if description.get("segment_frames") else "serving_default"
        self.workers = max(1, int(threads))
        self._runners = queue.SimpleQueue()
        self.fixed = description.get("fixed_samples")
        warm_up = np.zeros((1, self.fixed or 2 * description["n_fft"], description["channels"]), np.float32)
        try:
            for _ in range(self.workers):
                runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner(signature)
                with quiet.native_output():  # LiteRT's INFO line at the first run
                    runner(waveform=warm_up)
                self._runners.put(runner)
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{path}: not a runnable TFLite model ({audio.error_reason(error)})") from None
        self.description = description

    def __call__(self, batch):
        """{source: (batch, samples, channels)} stems of the float32 (batch, samples, channels) `batch`."""
        runner = self._runners.get()
        try:
            if not self.fixed:
                return runner(waveform=batch)
            samples = batch.shape[1]
            if samples > self.fixed:
                raise ValueError(f"chunks of {samples} samples exceed this model's fixed {self.fixed}")
            padded = np.zeros((1, self.fixed, batch.shape[2]), np.float32)
            rows = []
            for row in batch:
                padded[0, :samples] = row
                rows.append(runner(waveform=padded))
            return {source: np.concatenate([row[source][:, :samples] for row in rows]) for source in rows[0]}
        finally:
            self._runners.put(runner)
