"""The exact-denoiser testbed as a ComfyUI MODEL, so ComfyUI's own samplers,
schedulers and our patches run on a model whose optimum is known.

It is a real `comfy.model_base.BaseModel` of type FLOW (CONST sampling, shift 1,
timestep = sigma * 1000 like SD3) whose diffusion_model is the exact
posterior-mean filter. The network reads the level it is conditioned on from
the timestep, exactly as a trained flow network would, and outputs a velocity;
ComfyUI forms denoised = x - sigma * v with the trajectory's sigma.
"""

from __future__ import annotations

import comfy.latent_formats
import comfy.model_base
import comfy.model_patcher
import comfy.supported_models_base
import torch

from ...noisecal.testing.testbed import ExactDenoiser, FieldSpectrum


class ExactDenoiserNetwork(torch.nn.Module):
    """diffusion_model stand-in: velocity of the exact denoiser at the told level."""

    def __init__(self, denoiser: ExactDenoiser, multiplier: float):
        super().__init__()
        self.denoiser = denoiser
        self.multiplier = multiplier
        self.dtype = torch.float32
        # what defines this "checkpoint", as a weight, so it has a fingerprint
        spec = denoiser.spectrum
        variant = ["pixel", "image"].index(denoiser.variant)
        self.register_buffer(
            "definition",
            torch.tensor(
                [spec.f0, spec.alpha, spec.channels, denoiser.train_res, variant],
                dtype=torch.float64,
            ),
        )

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
    config = _config_class(spectrum.channels)({"disable_unet_model_creation": True})
    model = comfy.model_base.BaseModel(
        config, model_type=comfy.model_base.ModelType.FLOW, device=torch.device("cpu")
    )
    denoiser = ExactDenoiser(spectrum, train_res, variant)
    model.diffusion_model = ExactDenoiserNetwork(denoiser, model.model_sampling.multiplier)
    return comfy.model_patcher.ModelPatcher(
        model, load_device=torch.device("cpu"), offload_device=torch.device("cpu")
    )


def make_testbed_conditioning(batch: int = 1) -> list:
    """The testbed ignores its text context; ComfyUI still needs one."""
    return [[torch.zeros(batch, 1, 1), {}]]
