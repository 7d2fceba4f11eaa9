"""Separator: chunked separation of arrays and files, oracles and outputs (bad input: test_bad_audio.py)."""

import threading
import time

import numpy as np
import pytest
import soundfile
from conftest import sdr, write_wav

from tfsep import audio
from tfsep.chunking import crossfade_chunks
from tfsep.oracles import oracle_separate
from tfsep.outputs import SeparationError
from tfsep.separate import Separator

RATE = 8000


def tones(seconds=3.0, rate=RATE):
    """Four stereo sources with disjoint spectra (sines at 150, 600, 1500, 3000 Hz): (4, samples, 2)."""
    t = np.arange(int(seconds * rate)) / rate
    sources = [0.2 * np.sin(2 * np.pi * f * t + phase) for f, phase in ((150, 0), (600, 1), (1500, 2), (3000, 3))]
    return np.stack([np.stack([s, 0.7 * s], -1) for s in sources]).astype(np.float32)


@pytest.mark.smoke
@pytest.mark.parametrize("oracle", ["irm", "ibm", "wiener"])
def test_oracle_masks_recover_sources_with_disjoint_spectra(oracle):
    stems = tones()
    estimates = oracle_separate(oracle, stems.sum(0), stems, n_fft=512, hop=128)
    assert estimates.shape == stems.shape
    assert min(sdr(stems[k], estimates[k]) for k in range(4)) > 25


@pytest.mark.smoke
def test_crossfaded_chunks_rebuild_an_identity_separation_exactly():
    signal = np.random.default_rng(1).normal(size=(1000, 2)).astype(np.float32)
    blocks = [signal[i:i + 97] for i in range(0, 1000, 97)]
    out = np.concatenate(list(crossfade_chunks(lambda chunks: [chunk[None] for chunk in chunks], blocks, 128, 32)), 1)
    np.testing.assert_allclose(out[0], signal, atol=1e-6)


@pytest.mark.smoke
@pytest.mark.parametrize("workers, batch", [(2, 1), (3, 1), (1, 3), (2, 4)])
def test_chunks_separated_at_once_join_as_they_do_one_by_one(workers, batch, rng):
    """Chunks run ahead in a thread pool (a LiteRT backend's interpreters) or several to a call give the same
    stems, crossfaded or summed, and never more than `workers` calls in flight."""
    from tfsep.chunking import summed_chunks

    signal = rng.normal(size=(5000, 2)).astype(np.float32)
    blocks = [signal[i:i + 333] for i in range(0, 5000, 333)]
    alive, most, lock = [0], [0], threading.Lock()

    def separate_chunks(chunks):
        assert len(chunks) <= batch and len({chunk.shape for chunk in chunks}) == 1
        with lock:
            alive[0] += 1
            most[0] = max(most[0], alive[0])
        time.sleep(0.002)
        with lock:
            alive[0] -= 1
        return [np.stack([chunk * 0.5, chunk * 0.25]) for chunk in chunks]

    for join in (lambda w, b: crossfade_chunks(separate_chunks, blocks, 512, 64, w, b),
                 lambda w, b: summed_chunks(separate_chunks, blocks, 4, 256, 64, "center", "hann", w, b)):
        one_by_one = np.concatenate(list(join(1, 1)), 1)
        at_once = np.concatenate(list(join(workers, batch)), 1)
        np.testing.assert_array_equal(at_once, one_by_one)
        assert one_by_one.shape == (2, 5000, 2)
    assert most[0] <= workers and (workers == 1 or most[0] > 1)


@pytest.mark.slow
def test_a_tflite_export_separates_files_as_the_keras_model_does(separator, tiny_model, tmp_path, rng):
    pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    from tfsep import formats
    path = formats.write("tflite", tiny_model, tmp_path / "tiny.tflite")
    litert = Separator.load(path, chunk_seconds=2.0, overlap_seconds=0.5)
    assert (litert.sources, litert.sample_rate, litert.plan.chunk) == (separator.sources, RATE, separator.plan.chunk)
    mixture = rng.uniform(-0.5, 0.5, (RATE * 5 + 123, 3)).astype(np.float32)  # chunks, a short last one, 3 channels
    expected, separated = separator.separate(mixture, 16000), litert.separate(mixture, 16000)
    for source in separator.sources:
        assert np.abs(separated[source] - expected[source]).max() <= 1e-4
    with pytest.raises(ValueError, match="export it again with --wiener 1"):
        Separator.load(path, wiener_iterations=1)
    with pytest.raises(ValueError, match="was exported without --consistent; export it again with it"):
        Separator.load(path, mixture_consistent=True)
    stream = formats.write("tflite", tiny_model, tmp_path / "stream.tflite", block_seconds=0.1)
    with pytest.raises(ValueError, match="is the streaming form"):
        Separator.load(stream)


def test_consistent_stems_sum_to_the_mixture_through_crossfaded_chunks_at_any_rate(tiny_model, rng):
    """Each chunk's stems sum to the chunk, and crossfade weights sum to one: the file's stems sum to the file."""
    consistent = Separator(tiny_model, chunk_seconds=1.0, overlap_seconds=0.25, mixture_consistent=True)
    assert consistent.description["mixture_consistent"]
    for rate, samples in ((RATE, RATE * 4 + 17), (RATE, 100), (11025, 11025 * 3)):
        mixture = rng.uniform(-0.5, 0.5, (samples, 2)).astype(np.float32)
        stems = consistent.separate(mixture, rate)  # at 11025 Hz, what lies above the model's 4 kHz is shared too
        np.testing.assert_allclose(sum(stems.values()), mixture, atol=1e-5)


@pytest.mark.parametrize("options, form", [({}, ".tflite"), ({"mixture_consistent": True}, ".tflite"),
                                           ({"wiener_iterations": 0}, ".tflite"),
                                           ({"mixture_consistent": False}, ".keras"),
                                           ({"wiener_iterations": 1}, ".keras")])
def test_the_shipped_model_separates_in_its_tflite_form_unless_asked_for_what_that_lacks(options, form):
    pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    from tfsep import providers

    assert providers.separation_model("band", **options).suffix == form
    assert providers.separation_model(None, **options).suffix == form


def test_channels_rates_and_the_residual(separator, rng):
    stereo = rng.uniform(-0.5, 0.5, (RATE * 3, 2)).astype(np.float32)
    reference = separator.separate(stereo, RATE, residual=True)
    assert set(reference) == {"vocals", "drums", "bass", "other", "residual"}
    np.testing.assert_allclose(sum(reference.values()), stereo, atol=1e-5)

    mono = separator.separate(stereo[:, 0], RATE)
    assert mono["vocals"].shape == (RATE * 3, 1)
    three = separator.separate(np.concatenate([stereo, stereo[:, :1]], 1), RATE)
    assert three["vocals"].shape == (RATE * 3, 3)
    np.testing.assert_allclose(three["vocals"][:, :2], reference["vocals"], atol=1e-6)  # channels 1-2 as a pair

    resampled = separator.separate(stereo[:4001], 11025)
    assert resampled["drums"].shape == (4001, 2)


def test_resampling_in_the_separator_is_time_aligned(separator):
    """Separating at 11025 Hz equals resampling to the model's 8 kHz, separating and resampling back."""
    t = np.arange(3 * 11025) / 11025
    mixture = np.stack([np.sin(2 * np.pi * 300 * t) * np.sin(2 * np.pi * 0.7 * t), np.sin(2 * np.pi * 1100 * t + 1)],
                       -1).astype(np.float32) * 0.4
    streamed = separator.separate(mixture, 11025)
    at_model_rate = separator.separate(audio.resample(mixture, 11025, RATE), RATE)
    middle = slice(2000, len(t) - 2000)
    for source, stem in at_model_rate.items():
        expected = audio.resample(stem, RATE, 11025)[: len(t)]
        error = np.abs(streamed[source] - expected)[middle].max()
        shifted = np.abs(streamed[source][1:] - expected[:-1])[middle].max()  # one sample late
        assert error <= 0.01 * np.abs(expected).max() and error < shifted / 5, (source, error, shifted)


def test_separate_file_writes_stems_at_the_input_rate_and_never_half_writes(separator, tmp_path, rng):
    song = write_wav(tmp_path / "my song.wav", rng.uniform(-0.5, 0.5, (22050 * 2, 2)), rate=22050)
    written = separator.separate_file(song, tmp_path / "out", "{track}/{source}.flac", bits="24")
    assert sorted(written) == ["bass", "drums", "other", "vocals"]
    info = soundfile.info(written["vocals"])
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (22050, 2, 44100, "PCM_24")
    assert written["vocals"] == tmp_path / "out" / "my song" / "vocals.flac"

    before = written["vocals"].read_bytes()
    with pytest.raises(SeparationError, match="already exists"):
        separator.separate_file(song, tmp_path / "out", "{track}/{source}.flac")
    assert written["vocals"].read_bytes() == before
    separator.separate_file(song, tmp_path / "out", "{track}/{source}.flac", bits="16", overwrite=True)
    assert soundfile.info(written["vocals"]).subtype == "PCM_16"

    bad = write_wav(tmp_path / "nan.wav", np.full((RATE * 3, 2), np.nan, np.float32), subtype="FLOAT")
    with pytest.raises(SeparationError, match="nan.wav: holds NaN"):
        separator.separate_file(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "nan").exists() or not any((tmp_path / "out" / "nan").iterdir())

    with pytest.raises(SeparationError, match="outside"):
        separator.separate_file(song, tmp_path / "out", "../{source}.wav")
    with pytest.raises(SeparationError, match="may hold only"):
        separator.separate_file(song, tmp_path / "out", "{artist}/{source}.wav")


def segmented_model(framing):
    """A tiny vocals/accompaniment unet at 8 kHz whose frames go through the network in 64-frame segments."""
    import tfsep

    return tfsep.build_model("unet", ("vocals", "accompaniment"), RATE, n_fft=256, hop=64, size="tiny",
                             framing=framing, segment=64, ratio_mask_exponent=2.0, mask_extension="zeros")


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["pad_end", "center"])
def test_summed_chunks_of_whole_segments_equal_the_whole_file_everywhere(framing, rng):
    model = segmented_model(framing)
    separator = Separator(model, chunk_seconds=1.0)  # two 64-frame segments of 64-sample hops
    assert separator.plan.chunk_frames == 128
    for samples in (3 * RATE + 77, 8191, 100):  # off the hop, off the segment grid, shorter than a frame
        mixture = rng.uniform(-0.5, 0.5, (samples, 2)).astype(np.float32)
        whole = model.predict(mixture[None], verbose=0)
        chunked = separator.separate(mixture, RATE, residual=True)
        for source in model.sources:
            assert np.abs(chunked[source] - whole[source][0]).max() <= 1e-5, (framing, samples, source)
        np.testing.assert_allclose(sum(chunked.values()), mixture, atol=1e-5)
    mono = separator.separate(mixture[:, 0], RATE)
    assert mono["vocals"].shape == (100, 1)
    with pytest.raises(ValueError, match="need no overlap"):
        Separator(model, overlap_seconds=0.5)


@pytest.mark.slow
def test_a_segmented_tflite_export_separates_through_its_chunk_signature(tmp_path, rng):
    pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (not on Intel Macs)")
    from tfsep import formats
    model = segmented_model("pad_end")
    separator = Separator.load(formats.write("tflite", model, tmp_path / "segmented.tflite"), chunk_seconds=0.5)
    mixture = rng.uniform(-0.5, 0.5, (2 * RATE + 5, 2)).astype(np.float32)
    whole, chunked = model.predict(mixture[None], verbose=0), separator.separate(mixture, RATE)
    for source in model.sources:
        assert np.abs(chunked[source] - whole[source][0]).max() <= 1e-4


def test_a_savedmodel_export_separates_as_the_keras_model_does(tiny_model, exported, rng, tmp_path):
    mixture = rng.uniform(-0.5, 0.5, (RATE * 3, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="chunks of 2.0 s exceed this SavedModel's limit of 1 s per request"):
        Separator.load(exported, chunk_seconds=2.0)  # the export takes at most 1 s per request
    separator = Separator(tiny_model, chunk_seconds=1.0, overlap_seconds=0.25)
    serving = Separator.load(exported, chunk_seconds=1.0, overlap_seconds=0.25)
    assert (serving.model, serving.sources, serving.plan) == (None, separator.sources, separator.plan)
    expected, separated = separator.separate(mixture, RATE), serving.separate(mixture, RATE)
    for source in separator.sources:
        assert np.abs(separated[source] - expected[source]).max() <= 1e-5
    with pytest.raises(ValueError, match="export it again with --wiener 2"):
        Separator.load(exported, wiener_iterations=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: not a tfsep SavedModel export"):
        Separator.load(tmp_path / "empty")
    segmented = tmp_path / "segmented" / "assets.extra"
    segmented.mkdir(parents=True)
    (segmented / "tfsep.json").write_text('{"sources": ["vocals"], "segment_frames": 64}')
    with pytest.raises(ValueError, match="cuts its frames into segments, which the SavedModel cannot chunk"):
        Separator.load(tmp_path / "segmented")
