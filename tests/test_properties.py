"""Property-based tests (hypothesis): the STFT round trip, chunked against whole-file separation, augmentation."""

import numpy as np
import pytest
from conftest import SOURCES, constant_library
from hypothesis import given, settings
from hypothesis import strategies as st

from tfsep import data
from tfsep.layers import STFT, InverseSTFT
from tfsep.separate import Separator

RATE = 8000


@settings(max_examples=25, deadline=None)
@given(
    samples=st.integers(1, 3000),
    channels=st.integers(1, 3),
    log2_n_fft=st.integers(3, 10),
    hop_fraction=st.floats(0.05, 0.5),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(samples, channels, log2_n_fft, hop_fraction, seed):
    n_fft = 2**log2_n_fft
    hop = max(1, int(n_fft * hop_fraction))
    waveform = np.random.default_rng(seed).uniform(-1, 1, (2, samples, channels)).astype(np.float32)
    restored = InverseSTFT(n_fft, hop)([STFT(n_fft, hop)(waveform), waveform]).numpy()
    assert restored.shape == waveform.shape
    assert np.abs(restored - waveform).max() <= 1e-5


@pytest.mark.slow
@given(samples=st.integers(1, 3 * RATE), chunk=st.sampled_from([0.25, 0.6, 1.5]),
       overlap=st.sampled_from([0, 0.1, 0.2]), seed=st.integers(0, 1000))
@settings(max_examples=12, deadline=None)
def test_chunked_separation_equals_the_whole_file_away_from_chunk_borders_for_any_length(
        tiny_model, samples, chunk, overlap, seed):
    chunked = Separator(tiny_model, chunk_seconds=chunk, overlap_seconds=overlap)
    mixture = np.random.default_rng(seed).uniform(-0.5, 0.5, (samples, 2)).astype(np.float32)
    whole, separated = tiny_model.predict(mixture[None], verbose=0), chunked.separate(mixture, RATE)
    margin = 3 * 64 + 256  # the tiny bandconv's receptive field (3 frames of 64 samples) and one FFT length
    interior = np.ones(samples, bool)
    for start in range(0, samples, chunked.plan.chunk - chunked.plan.overlap):
        for border in (start, min(start + chunked.plan.chunk, samples)):
            if 0 < border < samples:
                interior[max(0, border - margin):border + margin] = False
        if start + chunked.plan.chunk >= samples:
            break
    for source in tiny_model.sources:
        assert separated[source].shape == (samples, 2) and np.isfinite(separated[source]).all()
        difference = np.abs(separated[source] - whole[source][0])
        assert difference[interior].max(initial=0.0) <= 1e-4
        if overlap:
            assert difference.max() < 0.05  # crossfades keep chunk borders close too


@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 10**6), low=st.floats(0.0, 2.0), span=st.floats(0.0, 2.0),
       remix=st.booleans(), swap=st.booleans())
@settings(max_examples=50, deadline=None)
def test_augmentation_invariants_hold_for_any_seed_and_gain_range(seed, index, low, span, remix, swap):
    """Each stem is one track's source times a gain in range, swapped only if swapping is on; no remix: one track."""
    augmentation = data.Augmentation(remix=remix, gain=(low, low + span), channel_swap=swap)
    stems = data.draw_example(constant_library(), SOURCES, index, seed, 500, augmentation)
    assert stems.shape == (4, 500, 2) and stems.dtype == np.float32
    possible_tracks = []
    for k, stem in enumerate(stems):
        left, right = stem[0]
        np.testing.assert_array_equal(stem, np.broadcast_to(stem[0], stem.shape))  # a chunk of a constant
        assert np.isclose(left, -right) and (swap or left >= 0)
        sources = {t: 10.0 * t + k for t in range(5)}  # source k of track t, before the gain
        possible_tracks.append({t for t, source in sources.items() if (source == 0 and left == 0) or
                                (source and low - 1e-5 <= abs(left) / source <= low + span + 1e-5)})
        assert possible_tracks[-1], f"stem {k} = {left} is no gain in range times any track's source"
    if not remix:
        assert set.intersection(*possible_tracks)
