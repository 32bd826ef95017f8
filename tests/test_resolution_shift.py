"""Resolution-dependent shifts (Flux's ModelSamplingFlux sets its shift from width
and height): a NoiseShift calibration made on one shift's schedule, sampled
with another's. The calibration is a function of sigma: at the other
schedule's sigmas the network is told the calibration's level interpolated
at those sigmas, the trajectory keeps the new schedule; below the smallest
calibrated level the curve runs linearly to (0, 0), above the largest it
keeps that level's additive shift (noisecal/sigma_hat_curve.py). bench/resolution_shift.py measures the
effect on the testbed (docs/compatibility.md)."""

import comfy.model_sampling
import comfy.samplers
import comfy.supported_models
import pytest
import torch
from test_family_matrix import capture, sample
from test_noiseshift_host import make_record


def flux_sized(model, width: int, height: int):
    """What ComfyUI's ModelSamplingFlux node does for an image size."""
    try:
        from comfy_extras.nodes_model_advanced import ModelSamplingFlux

        return ModelSamplingFlux().patch(model, 1.15, 0.5, width, height)[0]
    except ImportError:  # comfy_extras needs ComfyUI's server modules
        slope = (1.15 - 0.5) / (4096 - 256)
        shift = (width * height / 256) * slope + 0.5 - slope * 256

        class ModelSamplingAdvanced(
            comfy.model_sampling.ModelSamplingFlux, comfy.model_sampling.CONST
        ):
            pass

        sampling = ModelSamplingAdvanced(model.model.model_config)
        sampling.set_parameters(shift=shift)
        patched = model.clone()
        patched.add_object_patch("model_sampling", sampling)
        return patched


@pytest.fixture
def flux(pack_module):
    fm = pack_module("noisecal_host.testing.family_models")
    return fm.tiny_family(comfy.supported_models.Flux)


def test_a_calibration_made_at_one_shift_applies_at_another(pack, pack_module, flux):
    small, large = flux_sized(flux.patcher, 512, 512), flux_sized(flux.patcher, 1024, 1024)
    ms_small = small.get_model_object("model_sampling")
    ms_large = large.get_model_object("model_sampling")
    assert ms_large.shift > ms_small.shift
    record = make_record(pack_module, small, lambda s: 0.8 * s)  # on 512's schedule
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseShift"]()
    (patched,) = node.apply(large, 1.0, "error", calibration=[record])
    model, seen, handle = capture(patched)
    try:
        sample(pack_module, model, flux)
    finally:
        handle.remove()
    walked = [float(s[0]) for s in seen["sigma"]]
    expected = comfy.samplers.calculate_sigmas(ms_large, "simple", 2)[:-1].tolist()
    assert walked == pytest.approx(expected)  # the sampler walks the 1024 schedule
    assert set(walked) - set(record["sigmas"])  # ... between the calibrated levels
    shift_map = pack_module("noisecal.noiseshift").ShiftMap.from_records([record], [1.0])
    lo, hi = min(record["sigmas"]), max(record["sigmas"])
    for t, v, sigma, x, denoised in zip(
        seen["t"], seen["v"], seen["sigma"], seen["x"], seen["denoised"], strict=True
    ):
        level = shift_map(sigma)
        inside = lo <= float(sigma[0]) <= hi
        assert torch.allclose(level, 0.8 * sigma, rtol=0.02) if inside else True
        assert torch.allclose(t, ms_large.timestep(level).float(), atol=1e-6)
        assert torch.allclose(denoised, ms_large.calculate_denoised(sigma, v, x), atol=1e-5)


def test_levels_outside_the_calibrated_range(pack_module, flux):
    """A larger shift puts the last steps below the smallest calibrated level: the
    curve runs to (0, 0) there; above the largest it keeps the additive shift."""
    small = flux_sized(flux.patcher, 512, 512)
    record = make_record(pack_module, small, lambda s: 0.8 * s - 0.01 * s * s)
    shift_map = pack_module("noisecal.noiseshift").ShiftMap.from_records([record], [1.0])
    i = record["sigmas"].index(min(record["sigmas"]))
    lo, lo_hat = record["sigmas"][i], record["sigma_hat"][i]
    below = torch.tensor([lo * 0.5])
    assert torch.allclose(shift_map(below), below * lo_hat / lo)
