"""The Calibrate node refuses data and schedules it cannot use with the pack's
error, before any network call (real tiny SD3, through the node)."""

import pytest
import torch


@pytest.fixture
def calibrate_node(pack, tmp_path):
    store = pack.noisecal.store.CalibrationStore([tmp_path], tmp_path)
    return pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](calibration_store=store)


def forward_calls(patcher) -> list:
    """A list that grows by one on every call of the network itself."""
    calls = []
    patcher.model.diffusion_model.register_forward_hook(lambda *a: calls.append(1))
    return calls


def run(node, model, latents, sigmas=None, steps=4):
    return node.calibrate(
        model,
        steps,
        "simple",
        "fast",
        8,
        0,
        64,
        64,
        "",
        8,
        latent={"samples": latents},
        sigmas=sigmas,
    )


def cases(channels):
    good = torch.randn(2, channels, 8, 8)
    nan = good.clone()
    nan[0, 0, 0, 0] = float("nan")
    return {
        "empty SIGMAS": (good, torch.tensor([]), "at least two levels"),
        "one sigma": (good, torch.tensor([1.0]), "at least two levels"),
        "ascending SIGMAS": (good, torch.tensor([0.0, 0.5, 1.0]), "strictly descending"),
        "NaN in SIGMAS": (good, torch.tensor([1.0, float("nan"), 0.0]), "finite"),
        "NaN latents": (nan, None, "NaN or infinite"),
        "wrong channel count": (torch.randn(2, channels + 1, 8, 8), None, "channels"),
        "1x1 latent": (torch.randn(2, channels, 1, 1), None, "at least 2x2"),
        "not a batch": (torch.randn(channels, 8, 8), None, "a batch"),
    }


@pytest.mark.parametrize("case", list(cases(16)))
def test_bad_calibration_input_is_refused_before_any_network_call(
    pack, calibrate_node, tiny_sd3, case
):
    patcher = tiny_sd3.patcher
    latents, sigmas, message = cases(patcher.model.latent_format.latent_channels)[case]
    calls = forward_calls(patcher)
    with pytest.raises(pack.noisecal.store.CalibrationError, match=message):
        run(calibrate_node, patcher, latents, sigmas)
    assert calls == []


def test_good_input_still_calibrates(calibrate_node, tiny_sd3):
    patcher = tiny_sd3.patcher
    calls = forward_calls(patcher)
    latents = torch.randn(2, patcher.model.latent_format.latent_channels, 8, 8)
    records, path, _ = run(calibrate_node, patcher, latents, steps=2)["result"]
    assert calls and path and len(records[0]["sigmas"]) == 2  # one level per step
