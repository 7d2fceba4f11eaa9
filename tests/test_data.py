"""Data set trees, their validation, and the tf.data pipelines, on tiny trees built here."""

import numpy as np
import pytest
from conftest import SOURCES, constant_library

from tfsep import audio, data


def make_track(folder, rng, samples=4000, rate=8000, channels=2, sources=SOURCES, overrides=None):
    """A track folder of noise stems and their sum as mixture; `overrides` maps a stem to (samples, rate)."""
    stems = {}
    for source in sources:
        length, source_rate = (overrides or {}).get(source, (samples, rate))
        stems[source] = rng.uniform(-0.2, 0.2, (length, channels)).astype(np.float32)
        audio.write(folder / f"{source}.wav", stems[source], source_rate)
    audio.write(folder / "mixture.wav", sum(s[:samples] for s in stems.values() if len(s) >= samples), rate)
    return stems


@pytest.fixture
def musdb_tree(tmp_path, rng):
    """A MUSDB18-HQ-like tree: train/ with two official validation tracks among four, and test/."""
    root = tmp_path / "musdb18hq"
    for name in ["A - One", "Actions - One Minute Smile", "B - Two", "Triviul - Angelsaint"]:
        make_track(root / "train" / name, rng)
    make_track(root / "test" / "C - Three", rng)
    return root


@pytest.mark.smoke
def test_musdb_tree_splits_validation_tracks_by_name(musdb_tree):
    names = {subset: [t.name for t in data.find_tracks(musdb_tree, subset, SOURCES)]
             for subset in ("train", "valid", "test")}
    assert names == {
        "train": ["A - One", "B - Two"],
        "valid": ["Actions - One Minute Smile", "Triviul - Angelsaint"],
        "test": ["C - Three"],
    }


def test_any_tree_with_named_stems_and_flac_files(tmp_path, rng):
    folder = tmp_path / "set" / "train" / "song"
    make_track(folder, rng, sources=("piano", "voice"))
    for name in ("piano", "voice", "mixture"):
        signal, rate = audio.read(folder / f"{name}.wav")
        (folder / f"{name}.wav").unlink()
        audio.write(folder / f"{name}.flac", signal, rate, subtype="PCM_16")
    (track,) = data.find_tracks(tmp_path / "set", "train", ["voice", "piano"])
    assert track.files["voice"].suffix == ".flac"


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"missing": "drums"}, r"track 'bad': missing drums.wav"),
        ({"overrides": {"bass": (3000, 8000)}}, r"track 'bad': .*bass.wav has samples 3000, but the mixture has 4000"),
        ({"overrides": {"other": (4000, 16000)}}, r"track 'bad': .*other.wav has sample_rate 16000"),
        ({"channels": {"vocals": 1}}, r"track 'bad': .*vocals.wav has channels 1"),
    ],
)
def test_broken_tracks_are_refused_naming_track_and_file(broken, message, tmp_path, rng):
    folder = tmp_path / "set" / "train" / "bad"
    make_track(folder, rng, overrides=broken.get("overrides"))
    if "missing" in broken:
        (folder / f"{broken['missing']}.wav").unlink()
    for source, channels in broken.get("channels", {}).items():
        audio.write(folder / f"{source}.wav", np.zeros((4000, channels), np.float32), 8000)
    with pytest.raises(data.DatasetError, match=message):
        data.find_tracks(tmp_path / "set", "train", SOURCES)


def test_a_remainder_source_is_the_mixture_minus_the_others_in_every_reader(tmp_path, rng):
    folder = tmp_path / "set" / "train" / "song"
    stems = make_track(folder, rng, sources=("vocals", "drums", "bass"))
    with pytest.raises(data.DatasetError, match="make it the remainder source"):
        data.find_tracks(tmp_path / "set", "train", ["vocals", "accompaniment"])
    (track,) = data.find_tracks(tmp_path / "set", "train", ["vocals", "accompaniment"], remainder="accompaniment")
    (loaded,) = data.load_tracks([track], ["vocals", "accompaniment"], 8000, progress=False)
    mixture, read, _ = data.read_stems(track, ["vocals", "accompaniment"])
    mixture_file, _ = audio.read(folder / "mixture.wav")
    np.testing.assert_array_equal(mixture, mixture_file)
    for stems_read in (loaded, read):
        np.testing.assert_array_equal(stems_read["vocals"], stems["vocals"])
        np.testing.assert_allclose(stems_read["accompaniment"], stems["drums"] + stems["bass"], atol=1e-6)
        np.testing.assert_allclose(stems_read["vocals"] + stems_read["accompaniment"], mixture_file, atol=1e-6)


def test_empty_or_missing_subsets_are_refused(tmp_path):
    (tmp_path / "set" / "test").mkdir(parents=True)
    with pytest.raises(data.DatasetError, match="no tracks"):
        data.find_tracks(tmp_path / "set", "test", SOURCES)
    with pytest.raises(data.DatasetError, match="no such data set folder"):
        data.find_tracks(tmp_path / "nothing", "test", SOURCES)


def test_loading_resamples_to_the_model_rate_and_caches_as_memory_maps(tmp_path, rng):
    make_track(tmp_path / "set" / "test" / "song", rng, samples=8000, rate=16000)
    tracks = data.find_tracks(tmp_path / "set", "test", SOURCES)
    (plain,) = data.load_tracks(tracks, SOURCES, 8000, progress=False)
    assert plain["vocals"].shape == (4000, 2)
    (cached,) = data.load_tracks(tracks, SOURCES, 8000, cache_dir=tmp_path / "cache", progress=False)
    (again,) = data.load_tracks(tracks, SOURCES, 8000, cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4
    assert isinstance(again["drums"], np.memmap)
    for source in SOURCES:
        np.testing.assert_array_equal(plain[source], cached[source])
        np.testing.assert_array_equal(plain[source], again[source])


def test_16_bit_wav_files_are_memory_mapped_in_place_and_read_as_soundfile_reads_them(tmp_path, rng):
    folder = tmp_path / "set" / "train" / "song"
    for name in ("mixture", *SOURCES):
        audio.write(folder / f"{name}.wav", rng.uniform(-0.9, 0.9, (8000, 2)).astype(np.float32), 8000, "PCM_16")
    tracks = data.find_tracks(tmp_path / "set", "train", SOURCES)
    (plain,) = data.load_tracks(tracks, SOURCES, 8000, progress=False)
    (mapped,) = data.load_tracks(tracks, SOURCES, 8000, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()  # nothing copied
    for source in SOURCES:
        assert isinstance(mapped[source], data.PcmSignal) and len(mapped[source]) == 8000
        assert str(mapped[source].data.filename) == str(folder / f"{source}.wav")
        np.testing.assert_array_equal(mapped[source][100:300], plain[source][100:300])
        np.testing.assert_array_equal(np.asarray(mapped[source]), plain[source])
    example = data.draw_example([mapped], SOURCES, 3, 0, 1000, data.Augmentation())
    assert example.dtype == np.float32 and example.shape == (4, 1000, 2)


def test_wav_samples_maps_only_16_bit_wav(tmp_path, rng):
    signal = rng.uniform(-0.9, 0.9, (500, 3)).astype(np.float32)
    for name, subtype in (("a.wav", "PCM_16"), ("b.wav", "PCM_24"), ("c.flac", "PCM_16")):
        audio.write(tmp_path / name, signal, 8000, subtype)
    np.testing.assert_array_equal(data.wav_samples(tmp_path / "a.wav") / 32768, audio.read(tmp_path / "a.wav")[0])
    assert data.wav_samples(tmp_path / "b.wav") is None and data.wav_samples(tmp_path / "c.flac") is None


def test_augment_applies_gain_within_range_and_swaps_channels(rng):
    stems = rng.standard_normal((4, 100, 2)).astype(np.float32)
    for seed in range(20):
        augmented, gains, swapped = data.augment(stems, np.random.default_rng(seed), (0.25, 1.25), True)
        assert ((0.25 <= gains) & (gains <= 1.25)).all()
        for k in range(4):
            source = stems[k][:, ::-1] if swapped[k] else stems[k]
            np.testing.assert_allclose(augmented[k], gains[k] * source, rtol=1e-6)
            if swapped[k]:
                np.testing.assert_allclose(augmented[k][:, 0], gains[k] * stems[k][:, 1], rtol=1e-6)
    assert not data.augment(stems, rng, (1, 1), channel_swap=False)[2].any()


def first_batches(dataset, count=3):
    return [(m.numpy(), {k: v.numpy() for k, v in s.items()}) for m, s in dataset.take(count)]


@pytest.mark.smoke
def test_training_elements_mix_to_the_sum_of_their_augmented_stems(rng):
    library = [{s: rng.uniform(-0.5, 0.5, (5000, 2)).astype(np.float32) for s in SOURCES} for _ in range(3)]
    for mixture, stems in first_batches(data.training_dataset(library, SOURCES, 1000, batch_size=4, seed=3)):
        assert mixture.shape == (4, 1000, 2)
        assert {k: v.shape for k, v in stems.items()} == {s: (4, 1000, 2) for s in SOURCES}
        np.testing.assert_allclose(mixture, sum(stems.values()), atol=1e-6)


def test_training_stream_is_determined_by_its_seed():
    library = constant_library()
    a, b, c = (first_batches(data.training_dataset(library, SOURCES, 500, 4, seed=s)) for s in (7, 7, 8))
    for (mix_a, _), (mix_b, _) in zip(a, b):
        np.testing.assert_array_equal(mix_a, mix_b)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_remix_draws_sources_from_different_tracks_and_no_remix_keeps_one():
    library = constant_library(tracks=6)
    plain = data.Augmentation(remix=False, gain=(1.0, 1.0), channel_swap=False)
    remixed = data.Augmentation(remix=True, gain=(1.0, 1.0), channel_swap=False)
    tracks_of = lambda stems, i: [int(stems[s][i, 0, 0] // 10) for s in SOURCES]  # noqa: E731
    for _, stems in first_batches(data.training_dataset(library, SOURCES, 200, 8, augmentation=plain)):
        assert all(len(set(tracks_of(stems, i))) == 1 for i in range(8))
    mixed = [len(set(tracks_of(stems, i))) > 1
             for _, stems in first_batches(data.training_dataset(library, SOURCES, 200, 8, augmentation=remixed))
             for i in range(8)]
    assert sum(mixed) > 12


def test_without_remix_the_stems_of_an_example_are_aligned_as_in_their_track():
    ramp = np.arange(20000, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32) / 20000
    library = [{source: ramp * (k + 1) for k, source in enumerate(SOURCES)} for _ in range(3)]
    plain = data.Augmentation(remix=False, gain=(1.0, 1.0), channel_swap=False)
    for index in range(20):
        stems = data.draw_example(library, SOURCES, index, 0, 500, plain)
        np.testing.assert_allclose(stems / np.arange(1, 5)[:, None, None], np.stack([stems[0]] * 4), rtol=1e-6)


def test_silent_chunks_are_redrawn():
    library = constant_library(tracks=2, samples=4000)
    library[0]["vocals"][:] = 0.0  # track 0 has no vocals at all
    library[1]["vocals"][:2000] = 0.0  # track 1 sings only in its second half
    quiet_ok = data.Augmentation(gain=(1.0, 1.0), channel_swap=False)
    skip = data.Augmentation(gain=(1.0, 1.0), channel_swap=False, silence_threshold=-60.0)
    silent = lambda augmentation: sum(  # noqa: E731
        float(np.abs(stems["vocals"][i]).max() == 0)
        for _, stems in first_batches(data.training_dataset(library, SOURCES, 1000, 8, augmentation=augmentation), 4)
        for i in range(8)
    )
    assert silent(quiet_ok) > 5
    assert silent(skip) == 0


def test_validation_set_is_every_chunk_in_order_without_augmentation():
    library = constant_library(tracks=2, samples=2500)
    batches = first_batches(data.validation_dataset(library, SOURCES, 1000, batch_size=2), count=10)
    mixtures = np.concatenate([m for m, _ in batches])
    assert mixtures.shape == (6, 1000, 2)  # ceil(2500 / 1000) chunks per track
    np.testing.assert_array_equal(mixtures[:, 0, 0], [6, 6, 6, 46, 46, 46])  # 0+1+2+3, 10+11+12+13
    np.testing.assert_array_equal(mixtures[2, 500:], 0.0)  # the last chunk is zero-padded
    again = np.concatenate([m for m, _ in first_batches(data.validation_dataset(library, SOURCES, 1000, 2), 10)])
    np.testing.assert_array_equal(mixtures, again)


def test_musdb_stem_mp4_tracks_load_through_the_musdb_package(tmp_path):
    import shutil
    import subprocess

    pytest.importorskip("musdb", reason="needs the musdb extra")
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    t = np.arange(44100) / 44100
    tones = {name: np.stack([np.sin(2 * np.pi * f * t), np.sin(2 * np.pi * 1.5 * f * t)], -1).astype(np.float32) * 0.2
             for name, f in [("drums", 200), ("bass", 100), ("other", 500), ("vocals", 800)]}
    order = ["mixture", "drums", "bass", "other", "vocals"]  # the stream order of MUSDB18's stem files
    tones["mixture"] = sum(tones.values())
    command = ["ffmpeg", "-y", "-loglevel", "error"]
    for name in order:
        audio.write(tmp_path / f"{name}.wav", tones[name], 44100)
        command += ["-i", str(tmp_path / f"{name}.wav")]
    (tmp_path / "musdb" / "test").mkdir(parents=True)
    command += [arg for i in range(5) for arg in ("-map", str(i))]
    subprocess.run([*command, "-c:a", "aac", "-b:a", "256k", str(tmp_path / "musdb/test/Band - Song.stem.mp4")],
                   check=True)

    (track,) = data.find_musdb_tracks(tmp_path / "musdb", "test", ["vocals", "bass"])
    assert track.name == "Band - Song"
    (stems,) = data.load_tracks([track], ["vocals", "bass"], 22050, progress=False)
    assert set(stems) == {"vocals", "bass"}
    vocals = audio.resample(tones["vocals"], 44100, 22050)
    assert abs(len(stems["vocals"]) - len(vocals)) < 2048  # AAC adds priming samples
    middle = slice(2000, 20000)
    assert np.corrcoef(stems["vocals"][middle, 0], vocals[middle, 0])[0, 1] > 0.95


def test_a_training_stream_started_at_k_continues_the_stream_from_0(rng):
    library = [{s: rng.uniform(-1, 1, (4000, 2)).astype(np.float32) for s in SOURCES} for _ in range(3)]
    whole = data.training_dataset(library, SOURCES, 500, batch_size=2, seed=4).take(3)
    later = data.training_dataset(library, SOURCES, 500, batch_size=2, seed=4, start=2).take(2)
    whole_mixtures = [m.numpy() for m, _ in whole]
    for k, (mixture, _) in enumerate(later):
        np.testing.assert_array_equal(mixture.numpy(), whole_mixtures[k + 1])
