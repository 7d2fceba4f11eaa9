"""The README and docs/ run as written: each Python block on its own in a fresh process, each page's shell
commands in order in a scratch folder, and every training command names a valid config and keys.

A shell command that takes long, or needs what a test machine lacks, ends in a tag, `# [8 min on 2 CPU cores]`
or `# [needs Docker]`: the tests skip it, and its duration was measured by running it once. The README's first
block, the install and test commands, is what CI runs (.ci/run reads it from the README)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "saved_models" / "band" / "MODEL_CARD.md"]
BLOCKS = [(page, k, block) for page in PAGES
          for k, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]
TAG = re.compile(r"#\s*\[([^\]]+)\]")
TAG_KINDS = re.compile(r"^(\d+(\.\d+)?\s*(s|min|h)\b|needs )")


def shell_commands(page):
    """(command, tag or None) of every shell block of `page` in order, continuation lines joined; the README's
    first block (the install and test commands that CI runs) left out."""
    blocks = re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)
    if page.name == "README.md" and page.parent == ROOT:
        blocks = blocks[1:]
    commands = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip() and not line.strip().startswith("#"):
                tag = TAG.search(line)
                commands.append((line.strip(), tag[1] if tag else None))
    return commands


SHELL_PAGES = [page for page in PAGES if shell_commands(page)]


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


def test_every_shell_command_that_the_tests_skip_says_how_long_it_took_or_what_it_needs():
    tags = [(page.name, command, tag) for page in PAGES for command, tag in shell_commands(page) if tag]
    assert len(tags) >= 10
    for name, command, tag in tags:
        assert TAG_KINDS.match(tag), f"{name}: {command}"


def test_ci_runs_the_readmes_install_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, flags=re.S)[1]
    commands = [line for line in first.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2 and "tfsep separate examples/song.flac" in commands[0] and "pytest" in commands[1]
    assert "readme_command 1" in (ROOT / ".ci" / "run").read_text()
    assert "readme_command 2" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("page", SHELL_PAGES, ids=[p.name for p in SHELL_PAGES])
def test_shell_commands_run_in_order_as_written(page, rendered, tmp_path):
    """Each untagged command of the page, in order, in a scratch folder holding what a clone holds (examples,
    configs, tools, the shipped model) and, for the data sets the page names, a small rendered set."""
    for name in ("examples", "configs", "tools", "saved_models"):
        (tmp_path / name).symlink_to(ROOT / name)
    for name in set(re.findall(r"\bdata/(\w+)", page.read_text())):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).symlink_to(rendered)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(tmp_path), "TFSEP_HOME": str(tmp_path / ".tfsep")}
    for command, tag in shell_commands(page):
        if tag:
            continue
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{page.name}: {command}\n{result.stderr[-3000:]}"


def test_the_architecture_page_names_only_modules_and_entries_that_exist():
    """docs/architecture.md: every module of its package map and every `tfsep/...py` path it names is there, and
    the registries it says to extend hold what it says they hold."""
    from tfsep import formats, networks, providers

    page = (ROOT / "docs" / "architecture.md").read_text()
    table = page.split("## Package map", 1)[1].split("##", 1)[0]
    named = {name for row in table.splitlines()[4:] if row.startswith("|")
             for name in re.findall(r"`([a-z_]+)/?`", row.split("|")[2])}
    assert len(named) > 30
    missing = [name for name in named
               if not (ROOT / "tfsep" / f"{name}.py").is_file() and not (ROOT / "tfsep" / name).is_dir()
               and not any((ROOT / "tfsep" / package / f"{name}.py").is_file()
                           for package in ("formats", "networks", "providers", "corpus", "web"))]
    assert not missing, missing
    paths = {path for path in re.findall(r"`(tfsep/[\w/]+\.py)`", page) if "NAME" not in path}
    assert len(paths) >= 2 and not [path for path in paths if not (ROOT / path).is_file()]
    assert set(networks.NETWORKS) == {"umx", "unet", "bandconv"} and "bandconv" in page
    assert set(formats.FORMATS) == {"keras", "savedmodel", "tflite", "web"}
    assert set(providers.PROVIDERS) == {"spleeter", "openunmix"}
