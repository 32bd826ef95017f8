"""Spectra (RAPSD) and spectral schedules: host-free math, CPU, well under a second each."""

import json
import math

import pytest
import torch

from noise_calibration.noisecal.spectra import SpectrumStats, radial_bins, rapsd
from noise_calibration.noisecal.spectral_schedule import (
    DEFAULT_SNR_HIGH,
    DEFAULT_SNR_LOW,
    DEFAULT_START,
    REFERENCE_STEPS,
    VARIANTS,
    default_thresholds,
    log_snr_offset,
    schedule_bounds,
    sigma_from_log_snr_offset,
    spectral_progress,
    spectral_sigmas,
)
from noise_calibration.noisecal.testing.testbed import FieldSpectrum, sample_field

FLOW_RANGE = (0.001, 1.0)  # ComfyUI's discrete flow sigmas, shift 1
SD3_RANGE = (3 * 0.001 / (1 + 2 * 0.001), 1.0)  # shift 3: time_snr_shift(3, 1/1000)
SD15_RANGE = (0.0292, 14.6146)  # ComfyUI's SD1.5 ModelSamplingDiscrete


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _power_law(n=32, amplitude=2.0, alpha=2.5, spread=0.0, channels=2):
    """Stats whose channel-mean power is exactly amplitude * f^-alpha (f in cycles/pixel)."""
    _, centres, counts = radial_bins(n, n)
    f = centres.clone()
    p = torch.empty_like(f)
    p[0] = 100.0  # DC: ignored by the bounds
    p[1:] = amplitude * f[1:] ** (-alpha)
    return SpectrumStats(
        freqs=centres.tolist(),
        power=[p.tolist()] * channels,
        spread=[[spread] * len(f)] * channels,
        count=16,
        latent_size=(n, n),
        counts=counts.tolist(),
        spread_mean=[spread] * len(f),
    )


@pytest.fixture(scope="module")
def field_stats():
    return rapsd(sample_field(FieldSpectrum(3.0, 2.5, 4), 32, 64, _gen(1)))


# --- RAPSD -------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(16, 16), (12, 20), (9, 9)])
def test_radial_bins_cover_the_grid(h, w):
    index, centres, counts = radial_bins(h, w)
    assert index.shape == (h, w)
    assert int(counts.sum()) == h * w
    assert float(centres[0]) == 0.0 and int(counts[0]) == 1  # DC alone
    assert float(centres[1]) == pytest.approx(1 / max(h, w))  # cycles per pixel
    assert bool((centres[1:] > centres[:-1]).all())
    assert float(centres[-1]) <= math.sqrt(0.5) + 1e-12  # corners, not beyond


def test_rapsd_white_noise_is_flat_and_parseval():
    x = torch.randn(64, 3, 16, 16, generator=_gen(2))
    st = rapsd(x)
    assert st.channels == 3 and st.count == 64 and st.latent_size == (16, 16)
    counts = torch.tensor(st.counts, dtype=torch.float64)
    for c in range(3):
        p = torch.tensor(st.power[c], dtype=torch.float64)
        # Parseval with the orthonormal DFT: count-weighted mean power == mean x^2
        mean_sq = float(x[:, c].double().square().mean())
        assert float((p * counts).sum() / counts.sum()) == pytest.approx(mean_sq, rel=1e-9)
        # unit-variance white noise: about 1 everywhere (bins hold >= 4 coefficients)
        assert float((p[1:] - 1).abs().max()) < 0.5
    assert all(v > 0 for v in st.spread[0][1:])
    assert st.spread_mean is not None and len(st.spread_mean) == len(st.freqs)
    # independent channels average out: the channel-mean spread is smaller
    assert sum(st.spread_mean[1:]) < sum(st.spread[0][1:])


def test_rapsd_matches_the_field_spectrum(field_stats):
    sp = FieldSpectrum(3.0, 2.5, 4)
    true = sp.power(32)
    index, _, counts = radial_bins(32, 32)
    expected = torch.zeros(len(counts), dtype=torch.float64)
    expected.index_add_(0, index.reshape(-1), true.reshape(-1))
    expected /= counts
    got = field_stats.mean_power()
    rel = (got[1:] / expected[1:] - 1).abs()
    assert float(rel.max()) < 0.25  # 64 samples x 4 channels
    assert float(rel.mean()) < 0.05


def test_rapsd_single_sample_has_zero_spread():
    st = rapsd(torch.randn(1, 2, 8, 8, generator=_gen(3)))
    assert all(v == 0 for row in st.spread for v in row)


def test_spectrum_json_round_trip(field_stats):
    data = field_stats.to_json()
    text = json.dumps(data, allow_nan=False)
    back = SpectrumStats.from_json(json.loads(text))
    assert back == field_stats
    assert data["freq_unit"] == "cycles/pixel"


def test_spectrum_fits_the_calibration_record(field_stats):
    from noise_calibration.noisecal.calibration_record import make_record
    from noise_calibration.noisecal.checkpoint_key import CheckpointKey

    record = make_record(
        key=CheckpointKey("ab" * 8, "SD3", "SD3"),
        image_size=(256, 256),
        latent_size=(32, 32),
        parameterization="flow",
        method="spectrum",
        method_params={},
        sigmas=[1.0, 0.5],
        sigma_hat=[1.0, 0.5],
        calibration_set={"count": 64, "source": "test", "seed": 1},
        spectrum=field_stats.to_json(),
    )
    assert SpectrumStats.from_json(record["spectrum"]) == field_stats


@pytest.mark.parametrize(
    "bad",
    [
        {"freqs": [0.0], "power": [[1.0]], "count": 1, "latent_size": [1, 1]},
        {"freqs": [0.0, 0.1], "power": [[1.0, -1.0]], "count": 1, "latent_size": [8, 8]},
        {"freqs": [0.0, 0.1], "power": [[1.0, 1.0]], "count": 0, "latent_size": [8, 8]},
        {"freqs": [0.0, 0.1], "count": 1, "latent_size": [8, 8]},
        {"format": "other", "freqs": [0.0, 0.1], "power": [[1, 1]], "count": 1},
        [1, 2],
    ],
)
def test_spectrum_from_json_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        SpectrumStats.from_json(bad)


def test_rapsd_rejects_bad_latents():
    with pytest.raises(ValueError):
        rapsd(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError):
        rapsd(torch.full((1, 1, 4, 4), float("nan")))


# --- bounds ------------------------------------------------------------------


@pytest.mark.parametrize("snr_low,snr_high", [(0.1, 10.0), (0.01, 100.0), (0.5, 2.0)])
def test_bounds_match_closed_form_for_power_law(snr_low, snr_high):
    amplitude, alpha, n = 2.0, 2.5, 32
    st = _power_law(n, amplitude, alpha)
    f_lo, f_hi = 1 / n, max(st.freqs)
    p_max, p_min = amplitude * f_lo**-alpha, amplitude * f_hi**-alpha
    s_min, s_max = schedule_bounds(st, "flow", snr_low=snr_low, snr_high=snr_high)
    assert s_max == pytest.approx(1 / (1 + math.sqrt(snr_low / p_max)), rel=1e-12)
    assert s_min == pytest.approx(1 / (1 + math.sqrt(snr_high / p_min)), rel=1e-12)
    # and the SNR at each bound is the threshold, by the formula
    assert (1 - s_max) ** 2 * p_max / s_max**2 == pytest.approx(snr_low, rel=1e-9)
    assert (1 - s_min) ** 2 * p_min / s_min**2 == pytest.approx(snr_high, rel=1e-9)
    v_min, v_max = schedule_bounds(st, "ve", snr_low=snr_low, snr_high=snr_high)
    assert v_max == pytest.approx(math.sqrt(p_max / snr_low), rel=1e-12)
    assert v_min == pytest.approx(math.sqrt(p_min / snr_high), rel=1e-12)
    assert p_max / v_max**2 == pytest.approx(snr_low, rel=1e-9)


@pytest.mark.parametrize("param", ["flow", "ve", "eps", "v"])
def test_thresholds_move_bounds_the_right_way(field_stats, param):
    base_min, base_max = schedule_bounds(field_stats, param)
    # stricter "drowned" threshold -> start higher
    _, higher_max = schedule_bounds(field_stats, param, snr_low=DEFAULT_SNR_LOW / 10)
    assert higher_max > base_max
    # stricter "clean" threshold -> stop lower
    lower_min, _ = schedule_bounds(field_stats, param, snr_high=DEFAULT_SNR_HIGH * 10)
    assert lower_min < base_min
    # and the range is proper
    assert 0 < base_min < base_max


def test_bounds_ignore_dc():
    st = _power_law()
    st2 = SpectrumStats(
        freqs=st.freqs,
        power=[[1e6] + row[1:] for row in st.power],
        spread=st.spread,
        count=st.count,
        latent_size=st.latent_size,
        counts=st.counts,
    )
    assert schedule_bounds(st, "flow") == schedule_bounds(st2, "flow")


def test_bounds_reject_bad_thresholds(field_stats):
    for kw in ({"snr_low": 0.0}, {"snr_high": -1.0}, {"snr_low": float("nan")}):
        with pytest.raises(ValueError):
            schedule_bounds(field_stats, "flow", **kw)
    with pytest.raises(ValueError):
        schedule_bounds(field_stats, "edm")


def test_log_snr_offset_round_trip():
    s = torch.tensor([0.01, 0.3, 0.5, 0.99], dtype=torch.float64)
    for param in ("flow", "ve"):
        back = sigma_from_log_snr_offset(log_snr_offset(s, param), param)
        torch.testing.assert_close(back, s, rtol=1e-12, atol=0)
    assert float(log_snr_offset(0.5, "flow")) == 0.0  # flow: SNR = P at s = 1/2


# --- schedules -----------------------------------------------------------------


def _check_sigmas(sig, steps, lo, hi):
    assert sig.dtype == torch.float32 and sig.ndim == 1 and sig.numel() == steps + 1
    assert bool(torch.isfinite(sig).all())
    assert float(sig[-1]) == 0.0
    assert bool((sig[1:] < sig[:-1]).all()), sig
    assert float(sig[:-1].min()) >= lo * (1 - 1e-6) and float(sig[0]) <= hi * (1 + 1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8, 32, 100])
@pytest.mark.parametrize(
    "param,rng", [("flow", FLOW_RANGE), ("flow", SD3_RANGE), ("ve", SD15_RANGE)]
)
def test_sigmas_descending_finite_in_range(field_stats, variant, steps, param, rng):
    sig = spectral_sigmas(
        field_stats, steps, parameterization=param, variant=variant, sigma_range=rng
    )
    _check_sigmas(sig, steps, *rng)


def test_sigmas_start_and_stop_at_the_bounds(field_stats):
    steps = REFERENCE_STEPS  # thresholds at their reference values
    s_min, s_max = schedule_bounds(field_stats, "flow")
    sig = spectral_sigmas(field_stats, steps, sigma_range=FLOW_RANGE, start="spectral bound")
    assert float(sig[0]) == pytest.approx(s_max, rel=1e-6)
    assert float(sig[-2]) == pytest.approx(s_min, rel=1e-5)
    assert s_max < 1.0  # tight: starts below the model's sigma_max


@pytest.mark.parametrize(
    "param,rng", [("flow", FLOW_RANGE), ("flow", SD3_RANGE), ("ve", SD15_RANGE)]
)
def test_default_start_is_the_model_maximum(field_stats, param, rng):
    s_min, _ = schedule_bounds(field_stats, param)
    sig = spectral_sigmas(field_stats, REFERENCE_STEPS, parameterization=param, sigma_range=rng)
    assert DEFAULT_START == "model maximum"
    assert float(sig[0]) == pytest.approx(rng[1], rel=1e-6)
    assert float(sig[-2]) == pytest.approx(max(s_min, rng[0]), rel=1e-5)
    _check_sigmas(sig, REFERENCE_STEPS, *rng)
    bound = spectral_sigmas(
        field_stats,
        REFERENCE_STEPS,
        parameterization=param,
        sigma_range=rng,
        start="spectral bound",
    )
    assert float(bound[0]) < float(sig[0])  # the bound is tight: below the model's top


def test_unknown_start_raises(field_stats):
    with pytest.raises(ValueError, match="start must be one of"):
        spectral_sigmas(field_stats, 8, start="top")


def test_sigmas_clip_to_the_model_range(field_stats):
    s_min, s_max = schedule_bounds(field_stats, "flow")
    rng = (0.2, 0.8)
    assert s_min < rng[0] and s_max > rng[1]
    sig = spectral_sigmas(field_stats, 8, sigma_range=rng)
    _check_sigmas(sig, 8, *rng)
    assert float(sig[0]) == pytest.approx(0.8) and float(sig[-2]) == pytest.approx(0.2)


def test_sigmas_outside_the_model_range_raise(field_stats):
    with pytest.raises(ValueError, match="does not overlap"):
        spectral_sigmas(field_stats, 8, parameterization="ve", sigma_range=(100.0, 200.0))


def test_thresholds_scale_with_steps():
    assert default_thresholds(REFERENCE_STEPS) == (DEFAULT_SNR_LOW, DEFAULT_SNR_HIGH)
    lo4, hi4 = default_thresholds(4)
    lo32, hi32 = default_thresholds(32)
    assert lo4 > DEFAULT_SNR_LOW > lo32 and hi4 < DEFAULT_SNR_HIGH < hi32
    assert lo32 == pytest.approx(DEFAULT_SNR_LOW / 16) and hi32 == pytest.approx(160.0)
    lo1, hi1 = default_thresholds(1)
    assert lo1 <= 1.0 <= hi1


def test_more_steps_widen_the_range(field_stats):
    a = spectral_sigmas(field_stats, 4, sigma_range=FLOW_RANGE, start="spectral bound")
    b = spectral_sigmas(field_stats, 32, sigma_range=FLOW_RANGE, start="spectral bound")
    assert float(b[0]) > float(a[0]) and float(b[-2]) < float(a[-2])


def test_fixed_thresholds_override(field_stats):
    s_min, s_max = schedule_bounds(field_stats, "flow", snr_low=0.05, snr_high=20.0)
    sig = spectral_sigmas(field_stats, 5, snr_low=0.05, snr_high=20.0, start="spectral bound")
    assert float(sig[0]) == pytest.approx(s_max, rel=1e-6)
    assert float(sig[-2]) == pytest.approx(s_min, rel=1e-5)


def test_flat_spectrum_gives_linear_flow_schedule():
    _, centres, counts = radial_bins(16, 16)
    st = SpectrumStats(
        freqs=centres.tolist(),
        power=[[1.0] * len(centres)],
        spread=[[0.0] * len(centres)],
        count=4,
        latent_size=(16, 16),
        counts=counts.tolist(),
    )
    for variant in VARIANTS:
        sig = spectral_sigmas(st, 6, variant=variant, snr_low=0.01, snr_high=100.0).double()
        diffs = sig[:-1][:-1] - sig[:-1][1:]
        # 5e-3: the progress's small uniform-in-log-SNR share bends it near sigma 1
        assert float(diffs.max() - diffs.min()) < 5e-3 * float(diffs.mean()), (variant, sig)


def test_variants_differ(field_stats):
    out = {v: spectral_sigmas(field_stats, 8, variant=v) for v in VARIANTS}
    for a in VARIANTS:
        for b in VARIANTS:
            if a < b:
                assert not torch.equal(out[a], out[b])
    # the power variant spends more steps at high sigma (strong low frequencies)
    assert float(out["power"][3]) > float(out["frequency"][3])


def test_progress_is_monotone(field_stats):
    s = torch.linspace(0.999, 0.001, 200, dtype=torch.float64)
    for variant in VARIANTS:
        prog = spectral_progress(field_stats, s, variant=variant)
        assert bool((prog[1:] > prog[:-1]).all())
        assert 0 < float(prog[0]) < float(prog[-1]) < 1


def test_equal_progress_per_step(field_stats):
    sig = spectral_sigmas(field_stats, 8, variant="mix").double()[:-1]
    prog = spectral_progress(field_stats, sig, variant="mix")
    inc = prog[1:] - prog[:-1]
    assert float(inc.max() - inc.min()) < 0.02 * float(inc.mean())


# --- per-seed schedules -------------------------------------------------------


def test_same_seed_same_schedule_and_seeds_differ(field_stats):
    a = spectral_sigmas(field_stats, 8, seed=7)
    b = spectral_sigmas(field_stats, 8, seed=7)
    c = spectral_sigmas(field_stats, 8, seed=8)
    mean = spectral_sigmas(field_stats, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, mean)
    _check_sigmas(a, 8, 0.0, 1.0)
    _check_sigmas(c, 8, 0.0, 1.0)


def test_zero_spread_ignores_the_seed():
    st = _power_law(spread=0.0)
    mean = spectral_sigmas(st, 8)
    assert torch.equal(spectral_sigmas(st, 8, seed=1), mean)
    assert torch.equal(spectral_sigmas(st, 8, seed=2), mean)
    st2 = _power_law(spread=0.3)
    assert not torch.equal(spectral_sigmas(st2, 8, seed=1), spectral_sigmas(st2, 8, seed=2))


def test_seed_spread_scales_the_variation():
    small = _power_law(spread=0.05)
    large = _power_law(spread=0.5)
    base = spectral_sigmas(small, 8).double()

    def dev(st):
        return sum(
            float((spectral_sigmas(st, 8, seed=k).double() - base).abs().max()) for k in range(8)
        )

    assert dev(large) > 3 * dev(small) > 0


# --- denoise --------------------------------------------------------------------


def test_denoise_keeps_the_tail_like_comfyui(field_stats):
    full = spectral_sigmas(field_stats, int(6 / 0.6), sigma_range=FLOW_RANGE)
    part = spectral_sigmas(field_stats, 6, sigma_range=FLOW_RANGE, denoise=0.6)
    assert part.numel() == 7
    torch.testing.assert_close(part, full[-7:])
    assert spectral_sigmas(field_stats, 6, denoise=0.0).numel() == 0
    torch.testing.assert_close(
        spectral_sigmas(field_stats, 6, denoise=1.0), spectral_sigmas(field_stats, 6)
    )


@pytest.mark.parametrize(
    "kw",
    [
        {"steps": 0},
        {"steps": 2.5},
        {"steps": 4, "variant": "nope"},
        {"steps": 4, "parameterization": "edm"},
        {"steps": 4, "sigma_range": (1.0, 0.5)},
        {"steps": 4, "denoise": float("nan")},
    ],
)
def test_spectral_sigmas_rejects_bad_arguments(field_stats, kw):
    with pytest.raises(ValueError):
        spectral_sigmas(field_stats, **kw)
