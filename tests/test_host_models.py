"""Tiny real architectures and the testbed model sample through ComfyUI itself."""

import pytest
import torch

from noise_calibration.noisecal.testing.metrics import frechet_distance
from noise_calibration.noisecal.testing.testbed import (
    ExactDenoiser,
    FieldSpectrum,
    euler_sample,
    flow_sigmas,
)


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m"])
def test_tiny_models_sample_end_to_end(pack_module, tiny_model, sampler_name):
    sampling = pack_module("noisecal_host.testing.sampling")
    latent = sampling.empty_latent(tiny_model.patcher, 8, 8, batch=2)
    out = sampling.ksample(
        tiny_model.patcher,
        latent,
        tiny_model.conditioning(2),
        tiny_model.conditioning(2, seed=1),
        steps=3,
        cfg=2.0,
        sampler_name=sampler_name,
    )
    assert out.shape == latent.shape
    assert torch.isfinite(out).all()
    # sampling really ran: different seeds give different images
    again = sampling.ksample(
        tiny_model.patcher,
        latent,
        tiny_model.conditioning(2),
        steps=3,
        cfg=1.0,
        sampler_name=sampler_name,
        seed=1,
    )
    assert not torch.allclose(out, again)


def test_testbed_model_matches_host_free_euler(pack_module):
    sampling = pack_module("noisecal_host.testing.sampling")
    bed = pack_module("noisecal_host.testing.testbed_model")
    spectrum = FieldSpectrum(channels=4)
    model = bed.make_testbed_model(spectrum, train_res=16)
    latent = sampling.empty_latent(model, 16, 16, batch=4)
    out = sampling.ksample(model, latent, bed.make_testbed_conditioning(4), steps=10, seed=3)
    import comfy.sample

    noise = comfy.sample.prepare_noise(latent, 3)
    ref = euler_sample(ExactDenoiser(spectrum, 16), noise, flow_sigmas(10))
    assert torch.allclose(out, ref.to(out.dtype), atol=1e-4)


def test_testbed_model_quality_through_comfy_sampler(pack_module):
    sampling = pack_module("noisecal_host.testing.sampling")
    bed = pack_module("noisecal_host.testing.testbed_model")
    spectrum = FieldSpectrum(channels=4)
    native = bed.make_testbed_model(spectrum, train_res=16)
    mismatched = bed.make_testbed_model(spectrum, train_res=32, variant="image")
    latent = sampling.empty_latent(native, 16, 16, batch=32)
    cond = bed.make_testbed_conditioning(32)
    fds = [
        frechet_distance(
            sampling.ksample(m, latent, cond, steps=20, sampler_name="dpmpp_2m"), spectrum.power(16)
        )
        for m in (native, mismatched)
    ]
    assert fds[1] > 10 * fds[0]
