"""Mask networks: shapes at any number of frames, bands, and option checking."""

import numpy as np
import pytest

from tfsep import networks
from tfsep._keras import keras


@pytest.mark.parametrize("architecture", sorted(networks.NETWORKS))
@pytest.mark.parametrize("frames", [1, 7, 70])
def test_logits_have_one_mask_per_bin_channel_and_source(architecture, frames):
    magnitude = keras.Input((None, 40, 2))
    options = networks.network_options(architecture, "tiny")
    logits = networks.NETWORKS[architecture](magnitude, ("a", "b", "c"), 31.25, **options)
    assert tuple(logits.shape) == (None, None, 40, 2, 3)
    model = keras.Model(magnitude, logits)
    out = model(np.random.default_rng(0).uniform(size=(2, frames, 40, 2)).astype(np.float32))
    assert out.shape == (2, frames, 40, 2, 3)
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("bins, bands", [(1487, 32), (129, 8), (10, 10), (5, 1)])
def test_band_edges_cover_every_bin_once_narrow_at_low_frequencies(bins, bands):
    edges = networks.band_edges(bins, bands, 44100 / 4096)
    assert edges[0] == 0 and edges[-1] == bins and len(edges) == bands + 1
    widths = np.diff(edges)
    assert widths.min() >= 1
    assert widths[0] <= widths[-1]


def test_band_edges_refuse_more_bands_than_bins():
    with pytest.raises(ValueError, match="bands"):
        networks.band_edges(4, 5, 10.0)


def test_network_options_merge_presets_and_name_unknown_keys():
    assert networks.network_options("umx", "small", {"dropout": 0.1}) == {"hidden": 128, "dropout": 0.1}
    with pytest.raises(ValueError, match="'hiden'"):
        networks.network_options("umx", "base", {"hiden": 3})
    with pytest.raises(ValueError, match="unknown architecture"):
        networks.network_options("transformer")
    with pytest.raises(ValueError, match="unknown size"):
        networks.network_options("unet", "huge")
