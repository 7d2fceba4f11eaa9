"""Converting Spleeter checkpoints: every variable lands in its layer, Spleeter's options, one-line refusals.

Parity with the real Spleeter's output is in `test_spleeter_parity.py`.
"""

import json
import shutil

import numpy as np
import pytest
from conftest import write_spleeter_checkpoint

from tfsep.models import max_bin
from tfsep.providers import spleeter


@pytest.fixture(scope="module")
def converted(spleeter_2stems_checkpoint):
    folder, _ = spleeter_2stems_checkpoint
    return spleeter.convert(folder)


def test_every_checkpoint_variable_lands_in_its_layer(converted, spleeter_2stems_checkpoint):
    _, variables = spleeter_2stems_checkpoint
    assert converted.sources == ("vocals", "accompaniment")
    for i, source in enumerate(converted.sources):
        conv1 = converted.get_layer(f"unet_{source}_conv1").get_weights()
        np.testing.assert_array_equal(conv1[0], variables[f"{'conv2d' if i == 0 else 'conv2d_7'}/kernel"])
        logits = converted.get_layer(f"unet_{source}_logits").get_weights()[0]
        np.testing.assert_array_equal(logits, variables[f"conv2d_{7 * i + 6}/kernel"])
        deconv6 = converted.get_layer(f"unet_{source}_deconv6").get_weights()[1]
        np.testing.assert_array_equal(deconv6, variables[f"conv2d_transpose_{6 * i + 5}/bias"])
        gamma, beta, mean, variance = converted.get_layer(f"unet_{source}_bn7").get_weights()
        np.testing.assert_array_equal(variance, variables[f"batch_normalization_{12 * i + 6}/moving_variance"])
    weights = sum(w.size for layer in converted.layers for w in layer.get_weights()
                  if "input_standardize" != layer.name)
    unused = sum(variables[f"batch_normalization_{12 * i + 5}/{k}"].size for i in range(2)
                 for k in ("gamma", "beta", "moving_mean", "moving_variance"))
    assert weights == sum(v.size for k, v in variables.items() if k != "global_step") - unused


def test_the_model_carries_spleeters_options(converted):
    config = converted.get_config()
    assert (config["framing"], config["mask_activation"], config["ratio_mask_exponent"]) == ("pad_end", "sigmoid", 2.0)
    assert config["mask_extension"] == "zeros" and (config["n_fft"], config["hop"]) == (4096, 1024)
    assert config["network"] == {"conv_activation": "leaky_relu", "deconv_activation": "relu", "segment": 512}
    assert max_bin(44100, 4096, config["bandwidth"]) == 1024
    assert converted.get_layer("input_standardize").get_weights()[1].min() == 1.0  # an identity


@pytest.mark.parametrize("name, bins, activations, mask", [
    ("4stems", 1024, ("elu", "elu"), "sigmoid"),
    ("5stems-16kHz", 1536, ("elu", "elu"), "softmax"),
    ("2stems-16kHz", 1536, ("leaky_relu", "relu"), "sigmoid"),
])
def test_published_configurations_map_to_model_options(name, bins, activations, mask):
    options = spleeter.model_options(spleeter.CONFIGS[name])
    assert max_bin(44100, 4096, options["bandwidth"]) == bins
    assert (options["network"]["conv_activation"], options["network"]["deconv_activation"]) == activations
    assert options["mask_activation"] == mask
    assert len(options["sources"]) == int(name[0])


def test_configuration_json_and_folder_names_choose_the_instruments(spleeter_2stems_checkpoint, tmp_path):
    folder, _ = spleeter_2stems_checkpoint
    config = {**spleeter.CONFIGS["2stems"], "instrument_list": ["voice", "band"], "F": 1536}
    (tmp_path / "mine.json").write_text(json.dumps(config))
    model = spleeter.convert(folder, tmp_path / "mine.json")
    assert model.sources == ("voice", "band") and max_bin(44100, 4096, model.get_config()["bandwidth"]) == 1536
    assert model.name == "spleeter_mine" and spleeter.convert(folder, config).name == "spleeter_custom"
    renamed = tmp_path / "release"  # an unpacked release archive: no telling name, two U-Nets -> 2stems
    shutil.copytree(folder, renamed)
    assert spleeter.convert(renamed).sources == ("vocals", "accompaniment")


def test_instruments_that_disagree_with_the_configuration_are_refused(spleeter_2stems_checkpoint, tmp_path):
    folder, _ = spleeter_2stems_checkpoint
    with pytest.raises(spleeter.SpleeterError, match=r"holds 2 U-Nets, but configuration 4stems names 4 instruments"):
        spleeter.convert(folder, "4stems")
    misnamed = tmp_path / "5stems"
    shutil.copytree(folder, misnamed)
    with pytest.raises(spleeter.SpleeterError, match="holds 2 U-Nets, but configuration 5stems"):
        spleeter.convert(misnamed)


def test_folders_that_are_not_spleeter_checkpoints_are_refused(tmp_path, spleeter_2stems_checkpoint):
    with pytest.raises(spleeter.SpleeterError, match="no such folder"):
        spleeter.convert(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(spleeter.SpleeterError, match="not a Spleeter checkpoint folder"):
        spleeter.convert(tmp_path / "empty")
    three = tmp_path / "three"
    write_spleeter_checkpoint(three, ["a", "b", "c"])
    with pytest.raises(spleeter.SpleeterError, match="holds 3 U-Nets, which no published"):
        spleeter.convert(three)
    with pytest.raises(spleeter.SpleeterError, match="neither a Spleeter configuration name"):
        spleeter.convert(spleeter_2stems_checkpoint[0], "7stems")


def test_a_truncated_data_file_is_refused_in_one_line(spleeter_2stems_checkpoint, tmp_path):
    folder = tmp_path / "2stems"
    shutil.copytree(spleeter_2stems_checkpoint[0], folder)
    data = folder / "model.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(spleeter.SpleeterError, match="unreadable checkpoint, truncated or corrupt") as error:
        spleeter.convert(folder)
    assert "\n" not in str(error.value)


def test_unsupported_spleeter_models_are_named():
    with pytest.raises(spleeter.SpleeterError, match="blstm.blstm"):
        spleeter.model_options({**spleeter.CONFIGS["4stems"], "model": {"type": "blstm.blstm", "params": {}}})
    with pytest.raises(spleeter.SpleeterError, match="lacks 'F'"):
        spleeter.model_options({key: value for key, value in spleeter.CONFIGS["4stems"].items() if key != "F"})
