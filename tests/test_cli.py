"""The `tfsep` console script, run as a user runs it."""

import functools
from pathlib import Path

import conftest
import pytest

run_tfsep = functools.partial(conftest.run_tfsep, console_script=True, timeout=120)


@pytest.mark.smoke
def test_info_reports_versions_and_tensorflow_io():
    import tensorflow as tf

    result = run_tfsep("info")
    assert result.returncode == 0, result.stderr
    assert f"TensorFlow {tf.__version__}" in result.stdout
    assert "tensorflow-io: " in result.stdout
    assert "bandconv" in result.stdout
    assert "Traceback" not in result.stderr and "cuFFT" not in result.stderr


def test_missing_command_is_a_usage_error():
    result = run_tfsep()
    assert result.returncode == 2
    assert "required" in result.stderr and "Traceback" not in result.stderr


def test_tensorflow_io_kernels_work_on_the_default_install():
    """The default install pairs TensorFlow 2.17 with tensorflow-io 0.37.1, whose kernels then load."""
    tfio = pytest.importorskip("tensorflow_io")
    import tensorflow as tf

    if not tf.__version__.startswith("2.17."):
        pytest.skip(f"tensorflow-io 0.37.1 kernels do not load on TensorFlow {tf.__version__}")
    resampled = tfio.audio.resample(tf.zeros([44100, 2]), rate_in=44100, rate_out=22050)
    assert resampled.shape == (22050, 2)


@pytest.mark.slow
def test_convert_writes_a_model_refuses_to_overwrite_and_names_bad_folders(spleeter_2stems_checkpoint, tmp_path):
    import tfsep

    folder, _ = spleeter_2stems_checkpoint
    result = run_tfsep("convert", "spleeter", str(folder), "--output", str(tmp_path / "s.keras"))
    assert result.returncode == 0, result.stderr
    assert "(vocals, accompaniment)" in result.stdout
    assert tfsep.load_model(tmp_path / "s.keras").get_config()["framing"] == "pad_end"
    again = run_tfsep("convert", "spleeter", str(folder), "--output", str(tmp_path / "s.keras"))
    assert again.returncode == 1 and "already exists (use --overwrite" in again.stderr
    for folder, message in ((tmp_path, "not a Spleeter checkpoint folder"), (tmp_path / "nope", "no such folder")):
        bad = run_tfsep("convert", "spleeter", str(folder), "--output", str(tmp_path / "t.keras"))
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr
        assert bad.stderr.count("\n") == 1 and not (tmp_path / "t.keras").exists()


@pytest.mark.smoke
def test_the_wheel_holds_every_subpackage_and_the_shipped_model():
    """`pip install .` (not editable) packs what pyproject lists: a subpackage left out imports in a checkout
    and fails in every wheel."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 and later")

    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(path.parent.relative_to(root).parts) for path in (root / "tfsep").rglob("__init__.py")}
    assert found <= set(setuptools["packages"]), found - set(setuptools["packages"])
    shipped = setuptools["package-data"]["tfsep.saved_models"]
    assert {"band/model.keras", "band/band.tflite"} <= set(shipped)
    assert all((root / "saved_models" / name).is_file() for name in shipped)
