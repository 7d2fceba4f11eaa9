"""providers.pth reads PyTorch state dicts without torch and refuses every pickled global a state dict does not need.

The files of real torch come from the Open-Unmix peer environment (`python tools/peers.py openunmix` makes
`.venv-openunmix`, as CI does before the slow tests); those tests are slow, and without it they fail under CI
and are skipped elsewhere. The hostile and broken files are written here by hand, with no torch.
"""

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfsep.providers import pth

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from peers import OPENUNMIX_ENV, openunmix_python  # noqa: E402

# Run by the peer's torch: each state dict saved as a zip (torch >= 1.6), the older stream, and .npz.
SAVE_STATE_DICTS = """
import sys, types
from collections import OrderedDict
sys.modules["torchaudio"] = types.ModuleType("torchaudio")  # openunmix imports it only for file I/O
import numpy as np, torch
from openunmix.model import OpenUnmix

torch.manual_seed(0)
base = torch.randn(5, 7)
mixed = {
    "weight": torch.randn(4, 3), "slice": base[1:4, ::2], "transposed": base.t(), "offset_row": base[3],
    "scalar": torch.tensor(2.5), "count": torch.arange(6, dtype=torch.int64).reshape(2, 3) - 2,
    "index": torch.tensor([7, -1], dtype=torch.int32), "half": torch.randn(3, 2).half(),
    "double": torch.randn(2, dtype=torch.float64), "bytes": torch.tensor([0, 255], dtype=torch.uint8),
    "flags": torch.tensor([[True, False], [False, True]]), "empty": torch.zeros(0, 3),
    "parameter": torch.nn.Parameter(torch.randn(2, 2)),
}
umx = OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=16, max_bin=1487)
with torch.no_grad():
    for name, value in umx.state_dict().items():  # means, scales, batch-norm statistics: all non-trivial
        counter = name.endswith("num_batches_tracked")
        value.copy_(torch.randint(1, 9, value.shape) if counter else torch.randn_like(value))
folder = sys.argv[1]
for stem, state in {"mixed": mixed, "umx": umx.state_dict()}.items():
    torch.save(state, f"{folder}/{stem}.pth")
    torch.save(state, f"{folder}/{stem}_legacy.pth", _use_new_zipfile_serialization=False)
    np.savez(f"{folder}/{stem}.npz", **{name: value.detach().numpy() for name, value in state.items()})
"""


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """A folder with mixed.pth, mixed_legacy.pth, mixed.npz, umx.pth, umx_legacy.pth, umx.npz written by torch."""
    if not (OPENUNMIX_ENV / "bin" / "python").is_file():
        message = "the Open-Unmix peer environment is missing: python tools/peers.py openunmix"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("torch")
    command = [str(openunmix_python()), "-c", SAVE_STATE_DICTS, str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def assert_same_state(ours, reference):
    assert list(ours) == list(reference)
    for name, value in reference.items():
        assert ours[name].dtype == value.dtype and ours[name].shape == value.shape, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)
        assert ours[name].flags.c_contiguous and ours[name].flags.writeable, name


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["mixed", "mixed_legacy", "umx", "umx_legacy"])
def test_a_state_dict_saved_by_torch_reads_exactly(torch_files, stem):
    reference = dict(np.load(torch_files / f"{stem.removesuffix('_legacy')}.npz"))
    state = pth.load(torch_files / f"{stem}.pth")
    assert_same_state(state, reference)
    if stem.startswith("umx"):
        assert state["fc1.weight"].shape == (16, 2 * 1487) and state["bn1.num_batches_tracked"].dtype == np.int64


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["mixed", "mixed_legacy"])
def test_a_torch_file_cut_in_half_is_truncated(torch_files, stem, tmp_path):
    whole = (torch_files / f"{stem}.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(pth.PthError, match=r"cut\.pth: .*truncated"):
        pth.load(tmp_path / "cut.pth")


# --- files written here without torch: the opcodes torch's pickle uses -----------------------------------------

def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def _text(text):
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def _tuple(*items):
    return b"(" + b"".join(items) + b"t"


def _int(number):
    return b"J" + struct.pack("<i", number)


def _tensor(key, numel, offset, size, stride):
    """The pickle of `torch._utils._rebuild_tensor_v2` over float storage `key`, as torch writes it."""
    storage = _tuple(_text("storage"), _global("torch", "FloatStorage"), _text(key), _text("cpu"), _int(numel))
    return _global("torch._utils", "_rebuild_tensor_v2") + _tuple(
        storage + b"Q", _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89",
        _global("collections", "OrderedDict") + b")R") + b"R"


def state_dict_pickle(tensors):
    """A protocol-2 pickle of an OrderedDict {name: tensor}; `tensors` is {name: (key, numel, offset, size, stride)}."""
    items = b"".join(_text(name) + _tensor(*tensor) for name, tensor in tensors.items())
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + items + b"u."


def write_torch_zip(path, data_pkl, storages, folder="archive", byteorder=b"little"):
    """A torch >= 1.6 archive: <folder>/data.pkl, <folder>/data/<key> for {key: bytes}, byteorder, version."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{folder}/data.pkl", data_pkl)
        archive.writestr(f"{folder}/byteorder", byteorder)
        for key, data in storages.items():
            archive.writestr(f"{folder}/data/{key}", data)
        archive.writestr(f"{folder}/version", b"3\n")
    return path


def legacy_stream(data_pkl):
    """The header of torch < 1.6 files (magic, protocol, little-endian system info) followed by `data_pkl`."""
    header = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}]
    return b"".join(pickle.dumps(item, protocol=2) for item in header) + data_pkl


STORAGE = np.arange(12, dtype=np.float32)  # one storage, two views of it
TENSORS = {"w": ("0", 12, 0, (3, 4), (4, 1)), "column": ("0", 12, 1, (3,), (4,))}


@pytest.mark.parametrize("folder", ["archive", "vocals-b62c91ce"])
def test_a_hand_written_archive_reads_whatever_its_folder(folder, tmp_path):
    path = write_torch_zip(tmp_path / "w.pth", state_dict_pickle(TENSORS), {"0": STORAGE.tobytes()}, folder)
    state = pth.load(path)
    np.testing.assert_array_equal(state["w"], STORAGE.reshape(3, 4))
    np.testing.assert_array_equal(state["column"], [1, 5, 9])


class RunsCode:
    """What a hostile .pth file holds in place of a tensor: unpickling it calls `function(*arguments)`."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def hostile_payloads(marker):
    """{name: (object that would create `marker` when unpickled, the global the file names)}."""
    return {
        "os.system": (RunsCode(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "builtins.exec": (RunsCode(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        "subprocess.Popen": (RunsCode(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4])  # 0 and 2 may spell the module as Python 2 did (__builtin__)
@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "subprocess.Popen"])
def test_a_file_that_would_run_code_is_refused_and_runs_nothing(payload, layout, protocol, tmp_path):
    marker = tmp_path / "ran"
    hostile, global_name = hostile_payloads(marker)[payload]
    data_pkl = pickle.dumps({"fc1.weight": hostile}, protocol=protocol)
    if layout == "zip":
        path = write_torch_zip(tmp_path / "vocals.pth", data_pkl, {})
    else:
        path = tmp_path / "vocals.pth"
        path.write_bytes(legacy_stream(data_pkl))
    with pytest.raises(pth.PthError) as error:
        pth.load(path)
    message = str(error.value)
    spelled = f"global {global_name}:" if protocol == 4 else f".{global_name.split('.')[-1]}:"
    assert "\n" not in message and str(path) in message and "refused to load the global" in message, message
    assert spelled in message, message
    assert not marker.exists()


def test_a_global_inside_a_tensor_is_refused(tmp_path):
    """A hostile call where the storage type goes is refused before anything is called."""
    data_pkl = state_dict_pickle(TENSORS).replace(_global("torch", "FloatStorage"), _global("os", "system"))
    path = write_torch_zip(tmp_path / "w.pth", data_pkl, {"0": STORAGE.tobytes()})
    with pytest.raises(pth.PthError, match=r"global os\.system"):
        pth.load(path)


def broken_files():
    """{name: (file contents, what the error says)} for files that are not readable state dicts."""
    good = state_dict_pickle(TENSORS)
    zipped = io.BytesIO()
    write_torch_zip(zipped, good, {"0": STORAGE.tobytes()})
    return {
        "empty": (b"", "an empty file"),
        "text": (b"not weights at all\n", "not a PyTorch file"),
        "npz": (_npz_bytes(), "not a PyTorch file"),
        "cut zip": (zipped.getvalue()[: len(zipped.getvalue()) // 2], "truncated or damaged zip"),
        "cut legacy": (legacy_stream(good)[:-40], "truncated"),
        "no storage": (_zip_bytes(good, {}), "storage '0' is missing"),
        "short storage": (_zip_bytes(good, {"0": STORAGE[:8].tobytes()}), "storage '0' holds 32 bytes, not 48"),
        "past storage": (_zip_bytes(state_dict_pickle({"w": ("0", 12, 4, (3, 4), (4, 1))}),
                                    {"0": STORAGE.tobytes()}), "reaches past its storage"),
        "big-endian": (_zip_bytes(good, {"0": STORAGE.tobytes()}, byteorder=b"big"), "big-endian"),
        "checkpoint": (_zip_bytes(pickle.dumps({"epoch": 3}, protocol=2), {}), "'epoch' holds a value of type int"),
        "list": (_zip_bytes(pickle.dumps([1, 2], protocol=2), {}), "holds a value of type list, not a state dict"),
        "other zip": (_plain_zip(), "not a PyTorch file"),
        "two types": (_zip_bytes(state_dict_pickle({"w": TENSORS["w"], "v": ("0", 6, 0, (6,), (1,))}),
                                 {"0": STORAGE.tobytes()}), "storage '0' is named with two types or sizes"),
        "bfloat16": (_zip_bytes(good.replace(b"FloatStorage", b"BFloat16Storage"), {"0": STORAGE.tobytes()}),
                     "torch.BFloat16Storage are not supported"),
    }


def _zip_bytes(data_pkl, storages, **options):
    file = io.BytesIO()
    write_torch_zip(file, data_pkl, storages, **options)
    return file.getvalue()


def _npz_bytes():
    file = io.BytesIO()
    np.savez(file, w=STORAGE)
    return file.getvalue()


def _plain_zip():
    file = io.BytesIO()
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return file.getvalue()


@pytest.mark.parametrize("case", list(broken_files()))
def test_a_broken_file_gets_one_clear_error(case, tmp_path):
    contents, expected = broken_files()[case]
    path = tmp_path / "vocals.pth"
    path.write_bytes(contents)
    with pytest.raises(pth.PthError) as error:
        pth.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and expected in message, message


def test_a_missing_file_is_a_pth_error(tmp_path):
    with pytest.raises(pth.PthError, match="cannot read"):
        pth.load(tmp_path / "absent.pth")
