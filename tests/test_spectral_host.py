"""Spectral Scheduler node on ComfyUI's own models and samplers."""

import pytest
import torch

LATENT = 8


@pytest.fixture
def scheduler(pack):
    return pack.NODE_CLASS_MAPPINGS["NoiseCalibrationSpectralScheduler"]()


def reference_latent(tiny, seed=0, batch=4):
    """A non-empty latent with a smooth (low-pass) spectrum, like an encoded image."""
    channels = tiny.patcher.get_model_object("latent_format").latent_channels
    gen = torch.Generator().manual_seed(seed)
    white = torch.randn(batch, channels, LATENT * 2, LATENT * 2, generator=gen)
    smooth = torch.nn.functional.avg_pool2d(white, 2) * 2
    return {"samples": smooth}


def check_sigmas(sigmas, ms):
    assert sigmas.dim() == 1 and torch.isfinite(sigmas).all()
    assert sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())
    assert float(sigmas[0]) <= float(ms.sigma_max) + 1e-6
    assert float(sigmas[-2]) >= float(ms.sigma_min) - 1e-6


def test_reference_latent_schedule_samples_through_sample_custom(
    pack_module, scheduler, tiny_model
):
    latent = reference_latent(tiny_model)
    sigmas, plot = scheduler.schedule(
        tiny_model.patcher,
        6,
        "reference latent",
        scheduler.INPUT_TYPES()["required"]["variant"][0][0],
        0,
        1.0,
        512,
        512,
        "",
        latent=latent,
    )
    ms = tiny_model.patcher.get_model_object("model_sampling")
    check_sigmas(sigmas, ms)
    assert len(sigmas) == 7 and plot.shape[0] == 1 and plot.shape[-1] == 3
    sampling = pack_module("noisecal_host.testing.sampling")
    empty = sampling.empty_latent(tiny_model.patcher, LATENT * 2, LATENT * 2, batch=2)
    out = sampling.sample_with_sigmas(tiny_model.patcher, empty, tiny_model.conditioning(2), sigmas)
    assert torch.isfinite(out).all()


def test_seed_gives_a_per_seed_schedule(scheduler, tiny_sd3):
    latent = reference_latent(tiny_sd3, batch=8)
    variant = scheduler.INPUT_TYPES()["required"]["variant"][0][0]
    a = scheduler.schedule(
        tiny_sd3.patcher, 8, "reference latent", variant, 1, 1.0, 512, 512, "", latent=latent
    )[0]
    b = scheduler.schedule(
        tiny_sd3.patcher, 8, "reference latent", variant, 1, 1.0, 512, 512, "", latent=latent
    )[0]
    c = scheduler.schedule(
        tiny_sd3.patcher, 8, "reference latent", variant, 2, 1.0, 512, 512, "", latent=latent
    )[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_composes_with_the_models_shift(scheduler, tiny_sd3):
    # tiny SD3 samples with shift 3: its sigma range is that of the shifted model
    latent = reference_latent(tiny_sd3)
    variant = scheduler.INPUT_TYPES()["required"]["variant"][0][0]
    sigmas = scheduler.schedule(
        tiny_sd3.patcher, 8, "reference latent", variant, 0, 1.0, 512, 512, "", latent=latent
    )[0]
    check_sigmas(sigmas, tiny_sd3.patcher.get_model_object("model_sampling"))
    half = scheduler.schedule(
        tiny_sd3.patcher, 8, "reference latent", variant, 0, 0.5, 512, 512, "", latent=latent
    )[0]
    assert len(half) == 9 and float(half[0]) < float(sigmas[0])


def test_calibration_source_reads_the_stored_spectrum(
    pack, pack_module, scheduler, tmp_path, monkeypatch
):
    monkeypatch.setenv("NOISE_CALIBRATION_DIR", str(tmp_path))
    tb = pack_module("noisecal.testing.testbed")
    testbed = pack_module("noisecal_host.testing.testbed_model")
    spectrum = tb.FieldSpectrum()
    model = testbed.make_testbed_model(spectrum, 16)
    variant = scheduler.INPUT_TYPES()["required"]["variant"][0][0]
    errors = pack_module("noisecal.errors")
    with pytest.raises(errors.CalibrationNotFound, match="latent 8x8"):
        scheduler.schedule(model, 6, "calibration", variant, 0, 1.0, 64, 64, "")
    latents = tb.sample_field(spectrum, 8, 8, torch.Generator().manual_seed(21))
    calibrate = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"]()
    records = calibrate.calibrate(
        model, 4, "simple", "fast", 8, 0, 64, 64, "", 64, latent={"samples": latents}
    )["result"][0]
    assert records[0]["spectrum"]["count"] == 8
    sigmas = scheduler.schedule(model, 6, "calibration", variant, 0, 1.0, 64, 64, "")[0]
    check_sigmas(sigmas, model.get_model_object("model_sampling"))
    with pytest.raises(errors.CalibrationError, match="needs the latent input"):
        scheduler.schedule(model, 6, "reference latent", variant, 0, 1.0, 64, 64, "")
