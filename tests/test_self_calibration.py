"""Self-calibration and reuse in the Calibrate node, on ComfyUI's own tiny models.

The model generates its calibration data at its native size; the set is cached
and a second resolution reuses it. Network calls are counted with a hook on
the diffusion network (rows per forward call), so "no generation the second
time" and "no evaluation when reusing" are measured, not assumed.
"""

import logging
import math

import pytest
import torch
from safetensors.torch import load_file

NATIVE = 64  # pixels: latent 8x8
GEN_STEPS = 3
COUNT = 4


@pytest.fixture
def calibrate_node(pack, tmp_path):
    store = pack.noisecal_host.folders.user_store(tmp_path)
    return pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](calibration_store=store)


def self_calibrate(node, model, size, seed=0, mode="reuse", **extra):
    widgets = (model, 2, "simple", "fast", COUNT, seed, size, size, "", COUNT)
    options = dict(
        mode=mode,
        data="self-generate",
        generation_steps=GEN_STEPS,
        native_width=NATIVE,
        native_height=NATIVE,
    )
    return node.calibrate(*widgets, **{**options, **extra})


def rows(pack_module, model, fn):
    """(fn's result, latents the diffusion network evaluated while it ran)."""
    with pack_module("noisecal_host.network_calls").network_calls(model) as calls:
        out = fn()
    return out, calls[0]


def test_self_calibration_writes_a_file_and_a_set_a_second_size_reuses(
    pack_module, calibrate_node, tiny_model, tmp_path
):
    model = tiny_model.patcher
    store = pack_module("noisecal.store")
    out, first = rows(pack_module, model, lambda: self_calibrate(calibrate_node, model, 32))
    (record,), path, _ = out["result"]
    assert store.load(path) == record and record["resolution"]["latent_height"] == 4
    generation = record["calibration_set"]["generation"]
    assert generation["width"] == NATIVE and generation["count"] == COUNT
    assert record["calibration_set"]["source"].startswith("self-generated (new)")
    (cached,) = (tmp_path / "generated").glob("*.safetensors")
    latents = load_file(str(cached))["latents"]
    assert latents.shape[:2] == (COUNT, model.model.latent_format.latent_channels)
    assert latents.shape[-2:] == (NATIVE // 8, NATIVE // 8) and torch.isfinite(latents).all()
    # generation: COUNT latents x GEN_STEPS Euler steps at cfg 1, one row each
    assert first == record["cost"]["network_evaluations"] + COUNT * GEN_STEPS
    out, second = rows(pack_module, model, lambda: self_calibrate(calibrate_node, model, 48))
    (other,), _, _ = out["result"]
    assert other["resolution"]["latent_height"] == 6
    assert other["calibration_set"]["source"].startswith("self-generated (cached)")
    assert second == other["cost"]["network_evaluations"]  # zero generation calls


def test_reuse_mode_evaluates_nothing_and_ignores_the_seed(pack_module, calibrate_node, tiny_sd3):
    model = tiny_sd3.patcher
    first = self_calibrate(calibrate_node, model, 32)
    out, evaluated = rows(pack_module, model, lambda: self_calibrate(calibrate_node, model, 32, 7))
    assert evaluated == 0
    assert out["result"][1] == first["result"][1]
    assert out["ui"]["text"][0].startswith("reused ")
    _, redone = rows(
        pack_module, model, lambda: self_calibrate(calibrate_node, model, 32, 7, "recalibrate")
    )
    assert redone > 0
    # other settings are another calibration: more generation steps recalibrate
    _, changed = rows(
        pack_module, model, lambda: self_calibrate(calibrate_node, model, 32, generation_steps=4)
    )
    assert changed > 0


def test_ui_shows_summary_and_plot(pack_module, calibrate_node, tiny_sd3):
    out = self_calibrate(calibrate_node, tiny_sd3.patcher, 32)
    (text,) = out["ui"]["text"]
    assert text.startswith("wrote ") and "32x32 px" in text and "network evaluations" in text
    assert "one-step error" in text and f"{COUNT} latents" in text
    plot = out["result"][2]
    assert plot.ndim == 4 and plot.shape[-1] == 3
    try:
        import folder_paths  # noqa: F401  (a full ComfyUI: the plot is shown on the node)
    except ImportError:
        assert out["ui"]["images"] == []
    else:
        (image,) = out["ui"]["images"]
        assert image["type"] == "temp" and image["filename"].endswith(".png")


def test_a_corrupt_cached_set_is_generated_again(
    pack_module, calibrate_node, tiny_sd3, tmp_path, caplog
):
    model = tiny_sd3.patcher
    self_calibrate(calibrate_node, model, 32)
    (cached,) = (tmp_path / "generated").glob("*.safetensors")
    cached.write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        out = self_calibrate(calibrate_node, model, 32, mode="recalibrate")
    assert "unreadable" in caplog.text
    assert out["result"][0][0]["calibration_set"]["source"].startswith("self-generated (new)")
    assert load_file(str(cached))["latents"].shape[0] == COUNT


def test_self_generated_through_a_vae(pack_module, calibrate_node, tiny_unet):
    vae = pack_module("noisecal_host.testing.tiny_models").tiny_vae()
    out = self_calibrate(calibrate_node, tiny_unet.patcher, 32, vae=vae)
    record = out["result"][0][0]
    assert "through the VAE" in record["calibration_set"]["source"]
    assert record["resolution"]["latent_width"] == 4


def test_data_connected_without_data_is_a_clear_error(pack_module, calibrate_node, tiny_sd3):
    errors = pack_module("noisecal.store")
    with pytest.raises(errors.CalibrationError, match="nothing is connected"):
        self_calibrate(calibrate_node, tiny_sd3.patcher, 32, data="connected")


def test_resize_latents_keeps_channel_statistics(pack_module):
    resize = pack_module("noisecal.resize")
    x = torch.randn(6, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 + 1
    out = resize.resize_latents(x, 8, 8)
    assert out.shape == (6, 3, 8, 8)  # center crop to square, then shrunk
    assert torch.allclose(out.std(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)), rtol=1e-4)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), x.mean(dim=(0, 2, 3)), atol=1e-4)
    plain = resize.center_crop_resize(x, 8, 8)
    assert plain.std() < x.std() * 0.8  # shrinking averages detail away: hence the rescale
    wide = resize.center_crop_resize(torch.arange(12.0).view(1, 1, 1, 12).expand(1, 1, 4, 12), 4, 4)
    assert torch.equal(wide[0, 0, 0], torch.tensor([4.0, 5.0, 6.0, 7.0]))  # centered crop


def test_band_limit_keeps_every_frequency_of_the_new_band(pack_module):
    """A cosine below the new Nyquist frequency survives a 4x shrink with its
    amplitude; area averaging damps it (to 0.73 near the top of the band), which
    is why the latent resize moved to the band limit."""
    resize = pack_module("noisecal.resize")

    def wave(k, n):  # k half-cycles across n pixels, sampled at pixel centres
        return torch.cos(math.pi * k * (torch.arange(n) + 0.5) / n)

    for k in (1, 3, 7):
        image = (wave(k, 32)[:, None] * wave(1, 32)[None, :]).view(1, 1, 32, 32)
        out = resize.band_limit(image, 8, 8)[0, 0]
        assert torch.allclose(out, wave(k, 8)[:, None] * wave(1, 8)[None, :], atol=1e-5)
    top = (wave(7, 32)[:, None] * torch.ones(1, 32)).view(1, 1, 32, 32)
    damped = torch.nn.functional.interpolate(top, size=(8, 8), mode="area")
    assert damped.abs().max() < 0.75
    with pytest.raises(ValueError, match="shrinks only"):
        resize.band_limit(top, 64, 64)


def test_empty_conditioning_node_samples_each_tiny_model(pack, pack_module, tiny_model):
    (cond,) = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationEmptyConditioning"]().condition(
        tiny_model.patcher
    )
    sampling = pack_module("noisecal_host.testing.sampling")
    latent = sampling.empty_latent(tiny_model.patcher, 4, 4)
    out = sampling.ksample(tiny_model.patcher, latent, cond, steps=2)
    assert out.shape == latent.shape and torch.isfinite(out).all()


def test_a_killed_cache_write_leaves_nothing_after_the_next_write(
    pack_module, calibrate_node, tiny_sd3, tmp_path
):
    stale = tmp_path / "generated" / ".tmp-999999999-dead.safetensors.part"  # no such process
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    self_calibrate(calibrate_node, tiny_sd3.patcher, 32)
    assert [p.suffix for p in (tmp_path / "generated").iterdir()] == [".safetensors"]
