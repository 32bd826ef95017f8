"""Noise Level Correction math (host-free): the table, the map, the calibration."""

import math

import pytest
import torch

from noise_calibration.noisecal import calibration_record, checkpoint_key, errors
from noise_calibration.noisecal.correction import CorrectionMap
from noise_calibration.noisecal.correction_search import calibrate_correction, marginal_power
from noise_calibration.noisecal.correction_table import CorrectionTable
from noise_calibration.noisecal.testing.metrics import frechet_distance
from noise_calibration.noisecal.testing.testbed import (
    ExactDenoiser,
    FieldSpectrum,
    flow_sigmas,
    sample_field,
)

SPECTRUM = FieldSpectrum(f0=3.0, alpha=2.5, channels=4)


def test_table_is_linear_in_log_sigma_and_holds_its_ends():
    table = CorrectionTable([1.0, 0.1, 0.01], [0.2, -0.1, 0.05])
    sigma = torch.tensor([2.0, 1.0, math.sqrt(0.1), 0.1, 0.001])
    expected = torch.tensor([0.2, 0.2, 0.05, -0.1, 0.05], dtype=torch.float64)
    assert torch.allclose(table(sigma), expected, atol=1e-12)
    assert CorrectionTable.from_json(table.to_json()).r == table.r


@pytest.mark.parametrize(
    "sigmas, r, message",
    [
        ([1.0, 0.5], [0.1], "one r per sigma"),
        ([0.5, 1.0], [0.1, 0.1], "descending"),
        ([1.0, 0.0], [0.1, 0.1], "> 0"),
        ([1.0, 0.5], [0.1, float("nan")], "finite"),
        ([1.0, 0.5], [0.1, 1.5], r"\[-1, 1\]"),
    ],
)
def test_table_rejects_bad_input(sigmas, r, message):
    with pytest.raises(ValueError, match=message):
        CorrectionTable(sigmas, r)


def test_map_strength_range_and_limits():
    table = CorrectionTable([1.0, 0.01], [-0.2, -0.2])
    sigma = torch.tensor([1.0, 0.5, 0.1, 0.0])
    full = CorrectionMap([table], [1.0])
    assert torch.allclose(full(sigma), sigma * 0.8)
    half = CorrectionMap([table], [1.0], strength=0.5)
    assert torch.allclose(half(sigma), sigma * 0.9)
    assert CorrectionMap([table], [1.0], strength=0.0)(sigma) is sigma
    ranged = CorrectionMap([table], [1.0], sigma_range=(0.2, 0.6))
    assert torch.allclose(ranged(sigma), torch.tensor([1.0, 0.4, 0.1, 0.0]))
    up = CorrectionMap([CorrectionTable([1.0], [0.5])], [1.0], max_level=1.0)
    assert torch.allclose(up(torch.tensor([1.0, 0.5])), torch.tensor([1.0, 0.75]))
    blend = CorrectionMap([table, CorrectionTable([1.0], [0.2])], [0.25, 0.75])
    assert torch.allclose(blend(torch.tensor([0.5])), torch.tensor([0.5 * 1.1]))
    with pytest.raises(ValueError, match="min <= max"):
        CorrectionMap([table], [1.0], sigma_range=(0.6, 0.2))


def test_marginal_power():
    data = torch.tensor([4.0, 0.25])
    assert torch.allclose(marginal_power(data, 0.5, "flow"), torch.tensor([1.25, 0.3125]))
    assert torch.allclose(marginal_power(data, 2.0, "ve"), torch.tensor([8.0, 4.25]))


def denoiser_for(model):
    def denoise(x, sigma_hat):
        s = sigma_hat.to(x.dtype).reshape(-1, 1, 1, 1)
        return x - s * model.velocity(x, sigma_hat)

    return denoise


def sample(model, noise, sigmas, correction=None, sampler="euler"):
    """ComfyUI's euler / heun with the denoiser evaluated at correction(sigma)."""
    level = (lambda s: s) if correction is None else (lambda s: float(correction(torch.tensor(s))))

    def denoised(x, s):
        hat = level(s)
        return x - hat * model.velocity(x, hat)

    x = noise * float(sigmas[0])
    for a, b in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        d = (x - denoised(x, a)) / a
        nxt = x + (b - a) * d
        if sampler == "heun" and b > 0:
            nxt = x + (b - a) * (d + (nxt - denoised(nxt, b)) / b) / 2
        x = nxt
    return x


def fd_pair(model, n, steps, sampler, x0_count=32):
    x0 = sample_field(SPECTRUM, n, x0_count, torch.Generator().manual_seed(1))
    sigmas = flow_sigmas(steps, 3.0)
    result = calibrate_correction(denoiser_for(model), x0, sigmas, max_batch=512, sampler=sampler)
    correction = CorrectionMap([result.table()], [1.0])
    noise = torch.randn(256, 4, n, n, generator=torch.Generator().manual_seed(7))
    power = SPECTRUM.power(n)
    plain = frechet_distance(sample(model, noise, sigmas, None, sampler), power)
    nlc = frechet_distance(sample(model, noise, sigmas, correction, sampler), power)
    return plain, nlc, result


def test_correction_helps_euler_few_steps_at_the_training_resolution():
    plain, nlc, result = fd_pair(ExactDenoiser(SPECTRUM, 16), 16, 6, "euler")
    assert nlc < 0.8 * plain
    # the calibration's own per-step distance went down where it moved r
    moved = [i for i, r in enumerate(result.r) if r != 0]
    assert moved and all(result.error_after[i] < result.error_before[i] for i in moved)
    assert result.nfe > 0 and len(result.r) == 6 == len(result.sigmas)


def test_correction_closes_most_of_a_resolution_mismatch():
    model = ExactDenoiser(SPECTRUM, 16, "image")
    plain, nlc, result = fd_pair(model, 8, 8, "euler")
    assert nlc < 0.3 * plain
    assert max(result.r) > 0.05  # the "image" model underestimates the noise at N < M


@pytest.mark.parametrize("n, steps", [(16, 16), (32, 4)])
def test_an_accurate_sampler_is_not_made_worse(n, steps):
    # Heun at N = M: with many steps it is close to exact (the calibration must
    # not fit sampling noise), with few its errors partly cancel (the greedy
    # table must not win each step and lose the sample: the final check)
    plain, nlc, result = fd_pair(ExactDenoiser(SPECTRUM, n), n, steps, "heun")
    assert nlc <= 1.02 * plain
    assert len(result.r) == steps and result.params["strength"] in (0.0, 0.5, 1.0)


def test_progress_cancel_and_bad_input():
    model = ExactDenoiser(SPECTRUM, 8)
    x0 = sample_field(SPECTRUM, 8, 4, torch.Generator().manual_seed(1))
    seen = []
    calibrate_correction(
        denoiser_for(model), x0, flow_sigmas(3), progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        calibrate_correction(denoiser_for(model), x0, flow_sigmas(3), progress=cancel)
    with pytest.raises(ValueError, match="descending"):
        calibrate_correction(denoiser_for(model), x0, [0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match="sampler"):
        calibrate_correction(denoiser_for(model), x0, flow_sigmas(3), sampler="dpmpp_2m")
    with pytest.raises(ValueError, match="x0"):
        calibrate_correction(denoiser_for(model), x0[0], flow_sigmas(3))


def test_the_store_checks_a_correction_table():
    key = checkpoint_key.CheckpointKey("ab" * 32, "SD3", "SD3")
    good = {"method": "m", "sigmas": [1.0, 0.5], "r": [0.0, -0.1]}

    def make(correction):
        return calibration_record.make_record(
            key=key,
            image_size=(64, 64),
            latent_size=(8, 8),
            parameterization="flow",
            method="test",
            method_params={},
            sigmas=[1.0, 0.5],
            sigma_hat=[1.0, 0.5],
            calibration_set={"count": 1, "source": "test", "seed": 0},
            correction=correction,
        )

    assert make(good)["correction"] == good
    for bad, message in [
        ({**good, "r": [0.0]}, "one r per sigma, got 2 and 1"),
        ({**good, "sigmas": [0.5, 1.0]}, "descending"),
        ({**good, "r": [0.0, 3.0]}, r"\[-1, 1\]"),
        ({"method": "m", "sigmas": [1.0]}, "'r' is a required property"),
    ]:
        with pytest.raises(errors.CalibrationError, match=message):
            make(bad)
