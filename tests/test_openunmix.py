"""The `openunmix` provider: Open-Unmix state dicts converted into SeparationModels that compute what Open-Unmix's
`Separator` computes.

The parity tests run the real openunmix 1.3.0 (CPU torch) in its peer environment (`python tools/peers.py
openunmix` makes `.venv-openunmix`, as CI does before the slow tests); they are slow, and without that
environment they fail under CI and are skipped elsewhere. The other tests write small state dicts in torch's
file format by hand, with no torch.
"""

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tfsep, synthetic_song
from test_pth import state_dict_pickle, write_torch_zip

from tfsep import formats, providers
from tfsep.providers import openunmix
from tfsep.providers.openunmix import OpenUnmixError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from peers import OPENUNMIX_ENV, openunmix_python  # noqa: E402

MAX_DIFFERENCE, MIN_SDR = 1e-4, 60.0
TINY = {"hidden": 8, "bins": 20, "channels": 2, "output_bins": 33, "layers": 3}  # n_fft 64


def write_state_dict(path, state):
    """`state` ({name: float32 array}) as torch.save writes a state dict (a zip archive), without torch."""
    records, storages = {}, {}
    for index, (name, value) in enumerate(state.items()):
        value = np.ascontiguousarray(value, np.float32)
        strides = tuple(int(np.prod(value.shape[axis + 1:])) for axis in range(value.ndim))
        records[name] = (str(index), value.size, 0, value.shape, strides)
        storages[str(index)] = value.tobytes()
    return write_torch_zip(path, state_dict_pickle(records), storages)


def tiny_state(seed=0, **sizes):
    """A random state dict with the keys and shapes of a small `OpenUnmix` (see `TINY`)."""
    rng = np.random.default_rng(seed)
    shapes = openunmix.expected_shapes(**{**TINY, **sizes})
    state = {key: rng.uniform(-0.5, 0.5, shape) for key, shape in shapes.items()}
    for key in state:
        if key.endswith(("running_var", "input_scale")):
            state[key] = rng.uniform(0.5, 2.0, state[key].shape)
    return state


def tiny_files(folder, names=("vocals-00000000", "drums-00000000"), **sizes):
    folder.mkdir(parents=True, exist_ok=True)
    return [write_state_dict(folder / f"{name}.pth", tiny_state(seed, **sizes)) for seed, name in enumerate(names)]


@pytest.mark.parametrize("name, target", [("vocals-b62c91ce.pth", "vocals"), ("vocals.pth", "vocals"),
                                          ("lead_vocals.v2.pth", "lead_vocals"), ("Bass-1.PTH", "Bass")])
def test_a_files_target_is_its_name_up_to_the_first_dash_or_dot(name, target):
    assert openunmix.target_name(Path("weights") / name) == target


@pytest.mark.parametrize("name, match", [("vocals.npz", "not a .pth file"), ("vocals.pth.bak", "not a .pth file"),
                                         ("2vocals.pth", "must start with a letter")])
def test_a_file_not_named_target_pth_is_refused(name, match, tmp_path):
    with pytest.raises(OpenUnmixError, match=match):
        openunmix.convert([tmp_path / name])


def test_tiny_state_dicts_convert_with_their_sizes_read_from_the_shapes(tmp_path):
    paths = tiny_files(tmp_path, ("drums-00000000", "vocals"))
    model = providers.convert("openunmix", paths)
    config = model.get_config()
    assert model.sources == ("drums", "vocals")  # the files' order
    assert (config["n_fft"], config["hop"], config["channels"], config["framing"]) == (64, 16, 2, "center_reflect")
    assert config["network"] == {"hidden": 8, "lstm_layers": 3, "per_source": True, "output_bins": 33,
                                 "output_affine": True, "batch_norm_epsilon": 1e-5}
    assert model.get_layer("crop_bins").max_bin == 20
    assert (config["wiener_iterations"], config["wiener_window"], config["wiener_relative_load"]) == (1, 300, 0.0)
    state = tiny_state(1)  # vocals'
    np.testing.assert_allclose(model.get_layer("umx_vocals_standardize").mean.numpy(), -state["input_mean"], 1e-6)
    np.testing.assert_allclose(model.get_layer("umx_vocals_output_affine").offset.numpy(), state["output_mean"], 1e-6)
    lstm = model.get_layer("umx_vocals_bilstm2").backward_layer
    bias = state["lstm.bias_ih_l1_reverse"] + state["lstm.bias_hh_l1_reverse"]
    np.testing.assert_allclose(lstm.cell.bias.numpy(), bias, 1e-6)
    stems = model.predict(synthetic_song(0.05, seed=3)[None], verbose=0)
    assert all(np.isfinite(stem).all() and stem.shape == (1, 2205, 2) for stem in stems.values())


def test_a_published_name_checks_the_hidden_size(tmp_path):
    with pytest.raises(OpenUnmixError, match="hidden size 8, but umxhq has 512"):
        openunmix.convert(tiny_files(tmp_path), "umxhq")
    with pytest.raises(OpenUnmixError, match="not a published Open-Unmix model"):
        openunmix.convert(tiny_files(tmp_path), "umx-xl")


def _without(state, *keys):
    return {key: value for key, value in state.items() if not key.startswith(keys)}


@pytest.mark.parametrize("change, match", [
    (lambda state: {"weight": state["fc1.weight"]}, "not an Open-Unmix state dict .no fc1.weight"),
    (lambda state: _without(state, "bn2.running_var"), "lacks bn2.running_var"),
    (lambda state: {**state, "fc2.weight": state["fc2.weight"].T}, r"fc2.weight has shape \(16, 8\), not the \(8, 16"),
    (lambda state: {**state, "output_scale": state["output_scale"][:-1]}, "output_scale has shape"),
    (lambda state: {**state, "fc1.weight": state["fc1.weight"][:, :-1]}, "does not fit 20 input bins"),
    (lambda state: _without(state, *(f"lstm.{kind}_l{layer}_reverse" for kind in ("weight_ih", "weight_hh", "bias_ih",
                                                                      "bias_hh") for layer in range(3))),
     "unidirectional"),
])
def test_a_file_with_wrong_keys_or_shapes_is_refused_in_one_line(change, match, tmp_path):
    path = write_state_dict(tmp_path / "bass-00000000.pth", change(tiny_state()))
    with pytest.raises(OpenUnmixError, match=match) as error:
        openunmix.convert([tiny_files(tmp_path)[0], path])
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_target_models_of_different_sizes_are_refused(tmp_path):
    (vocals,) = tiny_files(tmp_path / "a", ("vocals",))
    (drums,) = tiny_files(tmp_path / "b", ("drums",), hidden=12)
    with pytest.raises(OpenUnmixError, match="differ"):
        openunmix.convert([vocals, drums])
    with pytest.raises(OpenUnmixError, match="a second file for target 'vocals'"):
        openunmix.convert([vocals, tmp_path / "a" / "vocals.pth"])


def test_tfsep_convert_openunmix_writes_a_model_that_loads_and_refuses_in_one_line(tmp_path):
    from tfsep.models import load_model

    paths = tiny_files(tmp_path)
    result = run_tfsep("convert", "openunmix", *paths, "--output", tmp_path / "tiny.keras")
    assert result.returncode == 0, result.stderr
    song = synthetic_song(0.1, seed=2)[None]
    loaded = load_model(tmp_path / "tiny.keras").predict(song, verbose=0)
    direct = openunmix.convert(paths).predict(song, verbose=0)
    assert all(np.array_equal(loaded[name], direct[name]) for name in direct)
    (tmp_path / "other.npz").write_bytes(b"PK")
    refused = run_tfsep("convert", "openunmix", paths[0], tmp_path / "other.npz", "--output", tmp_path / "x.keras")
    assert refused.returncode != 0 and "not a .pth file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_bare_umx_names_stand_for_the_openunmix_provider():
    assert providers.is_name("umxhq") and providers.is_name("umxl") and providers.is_name("openunmix:umxl")
    assert not providers.is_name("umx")
    assert openunmix.urls("umxl")[0] == "https://zenodo.org/records/5069601/files/vocals-bccbd9aa.pth"
    assert [Path(url).stem for url in openunmix.urls("umxhq")] == list(openunmix.MODELS["umxhq"]["files"])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder that a loopback server serves, set as TFSEP_MIRROR, with TFSEP_HOME in tmp_path."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *args: QuietHandler(*args, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("TFSEP_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("TFSEP_HOME", str(tmp_path / "home"))
    yield folder
    server.shutdown()


def publish_tiny_umxhq(served, monkeypatch, tmp_path, corrupt=None):
    """Tiny weights served where Zenodo's umxhq files are, under names whose hash digits are theirs."""
    files = []
    for source, path in zip(openunmix.SOURCES, tiny_files(tmp_path / "made", openunmix.SOURCES)):
        stem = f"{source}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
        body = path.read_bytes() if source != corrupt else path.read_bytes()[:-1] + b"!"
        (served / "records" / "3370489" / "files").mkdir(parents=True, exist_ok=True)
        (served / "records" / "3370489" / "files" / f"{stem}.pth").write_bytes(body)
        files.append(stem)
    monkeypatch.setitem(openunmix.MODELS, "umxhq", {**openunmix.MODELS["umxhq"], "files": tuple(files), "hidden": 8})


def test_umxhq_is_fetched_verified_and_converted_once(mirror, monkeypatch, tmp_path):
    publish_tiny_umxhq(mirror, monkeypatch, tmp_path)
    messages = []
    path = providers.resolve("umxhq", log=messages.append)
    assert path == tmp_path / "home" / "models" / "openunmix-umxhq.keras" and path.is_file()
    assert "fetching Open-Unmix's umxhq weights" in messages[0] and len(messages) == 5  # and 4 downloads
    assert providers.resolve("openunmix:umxhq", log=messages.append) == path and len(messages) == 5  # cached


def test_a_damaged_cached_model_is_fetched_again(mirror, monkeypatch, tmp_path):
    publish_tiny_umxhq(mirror, monkeypatch, tmp_path)
    path = providers.resolve("umxhq", log=lambda message: None)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # a copy cut short, e.g. by a full disk outside tfsep
    messages = []
    assert providers.resolve("umxhq", log=messages.append) == path
    assert "damaged" in messages[0] and "fetching openunmix:umxhq again" in messages[0] and len(messages) == 6
    assert sorted(formats.describe(path)["sources"]) == sorted(openunmix.SOURCES)


def test_a_file_whose_hash_differs_from_its_name_leaves_nothing(mirror, monkeypatch, tmp_path):
    publish_tiny_umxhq(mirror, monkeypatch, tmp_path, corrupt="bass")
    with pytest.raises(providers.PretrainedError, match="bass-"):
        providers.resolve("umxhq", log=lambda message: None)
    assert not (tmp_path / "home" / "models" / "openunmix-umxhq.keras").exists()


def test_an_unknown_name_says_what_is_fetched(mirror):
    with pytest.raises(providers.PretrainedError, match="openunmix:umxhq, openunmix:umxl"):
        providers.resolve("openunmix:umx-xl")


@pytest.fixture(scope="module")
def peer():
    """The Open-Unmix peer's Python, or a skip (a failure under CI) without it."""
    if not (OPENUNMIX_ENV / "bin" / "python").is_file():
        message = "the Open-Unmix peer environment is missing: python tools/peers.py openunmix"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return openunmix_python()


def reference_tool(python, *args):
    result = subprocess.run([str(python), str(ROOT / "tools" / "openunmix_reference.py"), *map(str, args)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("hidden, seconds", [
    (512, 3 + 135 / 44100),  # umxhq's size, 130 frames
    (1024, 8.2 + 57 / 44100),  # umxl's size, 354 frames: two Wiener windows of Open-Unmix's 300
])
def test_random_open_unmix_weights_separate_as_open_unmix_does(peer, hidden, seconds, tmp_path):
    from tfsep.models import reconfigure

    reference_tool(peer, "write", tmp_path, "--hidden", hidden, "--seed", 3)
    paths = [tmp_path / f"{source}-00000000.pth" for source in openunmix.SOURCES]
    song = synthetic_song(seconds, seed=1)
    assert len(song) % 1024
    np.save(tmp_path / "mixture.npy", song)
    model = providers.convert("openunmix", paths)
    for niter in (0, 1):  # niter 0: the masked magnitudes with the mixture's phase; 1: Separator's default
        reference_tool(peer, "separate", tmp_path / "mixture.npy", tmp_path / f"niter{niter}.npz", *paths,
                       "--niter", niter)
        reference = dict(np.load(tmp_path / f"niter{niter}.npz"))
        ours = reconfigure(model, wiener_iterations=niter).predict(song[None], verbose=0)
        for name, stem in reference.items():
            difference = np.abs(ours[name][0] - stem).max()
            sdr = 10 * np.log10(np.sum(stem**2) / max(np.sum((ours[name][0] - stem) ** 2), 1e-30))
            assert difference <= MAX_DIFFERENCE and sdr >= MIN_SDR, (niter, name, difference, sdr)
            assert np.sqrt(np.mean(stem**2)) > 1e-2, f"{name}: a near-silent stem proves little"
