"""Noise Awareness Guidance as a MODEL patch that chains with other packs.

A post-CFG function (a list in ComfyUI: every pack's function runs, in the
order the nodes were applied) evaluates the conditional branch once more
with the network told another noise level, through `calc_cond_batch` as core
PAG does, and adds the guidance term to what the earlier functions returned.
The other level is set through the conditioning-level patch (which also
chains with NoiseShift: the offset is applied to the level NoiseShift chose),
so input scaling and the denoised estimate keep the trajectory's sigma.
"""

from __future__ import annotations

import comfy.samplers
import torch

from ..noisecal.guidance import GuidanceSettings, combine, from_u, to_u
from . import conditioning_level, dropped_patch, family_support
from .model_info import parameterization_of

WHAT = "Noise Awareness Guidance"


def guidance_node_installed(model) -> bool:
    """Whether a Noise Awareness Guidance node's patch is on the model."""
    ms = model.get_model_object("model_sampling")
    return any(
        isinstance(fn, conditioning_level.LevelOverride) and getattr(fn, "what", None) == WHAT
        for fn in getattr(ms, "level_fns", ())
    )


def next_level(sigma: torch.Tensor, model_options: dict, state: dict) -> torch.Tensor | None:
    """The next sigma of the schedule: from ComfyUI's sample_sigmas when the host
    provides them, else estimated from the previous step (same step size)."""
    sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
    current = float(sigma.max())
    if sigmas is not None:
        later = [float(s) for s in sigmas if float(s) < current - 1e-9]
        return torch.full_like(sigma, later[0] if later else 0.0)
    previous = state.get("previous")
    state["previous"] = current
    if previous is None or previous <= current:
        return None  # first step of a run: no step size known yet
    return (sigma - (previous - current)).clamp(min=0)


def apply_guidance(model, settings: GuidanceSettings, settings_for=None, what=WHAT):
    """MODEL -> MODEL with guidance. settings_for: latent (h, w) -> settings or None
    (no guidance at that size), for Apply; else `settings` everywhere."""
    parameterization = parameterization_of(model)
    family_support.check(model, what)
    override = conditioning_level.LevelOverride()
    override.what = what  # whose guidance (Apply tells a guidance node's from its own)
    state: dict = {}

    def to_sigma_space(level_u_fn):
        def fn(level):
            return from_u(level_u_fn(to_u(level, parameterization)), parameterization).to(level)

        return fn

    def post_cfg(args):
        denoised = args["denoised"]
        x = args["input"]
        current = settings if settings_for is None else settings_for(tuple(x.shape[-2:]))
        if current is None or current.weight == 0:
            return denoised
        sigma = args["sigma"]
        u = to_u(sigma, parameterization)
        u_next = next_level(sigma, args["model_options"], state)
        weight = current.weight_at(u, None if u_next is None else to_u(u_next, parameterization))
        if not bool((weight != 0).any()):
            return denoised
        other_level = to_sigma_space(
            lambda level_u: current.other_level(level_u, x, parameterization)
        )
        with override.active(other_level):
            (other,) = comfy.samplers.calc_cond_batch(
                args["model"], [args["cond"]], x, sigma, args["model_options"]
            )
        return combine(denoised, args["cond_denoised"], other, x, weight, current.guard)

    patched = conditioning_level.patch_model(model, override)
    patched.set_model_sampler_post_cfg_function(post_cfg)
    dropped_patch.watch(patched, override, what, "pass through")
    return patched
