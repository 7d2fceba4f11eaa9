"""Mix production: EQ against scipy's frequency response, compression, reverb decay, width, the limiter."""

import numpy as np
import pytest
from scipy import signal

from tfsep.corpus import production

RATE = production.SAMPLE_RATE


@pytest.mark.parametrize("kind,frequency,gain", [("peak", 1000.0, 6.0), ("peak", 250.0, -8.0),
                                                  ("lowshelf", 200.0, 5.0), ("highshelf", 5000.0, -4.0)])
def test_eq_sections_have_the_cookbook_gain(kind, frequency, gain):
    section = production.biquad(kind, frequency, gain, q=1.0)
    probe = {"peak": frequency, "lowshelf": 20.0, "highshelf": 20000.0}[kind]
    _, response = signal.sosfreqz(section[None], worN=[probe], fs=RATE)
    assert 20 * np.log10(abs(response[0])) == pytest.approx(gain, abs=0.3)
    _, far = signal.sosfreqz(section[None], worN=[{"peak": frequency * 16, "lowshelf": 15000.0,
                                                   "highshelf": 50.0}[kind]], fs=RATE)
    assert abs(20 * np.log10(abs(far[0]))) < 1.0


def test_high_and_low_pass_cut_beyond_their_corner():
    for kind, corner, stop in (("highpass", 200.0, 20.0), ("lowpass", 4000.0, 16000.0)):
        _, response = signal.sosfreqz(production.biquad(kind, corner)[None], worN=[corner, stop], fs=RATE)
        db = 20 * np.log10(np.abs(response))
        assert db[0] == pytest.approx(-3.0, abs=0.1) and db[1] < -30


def test_compression_narrows_the_dynamics():
    rng = np.random.default_rng(0)
    envelope = np.repeat([0.05, 0.8, 0.05, 0.8], RATE // 2)
    x = (rng.standard_normal((len(envelope), 2)) * envelope[:, None]).astype(np.float32)
    y, params = production.compress(x, np.random.default_rng(3))
    def spread(z):
        return 20 * np.log10(np.std(z[RATE // 2 + 2000: RATE]) / np.std(z[2000: RATE // 2]))
    assert params["compressor"]["ratio"] > 1.5
    assert spread(y) < spread(x) - 2.0


def test_reverb_tail_decays_at_its_rt60():
    impulse = np.zeros((3 * RATE, 2), np.float32)
    impulse[0] = 1.0
    rng = np.random.default_rng(4)
    y, params = production.reverb(impulse, rng)
    rt60, wet = params["reverb"]["rt60_s"], params["reverb"]["wet"]
    assert wet > 0
    tail = y[int(0.05 * RATE):, 0] ** 2
    energy = np.cumsum(tail[::-1])[::-1]  # Schroeder's backward integration
    decay = 10 * np.log10(energy / energy[0])
    t20 = np.argmax(decay < -20) / RATE  # 0 to -20 dB, tripled for -60
    assert 3 * t20 == pytest.approx(rt60 - 0.0, rel=0.35)


def test_width_zero_is_mono_and_pan_is_constant_power():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((RATE, 2)).astype(np.float32)
    mono, params = production.widen(x, np.random.default_rng(0), pan=0.0)
    mid = (x[:, 0] + x[:, 1]) / 2
    left, right = production.widen(np.stack([mid, mid], 1), rng, pan=-1.0)[0].T
    assert np.allclose(right, 0, atol=1e-6) and np.allclose(left**2, 2 * mid**2, rtol=1e-4)


def test_produced_stems_still_sum_to_a_limited_mixture():
    rng = np.random.default_rng(1)
    beats = (np.arange(20 * RATE) % RATE < 2000).astype(np.float32)[:, None]
    stems = {"drums": rng.standard_normal((20 * RATE, 2)).astype(np.float32) * beats,
             "bass": np.sin(2 * np.pi * 55 * np.arange(20 * RATE) / RATE)[:, None].repeat(2, 1).astype(np.float32),
             "vocals": rng.standard_normal((20 * RATE, 2)).astype(np.float32) * 0.1}
    produced, params = production.produce(stems, np.random.default_rng(7), limit_probability=1.0)
    unlimited, _ = production.produce(stems, np.random.default_rng(7), limit_probability=0.0)  # same draws
    limiter = params["mix"]["limiter"]
    assert "limiter" not in _["mix"] and limiter["max_reduction_db"] > 1.0
    gains = {role: produced[role][:, 0] / unlimited[role][:, 0] for role in stems}
    loud = np.abs(unlimited["bass"][:, 0]) > 1e-3
    np.testing.assert_allclose(gains["drums"][loud & (np.abs(unlimited["drums"][:, 0]) > 1e-3)],
                               gains["bass"][loud & (np.abs(unlimited["drums"][:, 0]) > 1e-3)], rtol=1e-4)
    peak = np.abs(sum(unlimited.values())).max()
    assert np.abs(sum(produced.values())).max() <= peak * 10 ** (-limiter["peak_reduction_db"] / 20) * 1.001


def test_limiter_holds_the_ceiling():
    rng = np.random.default_rng(2)
    mixture = rng.standard_normal((5 * RATE, 2)).astype(np.float32) * np.linspace(0.1, 1, 5 * RATE)[:, None]
    gain = production.limiter_gain(mixture, 0.5, 0.1)
    assert np.abs(mixture * gain[:, None]).max() <= 0.5 + 1e-6
    assert gain[: RATE // 10].mean() > 0.9  # quiet passages pass
