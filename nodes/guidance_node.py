"""Noise Awareness Guidance node (never the bare id "NAG": that is Normalized
Attention Guidance in ComfyUI)."""

from __future__ import annotations

from ..noisecal.guidance import MODES, WEIGHT_SCHEDULES, GuidanceSettings
from ..noisecal_host import folders, level_patches
from . import tooltips
from .common import CalibratedModelNode
from .widgets import Combo, Float, Socket, String, input_types

WEIGHT_SOURCES = ("manual", "calibrated")


class NoiseAwarenessGuidance(CalibratedModelNode):
    TITLE = "Noise Awareness Guidance"
    # ComfyUI calls run (CalibratedModelNode): it calls `apply` below and shows its notes
    FUNCTION = "run"
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
        level = dict(min=0.0, max=1.0, step=0.01)
        return input_types(
            tooltips.GUIDANCE,
            required=[
                Socket("MODEL", "model"),
                Float("weight", 0.0, min=-20.0, max=20.0, step=0.1),
                Combo("mode", MODES, "offset"),
                Float("offset", 1.0, min=-10.0, max=10.0, step=0.05),
                Float("pseudo_level", 1.0, **level),
                Combo("weight_schedule", WEIGHT_SCHEDULES, "per step size"),
                Float("level_start", 1.0, **level),
                Float("level_end", 0.0, **level),
            ],
            optional=[Combo("weight_source", WEIGHT_SOURCES, "manual"), String("label")],
        )

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
        if weight_source == "calibrated":
            return (level_patches.calibrated_guidance(model, weight, label, self.store(), notes),)
        return (level_patches.apply_guidance(model, GuidanceSettings(**widgets), notes),)
