"""Tiny real architectures from ComfyUI's own classes, for plumbing tests and
overhead benchmarks: SD3 (MMDiT, flow), Flux (flow, guidance-embedded) and an
SD1-style UNet (eps). Random weights, initialized explicitly because ComfyUI's
default ops skip initialization and leave memory uninitialized."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models
import torch


@dataclass
class TinyModel:
    """A ModelPatcher plus what it takes to condition it."""

    patcher: comfy.model_patcher.ModelPatcher
    context_dim: int
    context_tokens: int
    pooled_dim: int | None

    def conditioning(self, batch: int = 1, seed: int = 0) -> list:
        """Conditioning in ComfyUI's list form: [[context, {extras}]]."""
        gen = torch.Generator().manual_seed(seed)
        context = torch.randn(batch, self.context_tokens, self.context_dim, generator=gen)
        extras = {}
        if self.pooled_dim is not None:
            extras["pooled_output"] = torch.randn(batch, self.pooled_dim, generator=gen)
        return [[context, extras]]


SD3_CONFIG = {
    "in_channels": 16,
    "patch_size": 2,
    "depth": 2,
    "adm_in_channels": 32,
    "context_embedder_config": {
        "target": "torch.nn.Linear",
        "params": {"in_features": 32, "out_features": 128},
    },
    "pos_embed_max_size": 64,
    "pos_embed_scaling_factor": None,
}

FLUX_CONFIG = {
    "image_model": "flux",
    "in_channels": 16,
    "out_channels": 16,
    "vec_in_dim": 32,
    "context_in_dim": 32,
    "hidden_size": 64,
    "mlp_ratio": 2.0,
    "num_heads": 2,
    "depth": 1,
    "depth_single_blocks": 1,
    "axes_dim": [8, 12, 12],
    "theta": 10000,
    "patch_size": 2,
    "qkv_bias": True,
    "guidance_embed": True,
}

UNET_CONFIG = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 32,
    "num_res_blocks": [1, 1],
    "channel_mult": [1, 2],
    "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": True,
    "context_dim": 32,
    "num_heads": 2,
    "num_head_channels": -1,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}


def _init_weights(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            if param.dim() <= 1 or name.endswith(("norm.weight", "bias")):
                # norms start at 1 where they are scales, biases small
                fill = 1.0 if name.endswith("weight") else 0.0
                param.copy_(fill + 0.01 * torch.randn(param.shape, generator=gen))
            else:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)


def _patcher(config_class, unet_config: dict, seed: int) -> comfy.model_patcher.ModelPatcher:
    model_config = config_class(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device="cpu")
    _init_weights(model.diffusion_model, seed)
    model.eval()
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(
        model, load_device=device, offload_device=torch.device("cpu")
    )


def tiny_sd3(seed: int = 0) -> TinyModel:
    return TinyModel(_patcher(comfy.supported_models.SD3, SD3_CONFIG, seed), 32, 4, 32)


def tiny_flux(seed: int = 0) -> TinyModel:
    return TinyModel(_patcher(comfy.supported_models.Flux, FLUX_CONFIG, seed), 32, 4, 32)


def tiny_unet(seed: int = 0) -> TinyModel:
    return TinyModel(_patcher(comfy.supported_models.SD15, UNET_CONFIG, seed), 32, 4, None)


TINY_MODELS = {"sd3": tiny_sd3, "flux": tiny_flux, "unet": tiny_unet}


def tiny_vae(seed: int = 0):
    """ComfyUI's VAE around an untrained TAESD (4 latent channels, 8x downscale),
    with small seeded weights: ComfyUI's layers skip initialization."""
    import comfy.sd
    import comfy.taesd.taesd

    generator = torch.Generator().manual_seed(seed)
    weights = {
        key: torch.randn(value.shape, generator=generator) * 0.05
        for key, value in comfy.taesd.taesd.TAESD().state_dict().items()
    }
    weights.update(vae_scale=torch.tensor(1.0), vae_shift=torch.tensor(0.0))
    return comfy.sd.VAE(sd=weights)
