"""Untrusted model files: .keras only with safe_mode, refusals in one line, no pickles anywhere in tfsep."""

import ast
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

import tfsep
from tfsep._keras import keras

PACKAGE = Path(tfsep.__file__).parent


def test_load_model_refuses_lambda_layers_and_foreign_models(tmp_path):
    inputs = keras.Input((None, 2))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    lambda_model.save(tmp_path / "lambda.keras")
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    plain.save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as archive:  # the same model naming a class from elsewhere
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1].update(class_name="EvilLayer", module="os")
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "unknown.keras", "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    data = (tmp_path / "plain.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.keras").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "model.h5").write_bytes(data)
    cases = {
        "lambda.keras": "refused: it holds a Lambda layer",
        "unknown.keras": "refused: it holds 'EvilLayer', which is neither a Keras nor a tfsep class",
        "plain.keras": "holds a Functional, not a tfsep SeparationModel",
        "truncated.keras": "not a .keras model file",
        "noise.keras": "not a .keras model file",
        "model.h5": "not a .keras model file",
    }
    for name, message in cases.items():
        for changes in ({}, {"wiener_iterations": 1}):  # with changes, built from the config: the same refusals
            with pytest.raises(ValueError, match=message) as error:
                tfsep.load_model(tmp_path / name, **changes)
            assert str(error.value).startswith(str(tmp_path / name)) and "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        tfsep.load_model(tmp_path / "missing.keras")


@pytest.mark.slow
def test_the_cli_refuses_an_untrusted_model_in_one_line(tmp_path):
    inputs = keras.Input((None, 2))
    model = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(model)
    (tmp_path / "song.wav").write_bytes(b"")
    for command in (["separate", tmp_path / "song.wav", "-o", tmp_path / "out", "--model", model],
                    ["export", model, "--output", tmp_path / "serving"],
                    ["evaluate", "--dataset", tmp_path, "--report", tmp_path / "report", "--model", model]):
        result = subprocess.run([sys.executable, "-m", "tfsep.cli", *map(str, command)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 1
        assert result.stderr == f"tfsep: error: {model}: refused: it holds a Lambda layer, i.e. Python code, which " \
                                "tfsep never loads\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lambda.keras", "song.wav"]  # nothing written


def test_tfsep_never_loads_pickles():
    """No module imports pickle-based loaders, and every np.load leaves allow_pickle off; but `providers.pth`,
    whose unpickler admits only the globals a state dict needs (tests/test_pth.py feeds it code-running files)."""
    from tfsep.providers import pth

    assert pth._Unpickler.find_class is not pickle.Unpickler.find_class
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and path.relative_to(PACKAGE) != Path("providers/pth.py"):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "marshal", "shelve"} & {
                    name.split(".")[0] for name in names}, f"{path.name}:{node.lineno}"
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Attribute) and node.attr == "read_pickle":
                pytest.fail(f"{path.name}:{node.lineno}: read_pickle")


def with_config(source, target, **changes):
    """A copy of the .keras file `source` whose model config has `changes` (a key "network.X" changes a network
    option)."""
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    for key, value in changes.items():
        if key.startswith("network."):
            config["config"]["network"][key.split(".", 1)[1]] = value
        else:
            config["config"][key] = value
    contents["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in contents.items():
            archive.writestr(name, content)
    return target


@pytest.mark.parametrize("key, value, message", [
    ("n_fft", 2**31, "n_fft must be a power of two from 2 to 65536, got 2147483648"),
    ("hop", 2**30, "hop must be an integer in"),
    ("sample_rate", 10**9, "sample_rate must be an integer from 1000 to 384000"),
    ("channels", 10**6, "channels must be an integer from 1 to 32"),
    ("sources", [f"s{k}" for k in range(100)], "sources must hold at most 64 names, got 100"),
    ("wiener_iterations", 10**6, "Wiener iterations must be an integer from 0 to"),
    ("network.bands", 10**6, "network option 'bands' of bandconv must be an integer from 1 to 512"),
    ("network.features", 10**7, "network option 'features' of bandconv must be an integer from 1 to 1024"),
    ("network.blocks", 40, "network option 'blocks' of bandconv must be an integer from 1 to 12"),
])
def test_a_config_that_would_size_tensors_absurdly_is_refused_before_anything_is_allocated(key, value, message,
                                                                                           tiny_model_file, tmp_path):
    hostile = with_config(tiny_model_file, tmp_path / "hostile.keras", **{key: value})
    script = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
              "from tfsep.cli import main\nsys.exit(main(sys.argv[1:]))")
    song = tmp_path / "song.wav"
    soundfile.write(song, np.zeros((800, 2)), 8000)
    result = subprocess.run([sys.executable, "-c", script, "separate", str(song), "--model", str(hostile), "-o",
                             str(tmp_path / "out"), "-q"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
