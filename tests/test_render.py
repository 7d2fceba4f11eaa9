"""The renderer: exact mixtures, audible stems, manifests, determinism, held-out splits and clear errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfsep import audio
from tfsep.corpus import LAYOUTS, RenderError, SongError, render, singing, songs, timbres, tracks

pytest.importorskip("music21", reason="needs the render extra: pip install tfsep[render]")


def renderer_installed():
    try:
        render.Instruments()
    except RenderError:
        return False
    return True


needs_renderer = pytest.mark.skipif(not renderer_installed() and not os.environ.get("CI"),
                                    reason="needs fluidsynth and the soundfonts the README's install line names")


def read_track(folder, stems):
    return {name: audio.read(folder / f"{name}.wav") for name in ("mixture", *stems)}


@pytest.fixture(scope="module")
def band_render(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "band"
    return out, render.render_dataset(out, "band", tracks=3, seed=5, jobs=2, progress=False)


@pytest.mark.slow
@needs_renderer
def test_band_tracks_mix_exactly_to_their_audible_stems(band_render):
    out, folders = band_render
    assert [f.relative_to(out).parts[0] for f in folders] == ["test", "valid", "train"]
    for folder in folders:
        files = read_track(folder, LAYOUTS["band"])
        mixture, rate = files.pop("mixture")
        assert rate == 44100 and mixture.shape[1] == 2 and len(mixture) > 10 * 44100
        np.testing.assert_array_equal(sum(stem for stem, _ in files.values()), mixture)
        for name, (stem, _) in files.items():
            assert stem.shape == mixture.shape
            assert 10 * np.log10(np.mean(stem**2)) > -50, f"{folder.name}/{name} is (nearly) silent"
        assert 0.05 < np.abs(mixture).max() < 1.0


@needs_renderer
def test_every_track_has_a_manifest_of_its_song_instruments_and_effects(band_render):
    out, folders = band_render
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert folder.name.endswith(manifest["song"]) and manifest["split"] == folder.parent.name
        assert manifest["source"] in ("chorale", "folk", "freedoom")
        for role in LAYOUTS["band"]:
            stem = manifest["stems"][role]
            assert {"soundfont", "kit", "singer"} & set(stem), stem
            assert {"eq", "width", "pan", "gain_db"} <= set(stem)
        assert "loudness_db" in manifest["mix"]
    settings = json.loads((out / "render.json").read_text())
    assert settings["splits"]["test"]["soundfonts"] == ["TimGM6mb"]


@pytest.mark.slow
@needs_renderer
def test_render_is_deterministic_and_resumes(band_render, tmp_path):
    out, folders = band_render
    again = render.render_dataset(tmp_path / "again", "band", tracks=3, seed=5, jobs=1, progress=False)
    for first, second in zip(folders, again):
        assert first.name == second.name
        for name in ("mixture", *LAYOUTS["band"]):
            np.testing.assert_array_equal(audio.read(first / f"{name}.wav")[0], audio.read(second / f"{name}.wav")[0])
    stamp = (again[0] / "mixture.wav").stat().st_mtime_ns
    render.render_dataset(tmp_path / "again", "band", tracks=3, seed=5, progress=False)
    assert (again[0] / "mixture.wav").stat().st_mtime_ns == stamp  # kept, not rendered again


@needs_renderer
def test_satb_layout_renders_four_voices(tmp_path):
    (folder,) = render.render_dataset(tmp_path / "satb", "satb", tracks=1, seed=2, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["alto.wav", "bass.wav", "manifest.json", "mixture.wav",
                                                        "soprano.wav", "tenor.wav"]


def test_held_out_songs_and_source_never_appear_in_train():
    jobs = render.plan("band", 200, seed=3)
    assert [sum(split == s for split, *_ in jobs) for s in render.SPLITS] == [160, 20, 20]
    names = {s: {refs[0].name for split, _, refs in jobs if split == s} for s in render.SPLITS}
    every = {s: {ref.name for split, _, refs in jobs if split == s for ref in refs} for s in render.SPLITS}
    assert not (every["valid"] | every["test"]) & every["train"] and not every["valid"] & every["test"]
    assert not any(name.startswith("freedoom1_") for name in every["train"])
    assert any(name.startswith("freedoom1_") for name in names["test"])
    assert {name.split("_")[0] for name in names["train"]} == {"chorale", "folk", "freedoom2"}


def test_splits_hold_their_own_soundfonts_kits_voices_and_grooves():
    fonts = {font.name: font.split for font in timbres.soundfonts()}
    assert all(split == "train" for name, split in fonts.items() if name not in ("OPL3", "TimGM6mb"))
    kits = timbres.drum_kits(timbres.soundfonts())
    for kit in kits:
        font = kit.name.split(":")[0]
        assert kit.split == fonts.get(font, kit.split)
    assert not {k.name for k in kits if k.split == "train"} & {k.name for k in kits if k.split != "train"}
    assert not set(singing.SINGERS["train"]) & (set(singing.SINGERS["valid"]) | set(singing.SINGERS["test"]))
    grooves = songs.grooves() if shutil.which("mma") else []
    by_file = {}
    for groove in grooves:
        by_file.setdefault(groove[2], set()).add(render.groove_split(groove))
    assert all(len(splits) == 1 for splits in by_file.values())
    if grooves:
        assert {split for splits in by_file.values() for split in splits} == set(render.SPLITS)


def test_a_failing_song_is_logged_and_replaced(monkeypatch, tmp_path):
    if not renderer_installed():
        pytest.skip("needs the renderer")
    real = songs.LOADERS["chorale"]
    failed = []

    def flaky(ref, *args):
        if not failed:
            failed.append(ref.name)
            raise SongError(f"{ref.name}: the MIDI file does not parse (EOFError)")
        return real(ref, *args)

    monkeypatch.setitem(songs.LOADERS, "chorale", flaky)
    (folder,) = render.render_dataset(tmp_path / "satb", "satb", tracks=1, seed=2, progress=False)
    log = (tmp_path / "satb" / "render.log").read_text().splitlines()
    assert log == [f"skipped {failed[0]} (track 0, train): {failed[0]}: the MIDI file does not parse (EOFError)"]
    assert failed[0] not in folder.name and (folder / "mixture.wav").is_file()


def test_a_failed_write_leaves_no_track_folder(monkeypatch, tmp_path):
    stems = {name: np.zeros((100, 2), np.int16) for name in ("a", "b", "c")}
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(path, *args, **kwargs)

    real = audio.write
    monkeypatch.setattr(audio, "write", failing)
    with pytest.raises(OSError):
        tracks.write_track(tmp_path / "0000_song", stems, {})
    assert list(tmp_path.iterdir()) == []


def test_missing_soundfonts_and_programs_say_what_to_install(monkeypatch):
    with pytest.raises(RenderError, match="apt-get install opl3-soundfont"):
        timbres.require_splits([f for f in timbres.soundfonts() if f.split != "valid"])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(render, "require_packages", lambda layout: None)  # past the check of every package at once
    runs = {("FluidSynth", "fluidsynth"): lambda: render.Instruments("satb"),
            ("mma", "mma"): lambda: songs.accompany(["1 C"], ("50sRock", 4, "50srock.mma"), 120.0, 10.0, seed=1),
            ("espeak-ng", "espeak-ng"): lambda: singing.Singer("m1")}
    for (name, package), run in runs.items():
        with pytest.raises(RenderError) as raised:
            run()
        assert str(raised.value) == f"{name} is not installed: install it with `apt-get install {package}`"


@pytest.mark.parametrize("tool, package", [("mma", "mma"), ("espeak-ng", "espeak-ng")])
def test_a_missing_band_tool_names_its_package(tool, package, monkeypatch):
    if not renderer_installed():
        pytest.skip("needs the renderer")
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == tool else which(name))
    with pytest.raises(RenderError, match=f"rendering needs {package}, not installed here: apt-get install -y "
                       f"{package} "):
        render.Instruments("band")
    render.Instruments("satb")  # the chorales alone need neither


def test_cli_names_every_missing_package_and_the_command_that_installs_them_in_one_line(tmp_path):
    """With no tool on the PATH (fluidsynth, mma, espeak-ng), one line names them and the apt-get command."""
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "tfsep.cli", "render-dataset", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == ("tfsep: error: rendering needs fluidsynth, mma, espeak-ng, not installed here: "
                                     "apt-get install -y fluidsynth mma espeak-ng (as root on Debian or Ubuntu)")


def test_every_missing_package_of_a_layout_is_named(monkeypatch):
    monkeypatch.setattr(timbres, "find_file", lambda name, folders=None: None)
    monkeypatch.setattr(songs, "FREEDOOM_WADS", ("/nowhere/freedoom1.wad",))
    with pytest.raises(RenderError) as raised:
        render.require_packages("band")
    for package in ("fluid-soundfont-gm", "opl3-soundfont", "timgm6mb-soundfont", "avldrums.lv2-soundfont",
                    "freedoom"):
        assert package in str(raised.value)
    assert "hydrogen-drumkits" not in str(raised.value) and "fluidsynth," not in str(raised.value)
    with pytest.raises(RenderError, match="rendering needs fluid-soundfont-gm, .*timgm6mb-soundfont, not "):
        render.require_packages("satb")


@pytest.mark.slow
def test_a_seed_renders_the_same_tracks_byte_for_byte_whatever_the_process_and_worker_count(tmp_path):
    """Two renders of one seed, in processes of their own (each with its own string-hash seed), one worker against
    three: every file, audio and manifest, is the same. mma's random patterns once made "other" differ."""
    if not renderer_installed():
        pytest.skip("needs the renderer")
    for name, jobs in (("one", 1), ("three", 3)):
        result = subprocess.run([sys.executable, "-m", "tfsep.cli", "render-dataset", str(tmp_path / name),
                                 "--tracks", "6", "--seed", "3", "--jobs", str(jobs)], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
    one, three = ({p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
                  for root in (tmp_path / "one", tmp_path / "three"))
    assert len(one) >= 6 * 6 and one.keys() == three.keys()
    assert [path for path in one if one[path] != three[path]] == []
