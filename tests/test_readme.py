"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "the README has lost its Python examples"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        if "data/band" in block:
            from tfsep import render

            try:
                render.render_dataset("data/band", "band", tracks=3, seed=0, progress=False)
            except render.RenderError as error:
                pytest.skip(f"the data example needs the renderer: {error}")
        exec(compile(block, str(README), "exec"), namespace)
    assert set(namespace["stems"]) == {"vocals", "drums", "bass", "other"}
    assert namespace["parts"]["masks"].shape[-1] == 4
    mixture, stems = next(iter(namespace["batches"]))
    assert mixture.shape == (16, 6 * 44100, 2) and set(stems) == {"vocals", "drums", "bass", "other"}
    assert sum(1 for _ in namespace["validation"]) >= 1


@pytest.mark.smoke
def test_training_commands_name_valid_configs_and_keys():
    from tfsep.train import load_config

    commands = re.findall(r"^\s*tfsep train --config (\S+)(.*?)(?:#.*)?$", README.read_text(), flags=re.M)
    assert len(commands) >= 3, "the README has lost its training commands"
    for config, overrides in commands:
        load_config(README.parent / config, overrides.split())
