"""SavedModel export: TF Serving layout, signatures, a fresh process without tfsep, serving payloads, bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import sdr

from tfsep import formats

RATE = 8000


def waveforms(batch=2, samples=1500, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (batch, samples, 2)).astype(np.float32)


def test_layout_metadata_and_refusal_to_overwrite(exported, tiny_model):
    assert exported.name == "3"
    assert {p.name for p in exported.iterdir()} >= {"saved_model.pb", "variables", "assets.extra"}
    description = json.loads((exported / "assets.extra" / "tfsep.json").read_text())
    assert description["sources"] == ["vocals", "drums", "bass", "other"]
    assert (description["sample_rate"], description["chunk_samples"], description["model_version"]) == (RATE, 3968, 3)
    assert description["max_samples"] == RATE
    with pytest.raises(FileExistsError, match="already exists"):
        formats.write("savedmodel", tiny_model, exported.parent, version=3)


@pytest.mark.slow
@pytest.mark.smoke
def test_a_fresh_process_without_tfsep_loads_it_and_matches_keras(exported, tiny_model, tmp_path):
    mixture = waveforms()
    np.save(tmp_path / "mixture.npy", mixture)
    script = f"""
import sys, json, numpy as np, tensorflow as tf
loaded = tf.saved_model.load({str(exported)!r})
outputs = loaded.signatures["serving_default"](waveform=tf.constant(np.load({str(tmp_path / 'mixture.npy')!r})))
meta = {{k: np.array(v.numpy()).tolist() for k, v in loaded.signatures["metadata"]().items()}}
np.savez({str(tmp_path / 'out.npz')!r}, **{{k: v.numpy() for k, v in outputs.items()}})
print(json.dumps({{"tfsep": any(m.startswith("tfsep") for m in sys.modules),
                  "sources": [s.decode() for s in meta["sources"]], "rate": meta["sample_rate"]}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"tfsep": False, "sources": ["vocals", "drums", "bass", "other"], "rate": RATE}
    expected = tiny_model.predict(mixture, verbose=0)
    served = np.load(tmp_path / "out.npz")
    for source in expected:
        np.testing.assert_allclose(served[source], expected[source], atol=1e-6)


def rest_predict(signature, body):
    """TF Serving's REST `:predict` on `signature`, as its API documents it.

    The request names the signature's inputs: in columns, {"inputs": {name: batch}}, or in
    rows, {"instances": [{name: example}, ...]} (a bare example for a one-input signature).
    Values take the dtype the signature declares; anything else is refused as the server
    refuses it. The reply is {"outputs": {name: batch}} for columns and {"predictions":
    [{name: example}, ...]} for rows, as JSON text.
    """
    request, specs = json.loads(body), signature.structured_input_signature[1]
    if "inputs" in request:
        columns = request["inputs"] if isinstance(request["inputs"], dict) else {next(iter(specs)): request["inputs"]}
    else:
        rows = [row if isinstance(row, dict) else {next(iter(specs)): row} for row in request["instances"]]
        columns = {name: [row[name] for row in rows] for name in rows[0]}
    if set(columns) != set(specs):
        raise ValueError(f"inputs {sorted(columns)} do not match the signature's {sorted(specs)}")
    outputs = signature(**{name: tf.constant(np.array(value, specs[name].dtype.as_numpy_dtype))
                           for name, value in columns.items()})
    if "inputs" in request:
        return json.dumps({"outputs": {name: value.numpy().tolist() for name, value in outputs.items()}})
    return json.dumps({"predictions": [{name: value[i].numpy().tolist() for name, value in outputs.items()}
                                       for i in range(len(rows))]})


def test_the_readme_s_rest_request_and_both_rest_formats_run_through_the_signature(signatures, tiny_model):
    serve = signatures["serving_default"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = re.search(r"curl -s -X POST \S+:predict \\\n\s*-d '(\{.*?\})'", readme)[1]
    reply = json.loads(rest_predict(serve, body))
    example = np.array(json.loads(body)["inputs"]["waveform"], np.float32)
    expected = tiny_model.predict(example, verbose=0)
    assert sorted(reply["outputs"]) == sorted(tiny_model.sources)  # the reply the README shows
    for source in tiny_model.sources:
        np.testing.assert_allclose(reply["outputs"][source], expected[source], atol=1e-6)

    mixture = waveforms(batch=2, samples=900, seed=1)
    expected = tiny_model.predict(mixture, verbose=0)
    columns = json.loads(rest_predict(serve, json.dumps({"inputs": {"waveform": mixture.tolist()}})))["outputs"]
    rows = json.loads(rest_predict(serve, json.dumps({"instances": [{"waveform": x} for x in mixture.tolist()]})))
    for source in tiny_model.sources:
        np.testing.assert_allclose(columns[source], expected[source], atol=1e-6)
        np.testing.assert_allclose([row[source] for row in rows["predictions"]], expected[source], atol=1e-6)
    with pytest.raises(ValueError, match=r"do not match the signature's \['waveform'\]"):
        rest_predict(serve, json.dumps({"inputs": {"audio": mixture.tolist()}}))


def test_grpc_payloads_run_through_the_signature(signatures, tiny_model):
    mixture = waveforms(batch=2, samples=900, seed=1)
    expected = tiny_model.predict(mixture, verbose=0)
    serve = signatures["serving_default"]

    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "band", "serving_default"
    request.inputs["waveform"].CopyFrom(tf.make_tensor_proto(mixture))
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # over the wire
    outputs = serve(**{name: tf.make_ndarray(proto) for name, proto in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for source, tensor in outputs.items():
        response.outputs[source].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["vocals"]), expected["vocals"], atol=1e-6)


def test_chunk_signature_and_saved_model_cli(exported, signatures):
    chunk = signatures["chunk"](waveform=tf.constant(waveforms(batch=1, samples=3968)))
    assert chunk["other"].shape == (1, 3968, 2)
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]  # the saved_model_cli command
    shown = subprocess.run(cli + ["show", "--all", "--dir", str(exported)], capture_output=True, text=True,
                           timeout=120).stdout
    serving = shown[shown.index("signature_def['serving_default']"):]
    assert "inputs['waveform'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, -1, -1)" in serving
    for source in ("vocals", "drums", "bass", "other"):
        assert f"outputs['{source}'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, -1, 2)" in serving
    assert "shape: (-1, 3968, -1)" in shown[shown.index("signature_def['chunk']"):]
    assert "outputs['sample_rate']" in shown[shown.index("signature_def['metadata']"):]


@pytest.mark.slow
def test_cli_exports_and_refuses_bad_models(tiny_model_file, tmp_path):
    command = [sys.executable, "-m", "tfsep.cli", "export"]
    result = subprocess.run(command + [str(tiny_model_file), "--output", str(tmp_path / "serving")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    missing = subprocess.run(command + [str(tmp_path / "nope.keras"), "--output", str(tmp_path / "s2")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope.keras: no such model file" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "s2").exists()


def run_litert(path, waveform):
    """The outputs of the TFLite file at `path` in the LiteRT interpreter."""
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    runner = litert.Interpreter(model_path=str(path), num_threads=2).get_signature_runner("serving_default")
    return runner(waveform=waveform)


def operator_codes(path):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))
    return [(max(code.builtinCode, code.deprecatedBuiltinCode), code.customCode) for code in model.operatorCodes]


@pytest.mark.slow
@pytest.mark.parametrize("architecture, wiener", [("bandconv", 0), ("bandconv", 1), ("unet", 0), ("umx", 0)])
def test_tflite_uses_builtins_only_and_matches_keras_in_litert(architecture, wiener, tmp_path):
    import tfsep
    from tfsep.formats import tflite

    model = tfsep.build_model(architecture, sample_rate=RATE, size="tiny", n_fft=256, hop=64, wiener_iterations=wiener)
    path = formats.write("tflite", model, tmp_path / "band.tflite")
    assert all(custom is None for _, custom in operator_codes(path))  # Flex ops would be custom "Flex..." ops
    assert tflite.describe(path)["sources"] == ["vocals", "drums", "bass", "other"]
    assert tflite.describe(path)["sample_rate"] == RATE
    for batch, samples in [(1, 4000), (3, 777), (1, 1)]:  # the input length and batch resize at run time
        mixture = waveforms(batch, samples, seed=samples)
        outputs, expected = run_litert(path, mixture), model.predict(mixture, verbose=0)
        for source in expected:
            assert np.abs(outputs[source] - expected[source]).max() <= 1e-4


@pytest.mark.slow
def test_griffin_lim_exports_to_builtin_tflite_and_matches_keras(tmp_path):
    import tfsep
    from tfsep.formats import tflite
    from tfsep.separate import Separator

    model = tfsep.build_model("bandconv", sample_rate=RATE, size="tiny", n_fft=256, hop=64)
    path = formats.write("tflite", model, tmp_path / "gl.tflite", griffin_lim_iterations=2)
    assert all(custom is None for _, custom in operator_codes(path))
    assert tflite.describe(path)["griffin_lim_iterations"] == 2
    mixture = waveforms(2, 3000, seed=1)
    expected = tfsep.models.reconfigure(model, griffin_lim_iterations=2).predict(mixture, verbose=0)
    outputs = run_litert(path, mixture)
    assert max(np.abs(outputs[s] - expected[s]).max() for s in expected) <= 1e-4
    with pytest.raises(ValueError,
                       match="exported with 2 griffin-lim iterations; export it again with --griffin-lim 0"):
        Separator.load(path, griffin_lim_iterations=0)


@pytest.mark.slow
def test_umx_tflite_keeps_no_lstm_state_from_one_invocation_to_the_next(tmp_path):
    """The fused LSTMs hold their states in variables that outlive an invocation; each sequence must reset them."""
    import tfsep
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    model = tfsep.build_model("umx", sample_rate=RATE, size="tiny", n_fft=256, hop=64)
    path = formats.write("tflite", model, tmp_path / "umx.tflite")
    runner = litert.Interpreter(model_path=str(path), num_threads=2).get_signature_runner("serving_default")
    first, other = waveforms(2, 900, seed=1), waveforms(2, 900, seed=2)
    before = runner(waveform=first)
    runner(waveform=other)
    after = runner(waveform=first)
    for source in before:
        np.testing.assert_array_equal(after[source], before[source])


@pytest.mark.slow
def test_tflite_file_is_the_size_of_its_weights_and_quantises(tmp_path):
    import tfsep
    model = tfsep.build_model("bandconv", size="small")  # 0.5 M parameters at 44.1 kHz, n_fft 4096
    weights = 4 * model.count_params()
    path = formats.write("tflite", model, tmp_path / "small.tflite")
    assert path.stat().st_size <= 1.2 * weights + 2**20
    mixture = waveforms(1, 44100, seed=3)
    expected = model.predict(mixture, verbose=0)
    for quantize, size_ratio in (("float16", 0.6), ("dynamic-int8", 0.35)):
        quantised = formats.write("tflite", model, tmp_path / f"{quantize}.tflite", quantize=quantize)
        assert quantised.stat().st_size <= size_ratio * path.stat().st_size + 2**18
        outputs = run_litert(quantised, mixture)
        error = sum(np.sum((outputs[s] - expected[s]) ** 2) for s in expected)
        assert 10 * np.log10(sum(np.sum(expected[s] ** 2) for s in expected) / error) > 20  # dB


@pytest.mark.slow
def test_cli_exports_tflite(tiny_model_file, tmp_path):
    command = [sys.executable, "-m", "tfsep.cli", "export", str(tiny_model_file), "--format", "tflite"]
    result = subprocess.run(command + ["--output", str(tmp_path / "tiny.tflite")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny.tflite").stat().st_size > 0
    streaming = subprocess.run(command + ["--stream-block", "0.1", "--output", str(tmp_path / "stream.tflite")],
                               capture_output=True, text=True, timeout=300)
    assert streaming.returncode == 0 and "streaming" in streaming.stdout, streaming.stderr
    from tfsep.formats import tflite

    assert tflite.describe(tmp_path / "stream.tflite")["block_samples"] == 832  # 0.1 s at 8 kHz, in 64-sample hops
    for flag, value, forms in (("--quantize", "float16", "tflite and web"), ("--stream-block", "1", "tflite")):
        wrong = subprocess.run(command[:-2] + [flag, value, "--output", str(tmp_path / "s")],
                               capture_output=True, text=True, timeout=120)
        assert wrong.returncode == 1 and f"{flag} applies to --format {forms} only" in wrong.stderr


@pytest.mark.slow
def test_cli_export_never_replaces_a_file_or_its_input_unasked(tiny_model_file, tmp_path):
    import shutil

    model = tmp_path / "tiny.keras"
    shutil.copy(tiny_model_file, model)
    before = model.read_bytes()
    command = [sys.executable, "-m", "tfsep.cli", "export", str(model), "--format", "tflite", "--output"]
    onto_input = subprocess.run(command + [str(model), "--overwrite"], capture_output=True, text=True, timeout=120)
    assert onto_input.returncode == 1 and "is the model being exported" in onto_input.stderr
    (tmp_path / "old.tflite").write_bytes(b"old")
    again = subprocess.run(command + [str(tmp_path / "old.tflite")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "already exists (use --overwrite" in again.stderr
    assert (tmp_path / "old.tflite").read_bytes() == b"old" and model.read_bytes() == before
    replaced = subprocess.run(command + [str(tmp_path / "old.tflite"), "--overwrite"], capture_output=True, text=True,
                              timeout=300)
    assert replaced.returncode == 0 and (tmp_path / "old.tflite").read_bytes()[4:8] == b"TFL3"
    version = subprocess.run([sys.executable, "-m", "tfsep.cli", "export", str(model), "--output",
                              str(tmp_path / "serving"), "--version", "0"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 1 and "--version must be a positive integer" in version.stderr


def stream_through_litert(path, mixture):
    """Feed `mixture` (batch, samples, channels) block by block through the streaming TFLite file, as an app
    would, then zeros to flush the latency; returns {source: stems aligned with the mixture}."""
    from tfsep.formats import tflite
    from tfsep.formats.tflite import STATE

    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    description = tflite.describe(path)
    block, latency = description["block_samples"], description["latency_samples"]
    runner = litert.Interpreter(model_path=str(path), num_threads=2).get_signature_runner("serving_default")
    batch, samples, channels = mixture.shape
    blocks = -(-(samples + latency) // block)
    padded = np.pad(mixture, [(0, 0), (0, blocks * block - samples), (0, 0)])
    state = np.zeros((batch, description["state_samples"], channels), np.float32)
    outputs = {source: [] for source in description["sources"]}
    for k in range(blocks):
        result = runner(block=padded[:, k * block:(k + 1) * block], state=state)
        state = result[STATE]
        for source in outputs:
            outputs[source].append(result[source])
    return {source: np.concatenate(parts, 1)[:, latency:latency + samples] for source, parts in outputs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("architecture, context", [("bandconv", None), ("umx", 0.2)])
def test_streaming_tflite_matches_offline_separation_away_from_the_start(architecture, context, tmp_path):
    import tfsep
    from tfsep._keras import keras
    from tfsep.formats import tflite

    keras.utils.set_random_seed(0)  # fixed weights: with unseeded ones umx's SDR varied around 70 dB
    model = tfsep.build_model(architecture, sample_rate=RATE, size="tiny", n_fft=256, hop=64)
    path = formats.write("tflite", model, tmp_path / "stream.tflite", block_seconds=0.1, context_seconds=context)
    assert all(custom is None for _, custom in operator_codes(path))
    description = tflite.describe(path)
    block, state = description["block_samples"], description["state_samples"]
    assert block % 64 == 0 and state == 2 * description["latency_samples"]
    mixture = waveforms(2, 12 * block + 100, seed=5)
    streamed, offline = stream_through_litert(path, mixture), model.predict(mixture, verbose=0)
    away = slice(state, mixture.shape[1] - state)  # away from the stream's start and from where it ends
    for source in offline:
        error = np.abs(streamed[source][:, away] - offline[source][:, away]).max()
        if architecture == "bandconv":  # a bounded receptive field: the default context makes it exact
            assert error <= 1e-4
        else:  # umx's recurrences reach the whole signal: a finite context approximates it, closely
            assert 0 < error <= 1e-3 and sdr(offline[source][:, away], streamed[source][:, away]) >= 70


@pytest.mark.slow
def test_a_longer_streaming_context_brings_umx_closer_to_offline_separation(tmp_path):
    import tfsep
    model = tfsep.build_model("umx", sample_rate=RATE, size="tiny", n_fft=256, hop=64)
    mixture = waveforms(2, 12 * 832 + 100, seed=5)
    offline, away = model.predict(mixture, verbose=0), slice(3200, mixture.shape[1] - 3200)
    scores = []
    for context in (0.05, 0.2):
        path = formats.write("tflite", model, tmp_path / f"{context}.tflite", block_seconds=0.1,
                             context_seconds=context)
        streamed = stream_through_litert(path, mixture)
        scores.append(np.mean([sdr(offline[s][:, away], streamed[s][:, away]) for s in offline]))
    assert scores[1] >= scores[0] + 10, scores  # measured: 62 dB, then 83 dB


def test_fused_lstm_cell_states_are_not_clipped_in_tflite(tmp_path):
    """The converter clips fused LSTM cell states at ±10; Keras does not, and neither may the export."""
    from tfsep._keras import keras
    from tfsep.formats.tflite_writer import convert_to_tflite
    from tfsep.networks.umx import FusedLSTM

    inputs = keras.Input((None, 1), name="waveform")
    lstm = FusedLSTM(2, name="lstm")
    model = keras.Model(inputs, lstm(inputs))
    units = 2  # gates i, f, c, o: i, f and o open; the cell adds tanh(5 x) ≈ ±1 every step
    lstm.kernel.assign(np.concatenate([np.zeros(2 * units), np.full(units, 5.0), np.zeros(units)])[None])
    lstm.bias.assign(np.concatenate([np.full(2 * units, 10.0), np.zeros(units), np.full(units, 10.0)]))
    lstm.recurrent_kernel.assign(np.zeros((units, 4 * units)))
    x = np.concatenate([np.ones(30), -np.ones(20)]).astype(np.float32)[None, :, None]  # cell: up to 30, down to 10
    path = tmp_path / "lstm.tflite"
    path.write_bytes(convert_to_tflite(model))
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    output = next(iter(litert.Interpreter(model_path=str(path)).get_signature_runner()(waveform=x).values()))
    expected = model.predict(x, verbose=0)
    assert expected[0, -1].min() > 0.99  # tanh(10): a clip at ±10 would have brought the cell to -10
    np.testing.assert_allclose(output, expected, atol=1e-4)


@pytest.mark.slow
def test_segmented_models_hold_a_chunk_signature_sharing_the_weights(tmp_path):
    import tfsep
    from tfsep.formats import tflite
    from tfsep.formats.tflite_writer import convert_to_tflite
    from tfsep.models import chunk_model, reconfigure

    model = tfsep.build_model("unet", ("vocals", "accompaniment"), RATE, n_fft=256, hop=64, size="small",
                              framing="pad_end", segment=64, ratio_mask_exponent=2.0, mask_extension="zeros")
    path = formats.write("tflite", model, tmp_path / "segmented.tflite")
    assert tflite.describe(path)["segment_frames"] == 64 and tflite.describe(path)["framing"] == "pad_end"
    assert all(custom is None for _, custom in operator_codes(path))
    one_signature = convert_to_tflite(reconfigure(model, inverse_fft="builtin"))
    assert path.stat().st_size < 1.2 * len(one_signature)  # the weights are stored once
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    interpreter = litert.Interpreter(model_path=str(path), num_threads=2)
    assert set(interpreter.get_signature_list()) == {"serving_default", "chunk"}
    mixture = waveforms(1, 64 * 70 + 256)
    for signature, keras_form in (("serving_default", model), ("chunk", chunk_model(model))):
        outputs, expected = interpreter.get_signature_runner(signature)(waveform=mixture), keras_form.predict(
            mixture, verbose=0)
        for source in expected:
            assert np.abs(outputs[source] - expected[source]).max() <= 1e-4, (signature, source)
    half = formats.write("tflite", model, tmp_path / "half.tflite", quantize="float16")
    half = litert.Interpreter(model_path=str(half))
    silence_then_sound = np.concatenate([np.zeros_like(mixture), mixture], axis=1)
    outputs = half.get_signature_runner("serving_default")(waveform=silence_then_sound)
    assert all(np.isfinite(stem).all() for stem in outputs.values())  # the ratio masks' eps is 0 in float16


@pytest.mark.slow
def test_float16_wiener_filtering_of_silence_in_windows_stays_finite(tmp_path):
    """float16 weights store the Wiener filter's eps (1e-10) as 0: a window in which a source is silent all along
    (here digital silence) once gave 0 / 0, NaN stems. Windowed Wiener filtering converts with builtins too."""
    import tfsep

    model = tfsep.build_model("bandconv", sample_rate=RATE, size="tiny", n_fft=256, hop=64, wiener_iterations=1,
                              wiener_window=16, wiener_relative_load=0.0, mask_activation="relu_unbounded")
    path = formats.write("tflite", model, tmp_path / "half.tflite", quantize="float16")
    assert all(custom is None for _, custom in operator_codes(path))
    mixture = np.concatenate([np.zeros((2, 64 * 40, 2), np.float32), waveforms(2, 3000, seed=4)], axis=1)
    outputs, expected = run_litert(path, mixture), model.predict(mixture, verbose=0)
    for source in expected:
        assert np.isfinite(outputs[source]).all() and not outputs[source][:, : 64 * 30].any(), source
        assert sdr(expected[source], outputs[source]) > 30, source


def test_the_private_flatbuffer_bindings_behind_the_adapter_are_there_and_round_trip(tmp_path):
    """formats.flatbuffer is tfsep's one use of TensorFlow's private TFLite schema bindings: if an upgrade moves
    them, this fails naming what is gone."""
    from ai_edge_litert.interpreter import Interpreter

    from tfsep._keras import keras
    from tfsep.formats import flatbuffer

    schema = flatbuffer.schema()
    missing = [name for name in flatbuffer.NAMES if not hasattr(schema, name)]
    assert not missing, f"TensorFlow's TFLite schema bindings lack {missing}: update tfsep/formats/flatbuffer.py"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    packed = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    parsed = flatbuffer.read(packed)
    assert isinstance(parsed, schema.ModelT) and len(parsed.subgraphs) == 1
    (tmp_path / "again.tflite").write_bytes(flatbuffer.write(parsed))
    interpreter = Interpreter(model_path=str(tmp_path / "again.tflite"))
    interpreter.allocate_tensors()
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
                               model(x).numpy(), rtol=1e-6)
