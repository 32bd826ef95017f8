"""The exact-denoiser testbed as a ComfyUI MODEL, so ComfyUI's own samplers,
schedulers and our patches run on a model whose optimum is known.

It is a real `comfy.model_base.BaseModel` of type FLOW (CONST sampling, shift 1,
timestep = sigma * 1000 like SD3) whose diffusion_model is the exact
posterior-mean filter. The network reads the level it is conditioned on from
the timestep, exactly as a trained flow network would, and outputs a velocity;
ComfyUI forms denoised = x - sigma * v with the trajectory's sigma.
"""

from __future__ import annotations

import hashlib

import comfy.latent_formats
import comfy.model_base
import comfy.model_patcher
import comfy.supported_models_base
import torch

from ...noisecal.testing.mixture import FieldMixture, MixtureDenoiser
from ...noisecal.testing.testbed import ExactDenoiser, FieldSpectrum


def _definition(denoiser) -> list[float]:
    """Numbers that define the "checkpoint": the field's for ExactDenoiser, else a
    hash of its repr (any object with the ExactDenoiser interface)."""
    if isinstance(denoiser, ExactDenoiser):
        spec = denoiser.spectrum
        variant = ["pixel", "image"].index(denoiser.variant)
        return [spec.f0, spec.alpha, spec.channels, denoiser.train_res, variant]
    digest = hashlib.sha256(repr(denoiser).encode()).digest()
    # 4 x 32-bit words: exact in float64, distinct for distinct definitions
    return [float(int.from_bytes(digest[i : i + 4], "big")) for i in range(0, 16, 4)]


class ExactDenoiserNetwork(torch.nn.Module):
    """diffusion_model stand-in: velocity of the exact denoiser at the told level."""

    def __init__(self, denoiser, multiplier: float):
        super().__init__()
        self.denoiser = denoiser
        self.multiplier = multiplier
        self.dtype = torch.float32
        # what defines this "checkpoint", as a weight, so it has a fingerprint
        self.register_buffer("definition", torch.tensor(_definition(denoiser), dtype=torch.float64))

    def forward(self, x, timesteps, context=None, **kwargs):
        s_cond = timesteps.to(torch.float64) / self.multiplier
        return self.denoiser.velocity(x, s_cond).to(x.dtype)


def _config_class(channels: int):
    class ExactDenoiserLatent(comfy.latent_formats.LatentFormat):
        # identity scale and shift: an empty latent stays zero, so the first
        # state is pure noise, as for real models
        latent_channels = channels

    class ExactDenoiserTestbed(comfy.supported_models_base.BASE):
        unet_config: dict = {}
        unet_extra_config: dict = {}
        sampling_settings = {"shift": 1.0, "multiplier": 1000}
        latent_format = ExactDenoiserLatent
        memory_usage_factor = 1.0

    return ExactDenoiserTestbed


def make_testbed_model(spectrum: FieldSpectrum, train_res: int, variant: str = "pixel"):
    """A ModelPatcher for the exact denoiser 'trained' at resolution `train_res`."""
    return make_denoiser_model(ExactDenoiser(spectrum, train_res, variant), spectrum.channels)


def make_mixture_model(mixture: FieldMixture, train_res: int, variant: str = "pixel"):
    """A ModelPatcher for the mixture's exact denoiser 'trained' at `train_res`."""
    return make_denoiser_model(MixtureDenoiser(mixture, train_res, variant), mixture.channels)


def make_denoiser_model(denoiser, channels: int):
    """A ModelPatcher for any object with the ExactDenoiser interface (velocity(x, s))."""
    config = _config_class(channels)({"disable_unet_model_creation": True})
    model = comfy.model_base.BaseModel(
        config, model_type=comfy.model_base.ModelType.FLOW, device=torch.device("cpu")
    )
    model.diffusion_model = ExactDenoiserNetwork(denoiser, model.model_sampling.multiplier)
    return comfy.model_patcher.ModelPatcher(
        model, load_device=torch.device("cpu"), offload_device=torch.device("cpu")
    )


def make_testbed_conditioning(batch: int = 1) -> list:
    """The testbed ignores its text context; ComfyUI still needs one."""
    return [[torch.zeros(batch, 1, 1), {}]]
