"""Noise Awareness Guidance node (never the bare id "NAG": that is Normalized
Attention Guidance in ComfyUI)."""

from __future__ import annotations

from ..noisecal.apply import RecommendedLevel
from ..noisecal.guidance import MODES, WEIGHT_SCHEDULES, GuidanceSettings
from ..noisecal_host import folders, level_patches, user_messages
from ..noisecal_host.apply_patch import calibrated_guidance
from ..noisecal_host.guidance_patch import apply_guidance
from .common import LABEL_INPUT, CalibratedModelNode

WEIGHT_SOURCES = ("manual", "calibrated")


class NoiseAwarenessGuidance(CalibratedModelNode):
    TITLE = "Noise Awareness Guidance"
    DESCRIPTION = (
        "Noise Awareness Guidance (after arXiv 2510.12497), training-free: besides the "
        "usual prediction, the network is asked once more while told another noise level, "
        "and the difference steers the sample back onto its noise schedule: "
        "out = cfg + weight * (cond - cond at the other level). One extra conditional "
        "evaluation per step. Chains with other guidance nodes (post-CFG hook) and with "
        "NoiseShift; works with any sampler, cfg 1 included.\n"
        "Measured on the exact-denoiser testbed it helps at the training resolution and "
        "few steps, and can hurt a model run far below its training resolution without "
        "NoiseShift: see the README. weight 0 (the default) is off."
    )
    OUTPUT_TOOLTIPS = ("The model with the guidance term added after CFG (unchanged at weight 0).",)
    ORDERED = (("level_end", "level_start"),)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model to patch."}),
                "weight": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": -20.0,
                        "max": 20.0,
                        "step": 0.1,
                        "tooltip": "Guidance weight; 0 = off. With 'per step size' it is per "
                        "unit of noise level travelled (try 2-4).",
                    },
                ),
                "mode": (
                    list(MODES),
                    {
                        "default": "offset",
                        "tooltip": "Which other level: offset = a fixed log-SNR offset from the "
                        "level the network is told; estimated = the level measured "
                        "from the latent's high frequencies; pseudo-level = a fixed "
                        "level, for models trained with noise-condition dropout.",
                    },
                ),
                "offset": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": -10.0,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "offset mode: log-SNR offset of the other level (positive = "
                        "noisier).",
                    },
                ),
                "pseudo_level": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "pseudo-level mode: the fixed level (flow-equivalent, 0-1) "
                        "the model was trained to treat as 'unknown noise'.",
                    },
                ),
                "weight_schedule": (
                    list(WEIGHT_SCHEDULES),
                    {
                        "default": "per step size",
                        "tooltip": "per step size: weight times the step's change of noise "
                        "level (shrinks with more steps); constant: the same weight "
                        "every step (the paper's form).",
                    },
                ),
                "level_start": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "Guidance only at or below this noise level (flow-equivalent "
                        "0-1; 1 = from the first step).",
                    },
                ),
                "level_end": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "Guidance only at or above this noise level (0 = to the end).",
                    },
                ),
            },
            "optional": {
                "weight_source": (
                    list(WEIGHT_SOURCES),
                    {
                        "default": "manual",
                        "tooltip": "manual: the settings above. calibrated: the weight the "
                        "Calibrate node's held-out check chose for this checkpoint and the "
                        "sampled size (0 where no weight cleared its noise), times `weight` "
                        "(1 = as chosen), with the mode, offset and schedule it was chosen "
                        "with; the widgets from mode on are then not used.",
                    },
                ),
                "label": LABEL_INPUT,
            },
        }

    @classmethod
    def VALIDATE_INPUTS(
        cls,
        weight=None,
        mode=None,
        offset=None,
        pseudo_level=None,
        weight_schedule=None,
        level_start=None,
        level_end=None,
        weight_source=None,
    ):
        return cls.validate(
            weight=weight,
            mode=mode,
            offset=offset,
            pseudo_level=pseudo_level,
            weight_schedule=weight_schedule,
            level_start=level_start,
            level_end=level_end,
            weight_source=weight_source,
        )

    @classmethod
    def IS_CHANGED(cls, weight_source="manual", **kwargs):
        # only a calibrated weight depends on the calibration files
        return folders.user_store().fingerprint_files() if weight_source == "calibrated" else ""

    def apply(
        self,
        model,
        weight,
        mode,
        offset,
        pseudo_level,
        weight_schedule,
        level_start,
        level_end,
        weight_source="manual",
        label="",
        notes=None,
    ):
        widgets = {
            "weight": weight,
            "mode": mode,
            "offset": offset,
            "pseudo_level": pseudo_level,
            "weight_schedule": weight_schedule,
            "level_start": level_start,
            "level_end": level_end,
        }
        self.check(**widgets, weight_source=weight_source, label=label)
        if weight == 0:
            return (model,)
        if level_patches.installed(model, "level_fns", RecommendedLevel):
            user_messages.note(notes, f"{self.TITLE}: {level_patches.APPLY_WARNING}")
        if weight_source == "calibrated":
            return (calibrated_guidance(model, weight, label, self.store(), notes),)
        return (apply_guidance(model, GuidanceSettings(**widgets)),)
