"""The README and docs/ run as written: each Python block on its own in a fresh process, and every training
command names a valid config and keys."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, k, block) for page in PAGES
          for k, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]


def test_the_front_page_is_short_and_has_its_examples():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert sum(page.name == "README.md" for page, _, _ in BLOCKS) >= 1 and len(BLOCKS) >= 5
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


@pytest.mark.slow
@pytest.mark.parametrize("page, index, block", BLOCKS, ids=[f"{p.name}-{k}" for p, k, _ in BLOCKS])
def test_python_block_runs_on_its_own(page, index, block, rendered, tmp_path):
    if "ai_edge_litert" in block:
        pytest.importorskip("ai_edge_litert", reason="needs ai-edge-litert (not on Intel Macs)")
    if "data/band" in block:  # the block reads a rendered set, as `tfsep render-dataset data/band` writes it
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "band").symlink_to(rendered)
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}, Python block {index}:\n{result.stderr[-3000:]}"


@pytest.mark.smoke
def test_training_commands_name_valid_configs_and_keys():
    from tfsep.config import load_config

    commands = [command for page in PAGES for command in
                re.findall(r"^\s*tfsep train --config (\S+)(.*?)(?:#.*)?$", page.read_text(), flags=re.M)]
    assert len(commands) >= 5, "the docs have lost their training commands"
    for config, overrides in commands:
        load_config(ROOT / config, [item for item in overrides.split() if "=" in item])
