"""The exact-denoiser testbed and its FD measure (host-free, CPU, seconds).

Sizes: a model trained at M = 32, run at M and at M/2, 4 channels, 128
samples; FD noise floor ~5e-4 at that count.
"""

import math

import pytest
import torch

from noise_calibration.noisecal.testing.metrics import fd_noise_floor, frechet_distance, gap_closed
from noise_calibration.noisecal.testing.testbed import (
    ExactDenoiser,
    FieldSpectrum,
    euler_sample,
    flow_sigmas,
    sample_field,
)

SPEC = FieldSpectrum(f0=3.0, alpha=2.5, channels=4)
M = 32
N = M // 2
COUNT = 128
STEPS = (10, 50, 200)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# --- spectrum and field ----------------------------------------------------


@pytest.mark.parametrize("n", [M, N, 9])
def test_power_normalized_and_symmetric(n):
    p = SPEC.power(n)
    assert p.shape == (n, n) and p.dtype == torch.float64
    assert float(p.mean()) == pytest.approx(1.0, rel=1e-12)
    # P(k) == P(-k): filtering a real field keeps it real.
    neg = torch.roll(torch.flip(p, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
    torch.testing.assert_close(p, neg, rtol=0, atol=0)
    # Red spectrum: DC carries the most power.
    assert float(p[0, 0]) == float(p.max())


def test_assumed_power_variants():
    for variant in ("pixel", "image"):
        den = ExactDenoiser(SPEC, M, variant)
        torch.testing.assert_close(den.assumed_power(M), SPEC.power(M))
        assert den.native(N).assumed_power(N).equal(SPEC.power(N))
    z_m = SPEC.normalizer(M)
    k = torch.fft.fftfreq(N, dtype=torch.float64) * N
    f = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    pixel = ExactDenoiser(SPEC, M, "pixel").assumed_power(N)
    image = ExactDenoiser(SPEC, M, "image").assumed_power(N)
    torch.testing.assert_close(pixel, SPEC.density(f * M / N) / z_m)
    torch.testing.assert_close(image, SPEC.density(f) / z_m)
    # A convolution trained at M keeps about unit variance at N; the "image"
    # model expects too much power at every frequency (Z_N > Z_M).
    assert float(pixel.mean()) == pytest.approx(1.0, abs=0.1)
    assert bool((image > SPEC.power(N)).all())
    with pytest.raises(ValueError, match="variant"):
        ExactDenoiser(SPEC, M, "patch")


def test_assumed_power_above_training():
    """N = 2M (docs/design.md section 5): "pixel" keeps the M field's statistics per
    pixel (bin k at N is bin k/2 at M, so the model expects twice as many features per
    side); "image" keeps the spectrum per image with M's normalization, so it expects
    too little power at every frequency (Z_2M < Z_M)."""
    n = 2 * M
    pixel = ExactDenoiser(SPEC, M, "pixel").assumed_power(n)
    image = ExactDenoiser(SPEC, M, "image").assumed_power(n)
    torch.testing.assert_close(pixel[::2, ::2], SPEC.power(M))
    assert float(pixel.mean()) == pytest.approx(1.0, abs=0.1)
    ratio = SPEC.normalizer(n) / SPEC.normalizer(M)
    assert ratio < 1
    torch.testing.assert_close(image, SPEC.power(n) * ratio)
    # the native model at 2M is the truth there, for both variants
    for variant in ("pixel", "image"):
        assert ExactDenoiser(SPEC, M, variant).native(n).assumed_power(n).equal(SPEC.power(n))


def test_sample_field_deterministic():
    a = sample_field(SPEC, N, 3, _gen(7))
    b = sample_field(SPEC, N, 3, _gen(7))
    assert a.shape == (3, SPEC.channels, N, N) and a.dtype == torch.float32
    assert a.equal(b)
    assert not a.equal(sample_field(SPEC, N, 3, _gen(8)))


@pytest.mark.parametrize("n", [M, N])
def test_field_variance_and_spectrum(n):
    x = sample_field(SPEC, n, COUNT, _gen(11))
    assert float(x.var()) == pytest.approx(1.0, rel=0.03)
    floor = fd_noise_floor(SPEC.power(n), COUNT, SPEC.channels)
    fd = frechet_distance(x, SPEC.power(n))
    wrong = frechet_distance(x, FieldSpectrum(f0=3.0, alpha=2.0).power(n))
    print(f"\nfield n={n}: FD {fd:.3g}, floor {floor:.3g}, vs alpha=2.0 spectrum {wrong:.3g}")
    assert 0.4 * floor < fd < 2.5 * floor
    # The same measure sees a modest spectral error.
    assert wrong > 10 * floor


# --- denoiser --------------------------------------------------------------


def test_denoiser_edges_and_velocity_identity():
    den = ExactDenoiser(SPEC, M)
    x = sample_field(SPEC, M, 4, _gen(2))
    torch.testing.assert_close(den.denoise(x, 0.0), x)
    assert den.denoise(x, 1.0).abs().max() == 0
    torch.testing.assert_close(den.velocity(x, 0.0), -x)  # eps is independent of x0
    torch.testing.assert_close(den.velocity(x, 1.0), x)
    assert torch.isfinite(den.velocity(x, 1e-12)).all()
    # Per-sample levels, and v = (x - x0_hat) / s away from 0.
    s = torch.tensor([0.1, 0.3, 0.6, 0.9])
    v = den.velocity(x, s)
    x0_hat = den.denoise(x, s)
    torch.testing.assert_close(x - s.reshape(-1, 1, 1, 1) * v, x0_hat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v[1:2], den.velocity(x[1:2], 0.3))
    with pytest.raises(ValueError, match="levels"):
        den.velocity(x, torch.tensor([0.1, 0.2]))


def _expected_error(p, s_true, s_cond):
    """Per-element E||h x_s - x0||^2 of the Wiener filter for s_cond applied at s_true."""
    h = (1 - s_cond) * p / ((1 - s_cond) ** 2 * p + s_cond**2)
    return float(((h * (1 - s_true) - 1) ** 2 * p + h**2 * s_true**2).mean())


@pytest.mark.parametrize("s_true", [0.2, 0.5, 0.8])
def test_one_step_error_minimal_at_true_level(s_true):
    den = ExactDenoiser(SPEC, M)
    g = _gen(3)
    x0 = sample_field(SPEC, M, 64, g)
    eps = torch.randn(x0.shape, generator=g)
    x = (1 - s_true) * x0 + s_true * eps
    offsets = (-0.05, -0.02, 0.0, 0.02, 0.05)
    # Same x0 and eps for every candidate, as the calibration search does.
    err = {d: float((den.denoise(x, s_true + d) - x0).square().mean()) for d in offsets}
    # What a sampler forms from the velocity: denoised = x - s_true * v(s_cond).
    err_v = {
        d: float((x - s_true * den.velocity(x, s_true + d) - x0).square().mean()) for d in offsets
    }
    print(f"\ns={s_true}: denoise err {err}\n        velocity err {err_v}")
    for d in offsets:
        if d:
            assert err[0.0] < err[d]
            assert err_v[0.0] < err_v[d]
    assert err[0.0] == pytest.approx(_expected_error(SPEC.power(M), s_true, s_true), rel=0.03)


# --- sampler ---------------------------------------------------------------


def test_flow_sigmas():
    s = flow_sigmas(4)
    torch.testing.assert_close(s, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    shifted = flow_sigmas(4, shift=3.0)
    assert float(shifted[0]) == 1.0 and float(shifted[-1]) == 0.0
    assert float(shifted[2]) == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))
    assert bool((shifted[1:-1] > s[1:-1]).all())
    with pytest.raises(ValueError):
        flow_sigmas(0)


def test_euler_conditioning_hook():
    den = ExactDenoiser(SPEC, M)
    noise = torch.randn((2, SPEC.channels, N, N), generator=_gen(5))
    sigmas = flow_sigmas(8)
    plain = euler_sample(den, noise, sigmas)
    torch.testing.assert_close(euler_sample(den, noise, sigmas, lambda s: s), plain)
    seen = []

    def shifted(sigma):
        seen.append(sigma)
        return min(1.0, sigma + 0.1)

    moved = euler_sample(den, noise, sigmas, shifted)
    assert seen == pytest.approx(sigmas[:-1].tolist())
    assert not torch.allclose(moved, plain)
    # One step from sigma = 1 to 0 with the true level lands on the posterior
    # mean of pure noise, which is 0.
    assert euler_sample(den, noise, flow_sigmas(1)).abs().max() < 1e-6


@pytest.fixture(scope="module")
def euler_fd():
    """FD of Euler samples per configuration and step count, plus the floors."""
    configs = {
        "N=M": (ExactDenoiser(SPEC, M, "pixel"), M),
        "N=M/2 pixel": (ExactDenoiser(SPEC, M, "pixel"), N),
        "N=M/2 image": (ExactDenoiser(SPEC, M, "image"), N),
        "N=M/2 native": (ExactDenoiser(SPEC, M, "pixel").native(N), N),
    }
    table, floors = {}, {}
    for name, (den, n) in configs.items():
        noise = torch.randn((COUNT, SPEC.channels, n, n), generator=_gen(1))
        power = SPEC.power(n)
        floors[name] = fd_noise_floor(power, COUNT, SPEC.channels)
        table[name] = [
            frechet_distance(euler_sample(den, noise, flow_sigmas(k)), power) for k in STEPS
        ]
    print(f"\nEuler FD, M={M}, {COUNT} samples x {SPEC.channels} channels")
    print(f"{'config':<14}" + "".join(f"{k:>10d}" for k in STEPS) + f"{'floor':>10}")
    for name, row in table.items():
        print(f"{name:<14}" + "".join(f"{v:10.3g}" for v in row) + f"{floors[name]:10.3g}")
    return table, floors


def test_euler_at_training_resolution_converges_to_floor(euler_fd):
    table, floors = euler_fd
    fd = table["N=M"]
    assert fd[0] > fd[1] > fd[2]
    assert fd[2] < 2 * floors["N=M"]
    # The native model at N is the same construction: it also reaches the floor.
    assert table["N=M/2 native"][2] < 2 * floors["N=M/2 native"]


@pytest.mark.parametrize("variant", ["pixel", "image"])
def test_euler_below_training_resolution_stays_off(euler_fd, variant):
    table, floors = euler_fd
    floor = floors[f"N=M/2 {variant}"]
    for fd in table[f"N=M/2 {variant}"]:
        assert fd > 10 * floor


# --- metrics ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, n, count",
    [
        (SPEC, 16, 16),
        # DC-dominated, few samples, odd and even n: the self-conjugate
        # bins (real-valued, half the degrees of freedom) carry the floor.
        (FieldSpectrum(f0=0.5, alpha=4.0, channels=1), 8, 2),
        (FieldSpectrum(f0=0.5, alpha=4.0, channels=1), 9, 2),
    ],
)
def test_noise_floor_matches_monte_carlo(spec, n, count):
    reps = 1500
    power = spec.power(n)
    x = sample_field(spec, n, reps * count, _gen(13))
    groups = x.reshape(reps, count, spec.channels, n, n)
    mc = sum(frechet_distance(grp, power) for grp in groups) / reps
    floor = fd_noise_floor(power, count, spec.channels)
    print(f"\nfloor n={n} count={count}: closed form {floor:.4g}, Monte Carlo {mc:.4g}")
    assert mc == pytest.approx(floor, rel=0.15)


def test_noise_floor_closed_form():
    # One real frequency (n=1), one sample, one channel: 2P(1 - sqrt(2/pi)).
    p = torch.full((1, 1), 2.0, dtype=torch.float64)
    assert fd_noise_floor(p, 1, 1) == pytest.approx(4 * (1 - math.sqrt(2 / math.pi)))
    # Large d: 2P(1 - E[sqrt(X/d)]) ~ P / (2d); on a 3 x 3 grid only DC is
    # self-conjugate (d = count), the other 8 bins have d = 2 * count.
    p = torch.ones((3, 3), dtype=torch.float64)
    expected = (8 / (2 * 20_000) + 1 / (2 * 10_000)) / 9
    assert fd_noise_floor(p, 10_000, 1) == pytest.approx(expected, rel=1e-3)
    assert math.isfinite(fd_noise_floor(p, 10**7, 4))


def test_frechet_distance_shapes():
    p = SPEC.power(N)
    assert frechet_distance(torch.zeros(2, 1, N, N), p) == pytest.approx(float(p.mean()))
    with pytest.raises(ValueError, match="does not match"):
        frechet_distance(torch.zeros(2, 1, N, N), SPEC.power(M))


def test_gap_closed():
    assert gap_closed(0.5, 0.1, 0.0) == pytest.approx(0.8)
    assert gap_closed(0.05, 0.01, 0.01) == pytest.approx(1.0)
    assert gap_closed(0.05, 0.05, 0.01) == 0.0
    assert gap_closed(0.05, 0.005, 0.01) == pytest.approx(1.125)  # beats native
    assert gap_closed(0.05, 0.09, 0.01) == pytest.approx(-1.0)  # made it worse
    with pytest.raises(ValueError, match="no gap to close"):
        gap_closed(0.01, 0.005, 0.01)
    with pytest.raises(ValueError, match="no gap to close"):
        gap_closed(0.01, 0.005, 0.02)
