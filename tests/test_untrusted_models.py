"""Untrusted model files: .keras only with safe_mode, refusals in one line, no pickles anywhere in tfsep."""

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

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
        with pytest.raises(ValueError, match=message) as error:
            tfsep.load_model(tmp_path / name)
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
    """No module imports pickle-based loaders, and every np.load leaves allow_pickle off."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "marshal", "shelve"} & {
                    name.split(".")[0] for name in names}, f"{path.name}:{node.lineno}"
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Attribute) and node.attr == "read_pickle":
                pytest.fail(f"{path.name}:{node.lineno}: read_pickle")
