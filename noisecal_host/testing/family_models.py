"""A tiny instance of every image model family the host's ComfyUI defines.

Each family is built from ComfyUI's own config class (`comfy.supported_models`)
with a minimal unet_config for its real network class, with explicitly
initialized weights (ComfyUI's layers skip initialization; see tiny_models),
plus the conditioning its `extra_conds` needs. A config class without a spec
of its own uses the spec of the nearest base class that has one (SSD1B,
KOALA and Segmind Vega are SDXL), so a new subclass on a newer host is
covered. Families outside this pack's scope (video, audio, 3D) are listed in
NOT_IMAGE with the reason; `classify` says, for any config class, which case
it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models
import torch

from .tiny_models import FLUX_CONFIG, UNET_CONFIG, TinyModel, _init_weights

CTX = 32  # context (text token) width of every tiny family
TOKENS = 4


@dataclass(frozen=True)
class FamilySpec:
    """How to build and condition one tiny family."""

    unet_config: dict
    pooled_dim: int | None = None
    latent_hw: tuple[int, int] = (8, 8)  # latent pixels
    frames: int | None = None  # 5-D latents [B, C, frames, H, W]
    state_dict: Callable[[], dict] = dict  # what get_model reads besides the config
    extras: Callable[[int], dict] = field(default=lambda batch: {})  # conditioning extras
    pooled_shape: Callable[[int, int], tuple] | None = None  # (batch, dim) -> shape
    notes: str = ""


@dataclass
class TinyFamily(TinyModel):
    """A TinyModel that also knows its family's conditioning extras and latent shape."""

    name: str = ""
    spec: FamilySpec | None = None

    def conditioning(self, batch: int = 1, seed: int = 0) -> list:
        gen = torch.Generator().manual_seed(seed)
        context = torch.randn(batch, self.context_tokens, self.context_dim, generator=gen)
        extras = dict(self.spec.extras(batch))
        if self.pooled_dim is not None:
            shape = (batch, self.pooled_dim)
            if self.spec.pooled_shape is not None:
                shape = self.spec.pooled_shape(batch, self.pooled_dim)
            extras["pooled_output"] = torch.randn(shape, generator=gen)
        return [[context, extras]]

    def empty_latent(self, batch: int = 1) -> torch.Tensor:
        channels = self.patcher.get_model_object("latent_format").latent_channels
        h, w = self.spec.latent_hw
        if self.spec.frames is not None:
            return torch.zeros(batch, channels, self.spec.frames, h, w)
        return torch.zeros(batch, channels, h, w)


def _unet(**changes) -> dict:
    return {**UNET_CONFIG, **changes}


def _adm(channels: int, **changes) -> dict:
    """A UNet with a pooled/size vector (SDXL, unCLIP): ComfyUI's detection sets
    num_classes to 'sequential' for those; SD2 and SDXL fix 64 channels per head."""
    return _unet(
        **{"model_channels": 64, **changes}, adm_in_channels=channels, num_classes="sequential"
    )


def _v_prediction_sd2() -> dict:
    # SD20.model_type reads this key's spread to tell v-prediction checkpoints
    key = "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    return {key: torch.linspace(-1.0, 1.0, 8)}


def _zero123_projection() -> dict:
    gen = torch.Generator().manual_seed(3)
    return {
        "cc_projection.weight": torch.randn(CTX, CTX, generator=gen) / CTX**0.5,
        "cc_projection.bias": torch.zeros(CTX),
    }


def _hydit_extras(batch: int) -> dict:
    return {
        "conditioning_mt5xl": torch.zeros(batch, TOKENS, CTX),
        "attention_mask": torch.ones(batch, TOKENS),
        "attention_mask_mt5xl": torch.ones(batch, TOKENS),
    }


# one prompt's token mask (the node's form): its sum is the token count
_TEXT_MASK = torch.ones(1, TOKENS, dtype=torch.long)

_SDXL_ADM = 1536  # six 256-wide size embeddings after the pooled vector
_REFINER_ADM = 1280  # five of them


HYDIT = {
    "image_model": "hydit",
    "input_size": 16,
    "patch_size": 2,
    "in_channels": 4,
    "hidden_size": 64,
    "depth": 2,
    "num_heads": 2,
    "text_states_dim": CTX,
    "text_states_dim_t5": CTX,
    "text_len": TOKENS,
    "text_len_t5": TOKENS,
    "size_cond": False,
    "use_style_cond": False,
}

CHROMA = {
    **{k: v for k, v in FLUX_CONFIG.items() if k not in ("vec_in_dim", "guidance_embed")},
    "image_model": "chroma",
    "in_channels": 64,
    "out_channels": 64,
    "in_dim": 64,
    "out_dim": 64,
    "hidden_dim": 64,
    "n_layers": 1,
}

HUNYUAN_IMAGE = {
    "image_model": "hunyuan_video",
    "in_channels": 64,
    "out_channels": 64,
    "vec_in_dim": None,
    "context_in_dim": CTX,
    "hidden_size": 64,
    "mlp_ratio": 2.0,
    "num_heads": 2,
    "depth": 1,
    "depth_single_blocks": 1,
    "axes_dim": [16, 16],
    "theta": 256,
    "patch_size": [1, 1],
    "qkv_bias": True,
    "guidance_embed": False,
    "byt5": False,
    "meanflow": False,
}

SPECS: dict[str, FamilySpec] = {
    "SD15": FamilySpec(_unet()),
    # SD2's config fixes 64 channels per attention head
    "SD20": FamilySpec(
        _unet(model_channels=64), state_dict=_v_prediction_sd2, notes="v-prediction"
    ),
    "SD21UnclipL": FamilySpec(_adm(1536), notes="no unclip image: zero adm"),
    "SD21UnclipH": FamilySpec(_adm(2048), notes="no unclip image: zero adm"),
    "SDXL": FamilySpec(_adm(32 + _SDXL_ADM), pooled_dim=32),
    "SDXLRefiner": FamilySpec(_adm(32 + _REFINER_ADM), pooled_dim=32),
    "SD15_instructpix2pix": FamilySpec(_unet(in_channels=8), notes="zero image concat"),
    "SDXL_instructpix2pix": FamilySpec(_adm(32 + _SDXL_ADM, in_channels=8), pooled_dim=32),
    "Stable_Zero123": FamilySpec(
        _unet(in_channels=8), state_dict=_zero123_projection, notes="zero image concat"
    ),
    "SD_X4Upscaler": FamilySpec(
        _unet(
            in_channels=7,
            channel_mult=[1, 1, 1, 1],  # the config fixes four levels (disable_self_attentions)
            num_res_blocks=[1, 1, 1, 1],
            transformer_depth=[1, 1, 1, 1],
            transformer_depth_output=[1] * 8,
        ),
        latent_hw=(16, 16),  # four levels: 2x2 at the bottom for its group norms
        notes="zero low-res image, noise level 0",
    ),
    "LotusD": FamilySpec(_adm(4), notes="x0 (depth/normal) predictor"),
    "SD3": FamilySpec(
        {
            "in_channels": 16,
            "patch_size": 2,
            "depth": 2,
            "adm_in_channels": 32,
            "context_embedder_config": {
                "target": "torch.nn.Linear",
                "params": {"in_features": CTX, "out_features": 128},
            },
            "pos_embed_max_size": 64,
            "pos_embed_scaling_factor": None,
        },
        pooled_dim=32,
    ),
    "AuraFlow": FamilySpec(
        {
            "in_channels": 4,
            "out_channels": 4,
            "patch_size": 2,
            "dim": 64,
            "n_layers": 2,
            "n_double_layers": 1,
            "n_heads": 2,
            "global_conddim": 64,
            "cond_seq_dim": CTX,
            "max_seq": 64,
        }
    ),
    "PixArtAlpha": FamilySpec(
        {
            "image_model": "pixart_alpha",
            "input_size": 16,
            "patch_size": 2,
            "in_channels": 4,
            "hidden_size": 96,  # micro-conditions take a third each
            "depth": 1,
            "num_heads": 2,
            "caption_channels": CTX,
            "model_max_length": TOKENS,
            "micro_condition": True,
            "pe_interpolation": 1,
        },
        latent_hw=(40, 40),  # its position embedding needs (h + w) / 2 >= 32
    ),
    "PixArtSigma": FamilySpec(
        {
            "image_model": "pixart_sigma",
            "input_size": 16,
            "patch_size": 2,
            "in_channels": 4,
            "hidden_size": 96,  # micro-conditions take a third each
            "depth": 1,
            "num_heads": 2,
            "caption_channels": CTX,
            "model_max_length": TOKENS,
            "micro_condition": False,
            "pe_interpolation": 1,
        },
        latent_hw=(40, 40),
    ),
    "HunyuanDiT": FamilySpec(HYDIT, extras=lambda b: _hydit_extras(b)),
    "HunyuanDiT1": FamilySpec(
        {
            **HYDIT,
            "image_model": "hydit1",
            "size_cond": [1024, 1024, 1024, 1024, 0, 0],
            "use_style_cond": True,
        },
        extras=lambda b: _hydit_extras(b),
    ),
    "Flux": FamilySpec(FLUX_CONFIG, pooled_dim=32),
    "FluxSchnell": FamilySpec({**FLUX_CONFIG, "guidance_embed": False}, pooled_dim=32),
    "FluxInpaint": FamilySpec(
        {**FLUX_CONFIG, "in_channels": 96}, pooled_dim=32, notes="zero image, full mask"
    ),
    "Chroma": FamilySpec(CHROMA, pooled_dim=32, notes="the pooled vector is unused"),
    "ChromaRadiance": FamilySpec(
        {
            **CHROMA,
            "image_model": "chroma_radiance",
            "in_channels": 3,
            "out_channels": 3,
            "patch_size": 16,
            "nerf_hidden_size": 16,
            "nerf_mlp_ratio": 2,
            "nerf_depth": 1,
            "nerf_max_freqs": 4,
            "nerf_tile_size": 0,
            "nerf_final_head_type": "conv",
            "nerf_embedder_dtype": None,
        },
        pooled_dim=32,
        latent_hw=(32, 32),
        notes="pixel space",
    ),
    "HunyuanImage21": FamilySpec(HUNYUAN_IMAGE, latent_hw=(4, 4)),
    "HunyuanImage21Refiner": FamilySpec(
        {**HUNYUAN_IMAGE, "in_channels": 128, "patch_size": [1, 1, 1], "axes_dim": [8, 12, 12]},
        latent_hw=(4, 4),
        frames=1,
        notes="zero image concat",
    ),
    "Lumina2": FamilySpec(
        {
            "image_model": "lumina2",
            "patch_size": 2,
            "in_channels": 16,
            "dim": 64,
            "n_layers": 1,
            "n_refiner_layers": 1,
            "n_heads": 2,
            "n_kv_heads": 1,
            "multiple_of": 16,
            "qk_norm": True,
            "cap_feat_dim": CTX,
            "axes_dims": [8, 12, 12],
            "axes_lens": [300, 512, 512],
        },
        extras=lambda b: {"attention_mask": _TEXT_MASK},
    ),
    "HiDream": FamilySpec(
        {
            "image_model": "hidream",
            "patch_size": 2,
            "in_channels": 16,
            "out_channels": 16,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 32,
            "num_attention_heads": 2,
            "caption_channels": [CTX, CTX],
            "text_emb_dim": CTX,
            "num_routed_experts": 2,
            "num_activated_experts": 1,
            "axes_dims_rope": [16, 8, 8],
            "max_resolution": [16, 16],
            "llama_layers": [0, 0],  # one per block
        },
        pooled_dim=CTX,
        extras=lambda b: {"conditioning_llama3": torch.zeros(b, 1, TOKENS, CTX)},
    ),
    "Omnigen2": FamilySpec(
        {
            "image_model": "omnigen2",
            "patch_size": 2,
            "in_channels": 16,
            "out_channels": None,
            "hidden_size": 64,
            "num_layers": 1,
            "num_refiner_layers": 1,
            "num_attention_heads": 2,
            "num_kv_heads": 1,
            "multiple_of": 16,
            "axes_dim_rope": [8, 12, 12],
            "axes_lens": [64, 64, 64],
            "text_feat_dim": CTX,
            "timestep_scale": 1000.0,
        },
        extras=lambda b: {"attention_mask": _TEXT_MASK},
    ),
    "QwenImage": FamilySpec(
        {
            "image_model": "qwen_image",
            "patch_size": 2,
            "in_channels": 64,
            "out_channels": 16,
            "num_layers": 1,
            "attention_head_dim": 32,
            "num_attention_heads": 2,
            "joint_attention_dim": CTX,
            "axes_dims_rope": [8, 12, 12],
        },
        frames=1,
    ),
    "CosmosT2IPredict2": FamilySpec(
        {
            "image_model": "cosmos_predict2",
            "max_img_h": 16,
            "max_img_w": 16,
            "max_frames": 4,
            "in_channels": 16,
            "out_channels": 16,
            "patch_spatial": 2,
            "patch_temporal": 1,
            "concat_padding_mask": True,
            "model_channels": 64,
            "num_blocks": 1,
            "num_heads": 2,
            "crossattn_emb_channels": CTX,
            "pos_emb_cls": "rope3d",
            "pos_emb_learnable": True,
            "use_adaln_lora": True,
            "adaln_lora_dim": 16,
        },
        frames=1,
    ),
    "Stable_Cascade_C": FamilySpec(
        {
            "stable_cascade_stage": "c",
            "c_in": 16,
            "c_out": 16,
            "c_r": 16,
            "c_cond": 32,
            "c_hidden": [32, 32],
            "nhead": [2, 2],
            "blocks": [[1, 1], [1, 1]],
            "block_repeat": [[1, 1], [1, 1]],
            "level_config": ["CTA", "CTA"],
            "c_clip_text": CTX,
            "c_clip_text_pooled": 32,
            "c_clip_img": 768,
            "c_clip_seq": 1,
        },
        pooled_dim=32,
        pooled_shape=lambda b, d: (b, 1, d),
    ),
}

# Config classes that are not still-image generators, and why this pack leaves them out.
NOT_IMAGE = {
    "SVD_img2vid": "video (Stable Video Diffusion)",
    "SV3D_u": "3D orbit video",
    "SV3D_p": "3D orbit video",
    "StableAudio": "audio",
    "ACEStep": "audio",
    "GenmoMochi": "video",
    "LTXV": "video (per-token timesteps from the denoise mask)",
    "HunyuanVideo": "video",
    "HunyuanVideoI2V": "video",
    "HunyuanVideoSkyreelsI2V": "video",
    "CosmosT2V": "video",
    "CosmosI2V": "video",
    "CosmosI2VPredict2": "video (per-frame timesteps from the denoise mask)",
    "Hunyuan3Dv2": "3D shape latents",
    "Hunyuan3Dv2mini": "3D shape latents",
    "Hunyuan3Dv2_1": "3D shape latents",
    "Stable_Cascade_B": "Stable Cascade's decoder stage (sampled after stage C, on its prior)",
}
NOT_IMAGE_PREFIXES = {"WAN": "video (Wan; per-frame timesteps from the denoise mask)"}


def host_families() -> list[type]:
    """The config classes the host defines, in its own order."""
    return list(comfy.supported_models.models)


def classify(config_class: type) -> tuple[str, str | FamilySpec]:
    """("image", spec), ("skip", reason) or ("unknown", reason) for a config class."""
    name = config_class.__name__
    if name in NOT_IMAGE:
        return "skip", NOT_IMAGE[name]
    for prefix, reason in NOT_IMAGE_PREFIXES.items():
        if name.startswith(prefix):
            return "skip", reason
    for cls in config_class.__mro__:
        if cls.__name__ in SPECS:
            return "image", SPECS[cls.__name__]
    return "unknown", f"{name}: no tiny configuration known for this family"


class _NonEmpty:
    """named_parameters() without zero-size parameters (some families build empty
    ones for unused options), for tiny_models._init_weights."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def named_parameters(self):
        return ((n, p) for n, p in self.module.named_parameters() if p.numel() > 0)


def _patcher(config_class, unet_config: dict, seed: int, state_dict: dict):
    model_config = config_class(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    with torch.no_grad():  # some get_model copy checkpoint tensors into parameters
        model = model_config.get_model(state_dict, device="cpu")
    _init_weights(_NonEmpty(model.diffusion_model), seed)
    model.eval()
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(
        model, load_device=device, offload_device=torch.device("cpu")
    )


def tiny_family(config_class: type, seed: int = 0) -> TinyFamily:
    kind, spec = classify(config_class)
    if kind != "image":
        raise ValueError(spec)
    patcher = _patcher(config_class, spec.unet_config, seed, state_dict=spec.state_dict())
    return TinyFamily(patcher, CTX, TOKENS, spec.pooled_dim, name=config_class.__name__, spec=spec)
