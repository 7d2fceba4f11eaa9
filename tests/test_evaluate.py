"""Evaluation: the SDR family against independent references, museval's own aggregation, reports and the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from conftest import SOURCES, sdr

from tfsep import bsseval, metrics

RATE = 8000

museval = pytest.importorskip("museval")


def numpy_si_sdr(reference, estimate):
    reference, estimate = reference.ravel() - reference.mean(), estimate.ravel() - estimate.mean()
    target = reference @ estimate / (reference @ reference) * reference
    return 10 * np.log10(np.sum(target**2) / np.sum((estimate - target) ** 2))


@pytest.mark.smoke
def test_global_sdr_and_si_sdr_agree_with_numpy(rng):
    references = rng.normal(size=(3, 5000, 2)).astype(np.float32)
    estimates = (references + rng.normal(scale=[[[0.1]], [[0.5]], [[2.0]]], size=references.shape)).astype(np.float32)
    estimates[2] *= 3.0  # SI-SDR ignores the scale, global SDR does not
    np.testing.assert_allclose(metrics.sdr(references, estimates).numpy(),
                               [sdr(r, e, delta=1e-7) for r, e in zip(references, estimates)], rtol=1e-4)
    np.testing.assert_allclose(metrics.si_sdr(references, estimates).numpy(),
                               [numpy_si_sdr(r, e) for r, e in zip(references, estimates)], rtol=1e-3)


def test_the_validation_sdr_leaves_out_silent_references(rng):
    references = rng.normal(scale=0.1, size=(4, 5000, 2)).astype(np.float32)
    references[1] = 0.0  # a resting bass
    references[3] *= 1e-4  # -80 dB: silent too
    estimates = (references + rng.normal(scale=0.05, size=references.shape)).astype(np.float32)
    metric = metrics.GlobalSDR()
    metric.update_state(references[:2], estimates[:2])
    metric.update_state(references[2:], estimates[2:])
    expected = np.mean([sdr(references[k], estimates[k], delta=1e-7) for k in (0, 2)])
    assert float(metric.result()) == pytest.approx(expected, rel=1e-4)
    silent = metrics.GlobalSDR()
    silent.update_state(references[[1, 3]], estimates[[1, 3]])
    assert float(silent.count) == 0.0  # nothing counted, instead of about -80 dB


@pytest.mark.slow
def test_bsseval_agrees_with_museval_and_its_own_frame_aggregation(rng):
    references = rng.normal(size=(4, RATE * 5, 2)) * 0.1
    references[1, : RATE * 2] = 0.0  # silent frames: NaN in museval, left out of the median
    estimates = references + rng.normal(scale=0.05, size=references.shape)
    ours = bsseval.bsseval(references, estimates, RATE)

    sdr, isr, sir, sar = museval.evaluate(references, estimates, win=RATE, hop=RATE)
    store = museval.TrackStore(win=1, hop=1, track_name="t")
    for k, source in enumerate(SOURCES):
        store.add_target(source, {"SDR": sdr[k], "ISR": isr[k], "SIR": sir[k], "SAR": sar[k]})
    evaluation = museval.EvalStore()
    evaluation.add_track(store.df)
    medians = evaluation.agg_frames_scores()
    for k, source in enumerate(SOURCES):
        for metric in ("SDR", "ISR", "SIR", "SAR"):
            assert ours[metric][k] == pytest.approx(medians.loc["t", source, metric],
                                                    abs=1e-4)  # museval rounds to 1e-5


@pytest.mark.slow
def test_bsseval_agrees_with_museval_on_music_in_float32():
    """The example's rendered stems and the shipped model's estimates, as float32 as `tfsep evaluate` reads them:
    float32 correlations once put SIR and SAR 10-25 dB off, where noise in float64 showed nothing."""
    from pathlib import Path

    from tfsep.separate import Separator

    example = Path(__file__).resolve().parents[1] / "examples"
    mixture, rate = soundfile.read(example / "song.flac", dtype="float32")
    references = np.stack([soundfile.read(example / "stems" / f"{s}.flac", dtype="float32")[0] for s in SOURCES])
    stems = Separator.load().separate(mixture, rate)
    estimates = np.stack([stems[source] for source in SOURCES])
    assert references.dtype == estimates.dtype == np.float32
    ours = bsseval.bsseval(references, estimates, rate)
    theirs = museval.evaluate(references.astype(np.float64), estimates.astype(np.float64), win=rate, hop=rate)
    for metric, frames in zip(bsseval.BSSEVAL_METRICS, theirs):
        np.testing.assert_allclose(ours[metric], np.nanmedian(frames, axis=1), atol=0.01, err_msg=metric)
    assert np.ptp(ours["SIR"] - ours["SAR"]) > 1.0  # the metrics tell sources apart: not all alike


def tone_track(folder, seed, seconds=4.0):
    """A track of four stereo sources with distinct spectra plus a little noise; mixture = sum."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    folder.mkdir(parents=True)
    stems = []
    for k, source in enumerate(SOURCES):
        frequency = [180, 500, 1300, 2900][k] * rng.uniform(0.9, 1.1)
        signal = 0.2 * np.sin(2 * np.pi * frequency * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t + k))
        stem = np.stack([signal, rng.uniform(0.5, 1) * signal], -1) + rng.normal(scale=0.003, size=(len(t), 2))
        stems.append(stem)
        soundfile.write(folder / f"{source}.wav", stem, RATE, subtype="FLOAT")
    soundfile.write(folder / "mixture.wav", sum(stems), RATE, subtype="FLOAT")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    for i in range(3):
        tone_track(root / "test" / f"track{i}", seed=i)
    return root


@pytest.mark.slow
def test_oracle_evaluation_writes_the_report_and_uses_museval_conventions(dataset, tmp_path):
    from tfsep.evaluate import evaluate

    report = evaluate(dataset, "test", oracle="irm", report=tmp_path / "report", jobs=2, n_fft=512, hop=128,
                      progress=False)
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(report)) and written["separator"] == "oracle irm"
    assert sorted(written["tracks"]) == ["track0", "track1", "track2"]
    summary = written["summary"]
    for source in (*SOURCES, "mean"):
        assert set(summary[source]) == {"SDR", "global_SDR", "SI_SDR", "SIR", "SAR", "ISR"}
    assert summary["mean"]["SDR"] > 15  # distinct spectra: the ideal ratio mask separates them well
    per_track = [written["tracks"][name]["bass"] for name in sorted(written["tracks"])]
    assert summary["bass"]["SDR"] == pytest.approx(np.median([t["SDR"] for t in per_track]))
    assert summary["bass"]["global_SDR"] == pytest.approx(np.mean([t["global_SDR"] for t in per_track]))
    names = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert names == ["metrics.json", "report.md", "sdr_boxplot.png", "spectrograms_best.png",
                     "spectrograms_worst.png"]
    assert (tmp_path / "report" / "sdr_boxplot.png").read_bytes()[:4] == b"\x89PNG"
    assert "| **mean** |" in (tmp_path / "report" / "report.md").read_text()


def test_scoring_workers_do_not_import_tensorflow():
    script = ("import sys, numpy as np; from tfsep import bsseval; "
              "x = np.random.default_rng(0).normal(size=(2, 8000, 2)); "
              "bsseval.bsseval(x, x + 0.1, 4000); print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr[-2000:]


@pytest.mark.slow
def test_the_mixture_baseline_scores_what_museval_gives_mixture_over_four(dataset, tmp_path):
    import museval

    from tfsep.evaluate import evaluate

    report = evaluate(dataset, "test", oracle="mixture", report=tmp_path / "report", jobs=1, max_tracks=1,
                      progress=False)
    mixture, _ = soundfile.read(dataset / "test" / "track0" / "mixture.wav", dtype="float32")
    references = np.stack([soundfile.read(dataset / "test" / "track0" / f"{s}.wav", dtype="float32")[0]
                           for s in SOURCES])
    sdr, *_ = museval.evaluate(references, np.repeat(mixture[None] / 4, 4, axis=0), win=RATE, hop=RATE)
    expected = np.nanmedian(sdr, axis=1)
    for k, source in enumerate(SOURCES):
        assert report["tracks"]["track0"][source]["SDR"] == pytest.approx(expected[k], abs=1e-3)


@pytest.mark.slow
def test_griffin_lim_on_ideal_masks_changes_the_oracle_score(dataset, tmp_path):
    from tfsep.evaluate import evaluate

    options = dict(report=tmp_path / "r", jobs=1, max_tracks=1, n_fft=512, hop=128, progress=False)
    plain = evaluate(dataset, "test", oracle="irm", **options)["summary"]["mean"]["SDR"]
    refined = evaluate(dataset, "test", oracle="irm", griffin_lim=4, **options)["summary"]["mean"]["SDR"]
    assert abs(refined - plain) > 0.01


@pytest.mark.slow
def test_cli_evaluates_a_model_and_reports_errors_in_one_line(dataset, tiny_model_file, tmp_path):
    command = [sys.executable, "-m", "tfsep.cli", "evaluate", "--dataset", str(dataset), "--report",
               str(tmp_path / "report"), "--quiet", "--max-tracks", "2", "--jobs", "1"]
    result = subprocess.run(command + ["--model", str(tiny_model_file)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| vocals |" in result.stdout
    assert len(json.loads((tmp_path / "report" / "metrics.json").read_text())["tracks"]) == 2

    missing = subprocess.run(command[:5] + [str(tmp_path / "nowhere"), "--report", str(tmp_path / "r"),
                                            "--oracle", "irm"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.startswith("tfsep: error:") and "nowhere" in missing.stderr
    assert "Traceback" not in missing.stderr
    both = subprocess.run(command + ["--model", str(tiny_model_file), "--oracle", "irm"], capture_output=True,
                          text=True, timeout=120)
    assert both.returncode == 1 and "give one of --model, --oracle and --estimates" in both.stderr


@pytest.mark.slow
def test_estimates_folder_is_scored_as_it_is_and_checked(dataset, tmp_path):
    from tfsep.data import DatasetError
    from tfsep.evaluate import evaluate

    rng = np.random.default_rng(5)
    expected = {}
    for track in ("track0", "track1", "track2"):
        references = np.stack([soundfile.read(dataset / "test" / track / f"{s}.wav", dtype="float32")[0]
                               for s in SOURCES])
        estimates = (references + rng.normal(scale=0.02, size=references.shape)).astype(np.float32)
        (tmp_path / "est" / track).mkdir(parents=True)
        for k, source in enumerate(SOURCES):
            soundfile.write(tmp_path / "est" / track / f"{source}.wav", estimates[k], RATE, subtype="FLOAT")
        expected[track] = bsseval.bsseval(references, estimates, RATE)
    report = evaluate(dataset, "test", estimates=tmp_path / "est", jobs=1, progress=False)
    assert report["separator"] == f"estimates {tmp_path / 'est'}"
    for track, values in expected.items():
        for k, source in enumerate(SOURCES):
            assert report["tracks"][track][source]["SDR"] == pytest.approx(values["SDR"][k], abs=1e-6)

    (tmp_path / "est" / "track1" / "bass.wav").unlink()
    with pytest.raises(DatasetError, match=r"track1/bass.wav: no estimate for bass"):
        evaluate(dataset, "test", estimates=tmp_path / "est", jobs=1, progress=False)
    soundfile.write(tmp_path / "est" / "track1" / "bass.wav", np.zeros((RATE, 2)), RATE)
    with pytest.raises(DatasetError, match=r"bass.wav: estimate has 8000 samples × 2 channels, the reference 32000"):
        evaluate(dataset, "test", estimates=tmp_path / "est", jobs=1, progress=False)
