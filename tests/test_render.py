"""The chorale renderer: exact mixtures, audible stems, determinism, splits and clear errors."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfsep import audio, render



def renderer_installed():
    try:
        render.find_fluidsynth()
        render.find_soundfonts()
    except render.RenderError:
        return False
    return True


needs_renderer = pytest.mark.skipif(
    not renderer_installed(),
    reason="needs fluidsynth and a General MIDI soundfont (apt-get install fluidsynth fluid-soundfont-gm)",
)
pytest.importorskip("music21", reason="needs the render extra: pip install tfsep[render]")


def read_track(folder, stems):
    return {name: audio.read(folder / f"{name}.wav") for name in ("mixture", *stems)}


@pytest.fixture(scope="module")
def band_render(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "band"
    return out, render.render_dataset(out, "band", tracks=2, seed=5, jobs=2, progress=False)


@needs_renderer
def test_band_tracks_mix_exactly_to_their_audible_stems(band_render):
    out, folders = band_render
    assert [f.relative_to(out).parts[0] for f in folders] == ["test", "train"]
    for folder in folders:
        files = read_track(folder, render.LAYOUTS["band"])
        mixture, rate = files.pop("mixture")
        assert rate == 44100 and mixture.shape[1] == 2 and len(mixture) > 10 * 44100
        np.testing.assert_array_equal(sum(stem for stem, _ in files.values()), mixture)
        for name, (stem, _) in files.items():
            assert stem.shape == mixture.shape
            assert 10 * np.log10(np.mean(stem**2)) > -45, f"{folder.name}/{name} is (nearly) silent"
        assert 0.4 < np.abs(mixture).max() < 1.0


@needs_renderer
def test_render_is_deterministic_and_resumes(band_render, tmp_path):
    out, folders = band_render
    again = render.render_dataset(tmp_path / "again", "band", tracks=2, seed=5, progress=False)
    for first, second in zip(folders, again):
        assert first.name == second.name
        for name in ("mixture", *render.LAYOUTS["band"]):
            np.testing.assert_array_equal(audio.read(first / f"{name}.wav")[0], audio.read(second / f"{name}.wav")[0])
    stamp = (again[0] / "mixture.wav").stat().st_mtime_ns
    render.render_dataset(tmp_path / "again", "band", tracks=2, seed=5, progress=False)
    assert (again[0] / "mixture.wav").stat().st_mtime_ns == stamp  # kept, not rendered again


@needs_renderer
def test_satb_layout_renders_four_voices(tmp_path):
    (folder,) = render.render_dataset(tmp_path / "satb", "satb", tracks=1, seed=2, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["alto.wav", "bass.wav", "mixture.wav", "soprano.wav", "tenor.wav"]


def test_held_out_chorales_never_appear_in_train():
    plan = render.plan(12, seed=3, progress=False)
    splits = {split: {chorale.name for s, _, chorale in plan if s == split} for split in ("train", "valid", "test")}
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [10, 1, 1]
    assert not (splits["valid"] | splits["test"]) & splits["train"]


def test_drum_groove_follows_the_meter():
    chorale = render.Chorale("waltz", {"soprano": [render.Note(0.0, 12.0, 60)]}, [(0.0, 3.0, 3, 1.0)] * 1 +
                             [(3.0 * i, 3.0, 3, 1.0) for i in range(1, 4)])
    notes = render.drum_groove(chorale, np.random.default_rng(0))
    kicks = {n.start for n in notes if n.pitch == render.KICK and n.start % 1 == 0}
    snares = {n.start % 3 for n in notes if n.pitch == render.SNARE}
    assert {0.0, 3.0, 6.0} <= kicks
    assert snares <= {1.0, 2.0}  # never on the downbeat in 3/4
    assert max(n.start for n in notes) < 12.0


def test_missing_fluidsynth_and_soundfonts_say_what_to_install(monkeypatch, tmp_path):
    with pytest.raises(render.RenderError, match="apt-get install fluid-soundfont-gm timgm6mb-soundfont"):
        render.find_soundfonts([str(tmp_path)])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(render.RenderError, match="apt-get install fluidsynth"):
        render.find_fluidsynth()


def test_cli_reports_a_missing_fluidsynth_in_one_line(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "tfsep.cli", "render-dataset", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "tfsep: error: FluidSynth is not installed: install it with `apt-get install fluidsynth`"
