"""PyTorch weight files (`torch.save` of a state dict, e.g. Open-Unmix's `.pth`) read as numpy arrays, without
torch and without running any code from the file.

A `.pth` file is a pickle. Unpickling an untrusted one with `pickle` or `torch.load(weights_only=False)` can
call any function, so this module unpickles with `find_class` limited to what a state dict holds (`GLOBALS`):
the dict type, the functions torch rebuilds tensors and parameters with, and the storage types of
`STORAGE_DTYPES`. Anything else (`os.system`, `builtins.eval`, a model class) raises PthError before it is
called. Tensors come out of the pickle as records (storage key, offset, size, stride); their bytes are read
afterwards and strided with numpy.

Two layouts are read:

- the zip archive of torch >= 1.6: `<folder>/data.pkl`, `<folder>/data/<storage key>`, `<folder>/byteorder`
  (the folder may have any name);
- the older stream of torch < 1.6 (Open-Unmix's UMX-HQ weights are from 2019): magic number, protocol,
  system info, the pickle, the sorted storage keys, then each storage as an int64 count and its bytes.
"""

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}
LEGACY_MAGIC, LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001  # torch.serialization's, torch < 1.6
ZIP_MAGIC = b"PK\x03\x04"


class PthError(ValueError):
    """A file that is not a PyTorch state dict this module reads safely; the message names the file and why."""


class _StorageRef(NamedTuple):
    """A storage named in the pickle: its key in the file, element type and element count."""

    key: str
    dtype: np.dtype
    numel: int


class _TensorRecord(NamedTuple):
    """A tensor named in the pickle: `size` elements of `storage` from `offset`, `stride` elements apart."""

    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


class _StateDict(dict):
    """What `collections.OrderedDict` unpickles to: a dict that ignores pickled attributes (`_metadata`)."""

    def __setstate__(self, state):
        pass


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2's arguments -> a _TensorRecord (checked when its bytes are read)."""
    if not isinstance(storage, _StorageRef):
        raise PthError(f"a tensor's storage is a {type(storage).__name__}, not a storage of the file")
    return _TensorRecord(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    """torch._utils._rebuild_parameter's arguments -> the tensor record itself (a Parameter is its data)."""
    return data


class _StorageType(NamedTuple):
    """What a storage class such as `torch.FloatStorage` unpickles to: its name and numpy element type."""

    name: str
    dtype: np.dtype


GLOBALS = {  # (module, name) -> what it unpickles to; every other global is refused
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, np.dtype(dtype)) for name, dtype in STORAGE_DTYPES.items()},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", np.dtype(np.uint8)),
}


class _Unpickler(pickle.Unpickler):
    """An unpickler that resolves only `GLOBALS` and turns storage references into _StorageRef."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        if (module, name) in GLOBALS:
            return GLOBALS[module, name]
        if module == "torch" and name.endswith("Storage"):
            raise PthError(f"{self.path}: tensors of torch.{name} are not supported (numpy has no such type)")
        raise PthError(f"{self.path}: refused to load the global {module}.{name}: a state dict needs only "
                       "tensors, and loading this one could run code")

    def persistent_load(self, pid):
        """('storage', storage type, key, location, element count[, view]) -> _StorageRef."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise PthError(f"{self.path}: a persistent reference {str(pid)[:80]} that is not a tensor storage")
        _, storage_type, key, _location, numel, *view = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise PthError(f"{self.path}: storage {key!r} has no valid type and size")
        if view and view[0] is not None:
            raise PthError(f"{self.path}: storage {key!r} is a storage view (torch < 0.4), not supported")
        return _StorageRef(str(key), storage_type.dtype, numel)


def _unpickle(path, file):
    """The object pickled in `file` (a binary file object), under the restrictions of _Unpickler."""
    try:
        return _Unpickler(file, path).load()
    except PthError:
        raise
    except EOFError:
        raise PthError(f"{path}: a pickle in the file ends early: truncated") from None
    except Exception as error:  # only this module's code runs, so any other failure is a malformed pickle
        raise PthError(f"{path}: not a readable PyTorch pickle ({type(error).__name__}: {error})") from None


def load(path):
    """The state dict in the PyTorch file `path`: {name: numpy array with the tensor's shape and dtype}.

    Raises PthError (one line naming the file) for a file that is empty, not a PyTorch file, truncated or
    damaged, missing a storage, written on a big-endian machine, holding anything but a mapping of names to
    tensors, or naming any global beyond `GLOBALS`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(4)
            file.seek(0)
            if head == ZIP_MAGIC:
                records, data = _load_zip(path, file)
            elif head[:1] == b"\x80":  # pickle protocol 2 or later: torch < 1.6
                records, data = _load_legacy(path, file)
            else:
                what = "an empty file" if not head else "not a PyTorch file"
                raise PthError(f"{path}: {what} (torch.save writes a zip archive, or a pickle stream before 1.6)")
    except OSError as error:
        raise PthError(f"{path}: cannot read ({error.strerror or error})") from None
    return {name: _array(path, name, record, data) for name, record in records.items()}


def _load_zip(path, file):
    """({name: _TensorRecord}, {storage key: bytes}) from the zip archive of torch >= 1.6."""
    try:
        archive = zipfile.ZipFile(file)
        names = set(archive.namelist())
        prefix = _zip_prefix(path, names)
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder") != b"little":
            raise PthError(f"{path}: written on a big-endian machine; only little-endian files are read")
        records = _state_dict(path, _unpickle(path, io.BytesIO(archive.read(prefix + "data.pkl"))))
        refs = _storage_refs(path, records)
        return records, {key: _zip_storage(path, archive, f"{prefix}data/{key}", ref) for key, ref in refs.items()}
    except (zipfile.BadZipFile, EOFError, NotImplementedError, zlib.error) as error:
        raise PthError(f"{path}: a truncated or damaged zip archive ({error})") from None


def _zip_prefix(path, names):
    """The archive's top folder with its slash ('archive/'), from the one `<folder>/data.pkl` in `names`."""
    pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise PthError(f"{path}: a zip archive, but not a PyTorch file (no single <folder>/data.pkl)")
    return pickles[0].removesuffix("data.pkl")


def _zip_storage(path, archive, name, ref):
    """The bytes of storage `ref` from the archive's entry `name`, checked against its element count."""
    try:
        size = archive.getinfo(name).file_size
    except KeyError:
        raise PthError(f"{path}: storage {ref.key!r} is missing ({name})") from None
    if size != ref.numel * ref.dtype.itemsize:
        raise PthError(f"{path}: storage {ref.key!r} holds {size} bytes, not {ref.numel * ref.dtype.itemsize}")
    return archive.read(name)


def _load_legacy(path, file):
    """({name: _TensorRecord}, {storage key: bytes}) from the pickle stream of torch < 1.6."""
    if _unpickle(path, file) != LEGACY_MAGIC:
        raise PthError(f"{path}: a pickle, but not a PyTorch file (no torch magic number)")
    if _unpickle(path, file) != LEGACY_PROTOCOL:
        raise PthError(f"{path}: a PyTorch file of an unknown protocol (not {LEGACY_PROTOCOL})")
    system = _unpickle(path, file)
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise PthError(f"{path}: written on a big-endian machine; only little-endian files are read")
    records = _state_dict(path, _unpickle(path, file))
    keys = _unpickle(path, file)
    if not isinstance(keys, list):
        raise PthError(f"{path}: the list of storage keys is a {type(keys).__name__}")
    refs = _storage_refs(path, records)
    data = {str(key): _legacy_storage(path, file, str(key), refs) for key in keys}
    missing = sorted(set(refs) - set(data))
    if missing:
        raise PthError(f"{path}: storage {missing[0]!r} is missing")
    return records, data


def _legacy_storage(path, file, key, refs):
    """The bytes of the next storage in `file`, `key` of `refs` ({key: _StorageRef}): an int64 element count,
    then the elements."""
    if key not in refs:
        raise PthError(f"{path}: storage {key!r} is in the file but no tensor uses it")
    count = file.read(8)
    if len(count) < 8:
        raise PthError(f"{path}: the file ends before its storages do: truncated")
    numel, ref = struct.unpack("<q", count)[0], refs[key]
    if numel != ref.numel:
        raise PthError(f"{path}: storage {key!r} holds {numel} elements, not {ref.numel}")
    data = file.read(numel * ref.dtype.itemsize)
    if len(data) < numel * ref.dtype.itemsize:
        raise PthError(f"{path}: the file ends before its storages do: truncated")
    return data


def _storage_refs(path, records):
    """{storage key: _StorageRef} of the tensors in `records`, each key with one type and size."""
    refs = {}
    for record in records.values():
        if refs.setdefault(record.storage.key, record.storage) != record.storage:
            raise PthError(f"{path}: storage {record.storage.key!r} is named with two types or sizes")
    return refs


def _state_dict(path, obj):
    """`obj` as {name: _TensorRecord}, or PthError if it is anything but a mapping of names to tensors."""
    if not isinstance(obj, dict):
        raise PthError(f"{path}: holds a value of type {type(obj).__name__}, not a state dict (names to tensors)")
    for name, value in dict.items(obj):
        if not isinstance(name, str) or not isinstance(value, _TensorRecord):
            raise PthError(f"{path}: not a state dict: {str(name)[:80]!r} holds a value of type "
                           f"{type(value).__name__}, not a tensor")
    return dict(dict.items(obj))


def _array(path, name, record, data):
    """Tensor `name` (a _TensorRecord) as a C-contiguous numpy array of shape `record.size`, from `data`."""
    storage = np.frombuffer(data[record.storage.key], dtype=record.storage.dtype.newbyteorder("<"))
    if not _fits(record, storage.size):
        raise PthError(f"{path}: tensor {name!r} (size {record.size}, stride {record.stride}, offset "
                       f"{record.offset}) reaches past its storage of {storage.size} elements")
    itemsize = storage.itemsize
    strides = tuple(step * itemsize for step in record.stride)
    view = np.lib.stride_tricks.as_strided(storage[record.offset:], shape=record.size, strides=strides)
    return np.array(view, dtype=record.storage.dtype, order="C", copy=True)


def _fits(record, numel):
    """Whether the record's size, stride and offset are non-negative integers that stay inside `numel`."""
    numbers = (record.offset, *record.size, *record.stride)
    if len(record.size) != len(record.stride) or not all(isinstance(n, int) and n >= 0 for n in numbers):
        return False
    if 0 in record.size:
        return record.offset <= numel
    return record.offset + sum((size - 1) * step for size, step in zip(record.size, record.stride)) < numel
