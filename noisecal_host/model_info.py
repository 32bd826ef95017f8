"""What the pack needs to know about a ComfyUI MODEL: its parameterization, its
level range and an empty conditioning it accepts."""

from __future__ import annotations

import comfy.model_sampling
import torch

from ..noisecal import errors


def parameterization_of(model) -> str:
    """The calibration file's parameterization: flow, eps or v."""
    ms = model.get_model_object("model_sampling")
    if isinstance(ms, comfy.model_sampling.CONST):
        return "flow"
    if isinstance(ms, comfy.model_sampling.V_PREDICTION):
        return "v"
    if isinstance(ms, comfy.model_sampling.EPS):
        return "eps"
    raise errors.CalibrationError(
        f"model sampling {type(ms).__name__} is not supported: NoiseShift needs a flow "
        f"(SD3, Flux, AuraFlow) or an eps/v (SD1.5, SDXL) model"
    )


def max_level(model) -> float:
    return float(model.get_model_object("model_sampling").sigma_max)


def zero_conditioning(model, tokens: int = 1) -> list:
    """Empty conditioning for a model whose text encoders are not at hand."""
    net = model.model.diffusion_model
    extras: dict = {}
    if hasattr(net, "context_embedder") and hasattr(net, "y_embedder"):  # SD3 MMDiT
        dim = getattr(net.context_embedder, "in_features", None)
        extras["pooled_output"] = torch.zeros(1, net.y_embedder.mlp[0].in_features)
    elif hasattr(net, "txt_in") and hasattr(net, "vector_in"):  # Flux
        dim = net.txt_in.in_features
        extras["pooled_output"] = torch.zeros(1, net.vector_in.in_layer.in_features)
    else:
        dim = model.model.model_config.unet_config.get("context_dim")
        if model.model.adm_channels:
            raise errors.CalibrationError(
                "this model needs pooled text conditioning (e.g. SDXL): connect a "
                "'positive' CONDITIONING (an empty prompt is fine) to the calibration node"
            )
    if dim is None:
        dim = 1  # a network that ignores its context (the testbed)
    return [[torch.zeros(1, tokens, dim), extras]]
