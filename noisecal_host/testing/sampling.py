"""Run ComfyUI's own sampling entry points the way KSampler and SamplerCustom do."""

from __future__ import annotations

import comfy.sample
import comfy.samplers
import torch


def empty_latent(model, width: int, height: int, batch: int = 1) -> torch.Tensor:
    """Latent of zeros with the model's channel count, sized in latent pixels."""
    channels = model.get_model_object("latent_format").latent_channels
    return torch.zeros(batch, channels, height, width)


def ksample(
    model,
    latent,
    positive,
    negative=None,
    *,
    seed=0,
    steps=4,
    cfg=1.0,
    sampler_name="euler",
    scheduler="simple",
    denoise=1.0,
) -> torch.Tensor:
    """What the KSampler node does: noise from the seed, then comfy.sample.sample."""
    noise = comfy.sample.prepare_noise(latent, seed)
    negative = positive if negative is None else negative
    return comfy.sample.sample(
        model,
        noise,
        steps,
        cfg,
        sampler_name,
        scheduler,
        positive,
        negative,
        latent,
        denoise=denoise,
        disable_pbar=True,
        seed=seed,
    )


def sample_with_sigmas(
    model, latent, positive, sigmas, negative=None, *, seed=0, cfg=1.0, sampler_name="euler"
) -> torch.Tensor:
    """What SamplerCustom does with a SIGMAS tensor."""
    noise = comfy.sample.prepare_noise(latent, seed)
    negative = positive if negative is None else negative
    sampler = comfy.samplers.sampler_object(sampler_name)
    return comfy.sample.sample_custom(
        model, noise, cfg, sampler, sigmas, positive, negative, latent, disable_pbar=True, seed=seed
    )
