"""The mixture testbed, its exact denoiser and the per-sample measures (host-free, CPU).

Sizes: M = 16, 4 channels, 128 samples: a few seconds.
"""

import pytest
import torch

from noise_calibration.noisecal.testing import per_sample
from noise_calibration.noisecal.testing.mixture import (
    MIXTURES,
    FieldMixture,
    MixtureDenoiser,
    classify,
    gaussian_denoise,
    sample_mixture,
)
from noise_calibration.noisecal.testing.testbed import (
    ExactDenoiser,
    FieldSpectrum,
    euler_sample,
    flow_sigmas,
)

M = 16
COUNT = 128
LEVELS = (0.05, 0.2, 0.4, 0.6, 0.8)
# near s = 1 the responsibilities are the weights and the mean-spectrum Wiener
# filter (the best linear estimator) is within sampling noise of the optimum
HIGH_LEVELS = (0.9, 0.95)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module", params=sorted(MIXTURES))
def mix(request):
    return MIXTURES[request.param]


def test_sampler_labels_and_powers(mix):
    x, labels = sample_mixture(mix, M, 512, _gen(1))
    assert x.shape == (512, mix.channels, M, M) and labels.shape == (512,)
    share = torch.bincount(labels, minlength=len(mix.weights)).double() / 512
    torch.testing.assert_close(share, mix.probs, atol=0.06, rtol=0)
    # per-pixel variance of each component is its amplitude squared
    for k, amp in enumerate(mix.amplitudes):
        var = float(x[labels == k].double().var())
        assert var == pytest.approx(amp**2, rel=0.25)
    # the components are told apart by the exact likelihood on clean samples
    assert float((classify(mix, x) == labels).double().mean()) > 0.98


def test_validation():
    sp = FieldSpectrum(3.0, 2.5, 4)
    with pytest.raises(ValueError):
        FieldMixture((sp,), (1.0, 2.0), (1.0,))
    with pytest.raises(ValueError):
        FieldMixture((sp, FieldSpectrum(3.0, 2.5, 3)), (1.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError):
        MixtureDenoiser(MIXTURES["two"], M, "bogus")


def test_exact_beats_every_gaussian_filter_at_every_level(mix):
    x0, _ = sample_mixture(mix, M, COUNT, _gen(2))
    eps = torch.randn(x0.shape, generator=_gen(3))
    den = MixtureDenoiser(mix, M)
    singles = [*mix.component_powers(M), mix.power(M)]
    for s in LEVELS:
        xs = (1 - s) * x0 + s * eps
        exact = float((den.denoise(xs, s) - x0).square().mean())
        for p in singles:
            assert exact < float((gaussian_denoise(xs, s, p) - x0).square().mean()), s
    for s in HIGH_LEVELS:
        xs = (1 - s) * x0 + s * eps
        exact = float((den.denoise(xs, s) - x0).square().mean())
        for p in singles:
            assert exact < 1.001 * float((gaussian_denoise(xs, s, p) - x0).square().mean()), s


def test_ends_and_velocity(mix):
    x0, _ = sample_mixture(mix, M, 8, _gen(4))
    eps = torch.randn(x0.shape, generator=_gen(5))
    den = MixtureDenoiser(mix, M)
    torch.testing.assert_close(den.denoise(x0, 1e-4), x0, atol=1e-3, rtol=0)
    assert float(den.denoise(eps, 1 - 1e-4).abs().max()) < 1e-3
    s = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.4, 0.6])
    xs = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
    # velocity is (x - denoised) / s, per-sample levels
    v = den.velocity(xs, s)
    torch.testing.assert_close(
        v, (xs - den.denoise(xs, s)) / s[:, None, None, None], atol=1e-4, rtol=1e-4
    )


def test_mismatch_reaches_responsibilities():
    mix = MIXTURES["two"]
    x, _ = sample_mixture(mix, M // 2, 16, _gen(6))
    native = MixtureDenoiser(mix, M // 2)
    for variant in ("pixel", "image"):
        den = MixtureDenoiser(mix, M, variant)
        assert den.native(M // 2).assumed_powers(M // 2).equal(native.assumed_powers(M // 2))
        assert not den.assumed_powers(M // 2).equal(native.assumed_powers(M // 2))
        assert not torch.allclose(den.responsibilities(x, 0.5), native.responsibilities(x, 0.5))


def test_mismatch_above_training():
    """At N = 2M every component is mismatched as the field testbed's (docs/design.md
    section 5): each component's assumed power is its field's, times its amplitude^2."""
    mix, n = MIXTURES["three"], 2 * M
    x, _ = sample_mixture(mix, n, 8, _gen(7))
    for variant in ("pixel", "image"):
        den = MixtureDenoiser(mix, M, variant)
        powers = den.assumed_powers(n)
        for k, (sp, amp) in enumerate(zip(mix.spectra, mix.amplitudes, strict=True)):
            single = ExactDenoiser(sp, M, variant).assumed_power(n)
            torch.testing.assert_close(powers[k], amp * amp * single)
        native = den.native(n)
        assert native.assumed_powers(n).equal(mix.component_powers(n))
        assert not torch.allclose(den.responsibilities(x, 0.5), native.responsibilities(x, 0.5))
    image = MixtureDenoiser(mix, M, "image").assumed_powers(n)
    assert bool((image < mix.component_powers(n)).all())  # too little power at 2M


def test_exact_sampler_matches_per_sample_statistics(mix):
    den = MixtureDenoiser(mix, M)
    noise = torch.randn((COUNT, mix.channels, M, M), generator=_gen(7))
    out = euler_sample(den, noise, flow_sigmas(100))
    true, _ = sample_mixture(mix, M, COUNT, _gen(8))
    fl = per_sample.floors(mix, M, COUNT, seed=9)
    assert per_sample.band_power_swd(out, true) < 3 * fl["swd"]
    assert per_sample.component_tv(mix, out) < 3 * fl["tv"] + 0.05


def test_per_sample_measures_floor_and_one_component(mix):
    a, _ = sample_mixture(mix, M, COUNT, _gen(10))
    b, _ = sample_mixture(mix, M, COUNT, _gen(11))
    fl = per_sample.floors(mix, M, COUNT, seed=12)
    assert fl["swd"] > 0 and fl["tv"] >= 0 and fl["fd"] > 0
    assert per_sample.band_power_swd(a, b) < 3 * fl["swd"]
    assert per_sample.component_tv(mix, a) < 3 * fl["tv"] + 0.05
    # a set from the first component only: weights far off, spectra of one kind
    one = FieldMixture(mix.spectra[:1], mix.amplitudes[:1], (1.0,))
    c, _ = sample_mixture(one, M, COUNT, _gen(13))
    assert per_sample.band_power_swd(c, b) > 3 * fl["swd"]
    tv = per_sample.component_tv(mix, c)
    assert tv == pytest.approx(1 - float(mix.probs[0]), abs=0.02) and tv > 5 * fl["tv"]


# --- as a ComfyUI MODEL -------------------------------------------------------


def test_mixture_model_through_ksampler(pack_module):
    """The wrapper takes the mixture denoiser: KSampler at N = M with many steps
    reproduces the components' proportions (few Euler steps do not: the flow is
    stiff in which component a sample joins), and the fingerprint tells it from
    the field testbed."""
    testbed_model = pack_module("noisecal_host.testing.testbed_model")
    sampling = pack_module("noisecal_host.testing.sampling")
    fingerprint = pack_module("noisecal_host.fingerprint")
    mix = pack_module("noisecal.testing.mixture").MIXTURES["two"]
    model = testbed_model.make_mixture_model(mix, M, "pixel")
    other = testbed_model.make_mixture_model(mix, M, "image")
    field = testbed_model.make_testbed_model(mix.spectra[0], M, "pixel")
    keys = {fingerprint.checkpoint_key(m) for m in (model, other, field)}
    assert len(keys) == 3
    latent = sampling.empty_latent(model, M, M, COUNT)
    cond = testbed_model.make_testbed_conditioning(COUNT)
    out = sampling.ksample(model, latent, cond, seed=3, steps=100, sampler_name="euler")
    fl = per_sample.floors(mix, M, COUNT, seed=14)
    assert per_sample.component_tv(mix, out) < 3 * fl["tv"] + 0.05
    assert (
        per_sample.band_power_swd(out, sample_mixture(mix, M, COUNT, _gen(15))[0]) < 3 * fl["swd"]
    )
