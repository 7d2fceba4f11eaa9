"""tfsep batch: Apache Beam separation that writes what `tfsep separate` writes, with dead letters and resumption."""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
from conftest import run_tfsep

beam = pytest.importorskip("apache_beam", reason="needs apache-beam (the beam extra)")

from tfsep import batch  # noqa: E402

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]  # the local runner, in this process


tfsep = functools.partial(run_tfsep, timeout=600)  # Beam pipelines get 10 minutes


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Six short files of mixed rates and channel counts (1.2 to 3.1 s), one of them longer than a chunk."""
    folder = tmp_path_factory.mktemp("catalog")
    rng = np.random.default_rng(5)
    for name, rate, channels, seconds in [("a", 8000, 2, 1.3), ("b", 16000, 1, 2.2), ("c", 11025, 2, 3.1),
                                          ("d", 8000, 3, 1.7), ("e", 22050, 2, 1.2), ("f", 8000, 1, 2.6)]:
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.1 * rng.standard_normal((len(t), channels))
        soundfile.write(folder / f"{name}.wav" if name != "c" else folder / "c.flac", tone, rate,
                        subtype="PCM_16")
    return folder


def stems_of(folder):
    """{relative path: (samples, subtype)} of every stem under `folder`."""
    return {str(path.relative_to(folder)): (soundfile.read(path, dtype="float32")[0], soundfile.info(path).subtype)
            for path in sorted(folder.rglob("*.wav"))}


@pytest.mark.slow
def test_batch_writes_the_stems_that_separate_writes(catalog, tiny_model_file, tmp_path):
    options = ["--model", tiny_model_file, "--chunk", "1.0", "--overlap", "0.25", "--residual"]
    separated = tfsep("separate", *sorted(catalog.iterdir()), "-o", tmp_path / "separate", "-q", *options)
    assert separated.returncode == 0, separated.stderr
    closed = "http://127.0.0.1:9"  # no network: a runner that downloaded anything (Prism does) would fail
    offline = {**os.environ, **{name: closed for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
               "no_proxy": "localhost,127.0.0.1", "NO_PROXY": "localhost,127.0.0.1"}  # the runner's own gRPC
    result = tfsep("batch", catalog, "-o", tmp_path / "batch", *options, env=offline)  # the default runner
    assert result.returncode == 0, result.stderr
    assert "separated 6 files (12.1 s of audio)" in result.stdout and "0 failed" in result.stdout
    expected, written = stems_of(tmp_path / "separate"), stems_of(tmp_path / "batch")
    assert sorted(written) == sorted(expected) and len(written) == 6 * 5  # four stems and the residual
    for path, (samples, subtype) in expected.items():
        assert written[path][1] == subtype and written[path][0].shape == samples.shape, path
        assert np.abs(written[path][0] - samples).max() <= 1e-5, path


@pytest.mark.slow
def test_a_corrupt_file_is_a_dead_letter_and_a_rerun_resumes(catalog, tiny_model_file, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("a.wav", "b.wav"):
        (inputs / name).write_bytes((catalog / name).read_bytes())
    (inputs / "broken.wav").write_bytes((catalog / "a.wav").read_bytes()[:3000])  # cut inside its samples
    out = tmp_path / "out"
    first = tfsep("batch", inputs, tmp_path / "missing.wav", "-o", out, "--model", tiny_model_file, "--", *IN_PROCESS)
    assert first.returncode == 1 and "separated 2 files" in first.stdout and "2 failed" in first.stdout
    assert first.stderr.count("\n") == 2 and "missing.wav: no such file" in first.stderr, first.stderr
    failures = [json.loads(line) for line in (out / batch.FAILURES).read_text().splitlines()]
    assert sorted(failure["path"] for failure in failures) == sorted([str(inputs / "broken.wav"),
                                                                      str(tmp_path / "missing.wav")])
    reasons = {failure["path"]: failure["reason"] for failure in failures}
    assert "broken.wav: truncated (its header promises" in reasons[str(inputs / "broken.wav")]
    assert reasons[str(tmp_path / "missing.wav")].endswith("missing.wav: no such file")
    assert sorted(p.name for p in out.iterdir()) == [batch.FAILURES, "a", "b"]
    assert not list(out.rglob("*.part*"))

    (inputs / "broken.wav").unlink()
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*.wav")}
    again = tfsep("batch", inputs, "-o", out, "--model", tiny_model_file, "--", *IN_PROCESS)
    assert again.returncode == 0, again.stderr
    assert "separated 0 files" in again.stdout and "skipped 2" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.wav")} == written  # nothing rewritten
    assert not (out / batch.FAILURES).exists()
    forced = tfsep("batch", inputs, "-o", out, "--model", tiny_model_file, "--overwrite", "--", *IN_PROCESS)
    assert forced.returncode == 0 and "separated 2 files" in forced.stdout, forced.stderr


def test_the_default_runner_is_the_local_portable_one_on_every_core():
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = batch.pipeline_options([])
    assert options.view_as(StandardOptions).runner == "DirectRunner"  # not Prism, which downloads a binary
    direct = options.view_as(DirectOptions)
    assert direct.direct_running_mode == "multi_threading" and direct.direct_num_workers >= 1
    chosen = batch.pipeline_options(["--runner=DataflowRunner", "--project=p"])
    assert chosen.view_as(StandardOptions).runner == "DataflowRunner"


def test_inputs_are_files_folders_and_globs_each_matched_once(catalog, tmp_path):
    paths, failures = batch.match([catalog / "a.wav", catalog, f"{catalog}/*.flac", tmp_path / "none.wav",
                                   f"{tmp_path}/*.mp3"])
    assert paths == [str(catalog / "a.wav"), *[str(catalog / name) for name in
                                                ("b.wav", "c.flac", "d.wav", "e.wav", "f.wav")]]
    assert [reason.split(": ")[-1] for _, reason in failures] == ["no such file", "matches no audio file"]


@pytest.mark.slow
def test_outputs_that_collide_are_refused_before_any_work(catalog, tiny_model_file, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.wav").write_bytes((catalog / "a.wav").read_bytes())
    result = tfsep("batch", catalog / "a.wav", other / "a.wav", "-o", tmp_path / "out", "--model", tiny_model_file,
                   "--", *IN_PROCESS)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "would both be written there" in result.stderr and not (tmp_path / "out" / "a").exists()


@pytest.mark.slow
def test_bad_input_gets_one_line_each_and_existing_outputs_are_skipped(catalog, tiny_model_file, tmp_path):
    refused = tfsep("batch", catalog / "a.wav", "-o", tmp_path / "out", "--model", tmp_path / "no.keras")
    assert refused.returncode == 1 and refused.stderr.strip().endswith("no.keras: no such model file"), refused.stderr
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "out").exists()  # before the pipeline starts

    empty = tfsep("batch", f"{catalog}/*.mp3", "-o", tmp_path / "out", "--model", tiny_model_file, "--", *IN_PROCESS)
    assert empty.returncode == 1 and empty.stderr == f"tfsep: error: {catalog}/*.mp3: matches no audio file\n"

    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "vocals.wav").write_bytes(b"an earlier output")  # a set with one stem of four
    partial = tfsep("batch", catalog / "a.wav", "-o", tmp_path / "out", "--model", tiny_model_file, "--", *IN_PROCESS)
    assert partial.returncode == 0 and "separated 1 files" in partial.stdout and "skipped 0" in partial.stdout
    assert sorted(p.name for p in (tmp_path / "out" / "a").iterdir()) == ["bass.wav", "drums.wav", "other.wav",
                                                                          "vocals.wav"]
    assert soundfile.info(tmp_path / "out" / "a" / "vocals.wav").frames > 0  # remade whole
    again = tfsep("batch", catalog / "a.wav", "-o", tmp_path / "out", "--model", tiny_model_file, "--", *IN_PROCESS)
    assert again.returncode == 0 and "skipped 1" in again.stdout


def test_a_file_that_vanishes_after_it_was_matched_is_a_dead_letter(catalog, tiny_model_file, tmp_path, monkeypatch):
    gone = tmp_path / "gone.wav"
    monkeypatch.setattr(batch, "match", lambda inputs: ([str(catalog / "a.wav"), str(gone)], []))
    result = batch.run(["anything"], tmp_path / "out", model=tiny_model_file, pipeline_args=IN_PROCESS)
    assert (result.done, result.failed) == (1, 1)
    [line] = result.failures.read_text().splitlines()
    assert json.loads(line) == {"path": str(gone), "reason": f"{gone}: no such file"}


@pytest.mark.slow
def test_an_interrupted_batch_keeps_the_files_it_finished_and_a_rerun_does_the_rest(tiny_model_file, tmp_path, rng):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for k in range(8):
        soundfile.write(inputs / f"song{k}.wav", rng.uniform(-0.3, 0.3, (8000 * 6, 2)), 8000, subtype="PCM_16")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tfsep.cli", "batch", str(inputs), "-o", str(out), "--model",
               str(tiny_model_file), "--chunk", "0.5", "--overlap", "0.1", "--", "--direct_num_workers=1"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len([p for p in out.glob("song*") if len(list(p.glob("*.wav"))) == 4]) < 2:
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) == 130
    whole = ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    kept = [folder for folder in out.glob("song*") if sorted(p.name for p in folder.iterdir()) == whole]
    assert 2 <= len(kept) < 8
    for folder in set(out.glob("song*")) - set(kept):  # the file in flight: its temporaries only, no stem
        assert all(p.name.startswith(".") and ".part" in p.name for p in folder.iterdir())
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"separated {8 - len(kept)} files" in again.stdout
    assert f"skipped {len(kept)}" in again.stdout
    assert all(sorted(p.name for p in folder.iterdir()) == whole for folder in out.glob("song*"))
    assert len(list(out.glob("song*"))) == 8 and not list(out.rglob(".*"))  # the interrupted run's temporaries too


def test_a_file_that_changes_while_it_is_read_is_a_dead_letter(catalog, tiny_model_file, tmp_path, monkeypatch):
    song = tmp_path / "song.wav"
    song.write_bytes((catalog / "a.wav").read_bytes())
    real = batch.audio.blocks

    def rewritten_meanwhile(path, block_samples=441000):
        found, blocks = real(path, block_samples)

        def reading():
            yield from blocks
            soundfile.write(song, np.zeros((20000, 2)), 8000)  # replaced by another program, after the read

        return found, reading()

    monkeypatch.setattr(batch.audio, "blocks", rewritten_meanwhile)
    result = batch.run([song], tmp_path / "out", model=tiny_model_file, pipeline_args=IN_PROCESS)
    assert (result.done, result.failed) == (0, 1)
    [line] = result.failures.read_text().splitlines()
    assert json.loads(line)["reason"] == f"{song}: changed while it was read; nothing was written"
    assert not (tmp_path / "out" / "song").exists()
