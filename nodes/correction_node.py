"""Noise Level Correction node: MODEL -> MODEL, the denoiser evaluated at sigma_hat."""

from __future__ import annotations

from ..noisecal_host import level_patches
from . import tooltips
from .common import LevelPatchNode
from .widgets import Float


class NoiseLevelCorrection(LevelPatchNode):
    TITLE = "Noise Level Correction"
    # ComfyUI calls run (CalibratedModelNode): it calls `apply` below and shows its notes
    FUNCTION = "run"
    DESCRIPTION = (
        "Noise Level Correction (arXiv 2412.05488): the model is evaluated at a corrected "
        "noise level sigma_hat = sigma * (1 + r) that matches the noise really in the "
        "latent. Input scaling, conditioning and the denoised estimate all use sigma_hat; "
        "the sampler's own sigmas are untouched, so KSampler, SamplerCustom and every "
        "scheduler work (with Euler this is the paper's DDIM-NLC step). No extra network "
        "calls.\n"
        "r(sigma) is a table calibrated per checkpoint and resolution: run 'Noise "
        "Calibration: Calibrate' with 'correction' set to euler (or heun for second-order "
        "samplers), at the step count you sample with; it fits that step count best.\n"
        "With NoiseShift: the correction is applied first whatever the node order, and "
        "NoiseShift then shifts the conditioning of the corrected level; but each table is "
        "calibrated without the other and the pair measured worse than either alone in "
        "many cases: use one of them. Works with Noise Awareness Guidance (its other "
        "level is taken from the corrected one)."
    )
    OUTPUT_TOOLTIPS = (
        "The model evaluated at the corrected noise level on the steps inside "
        "sigma_min..sigma_max (unchanged at strength 0).",
    )
    TOOLTIPS = tooltips.CORRECTION
    MISSING = "correction table"
    RANGE_INPUTS = (
        Float("sigma_min", 0.0, min=0.0, max=1000.0, step=0.01),
        Float("sigma_max", 1000.0, min=0.0, max=1000.0, step=0.01),
    )
    ORDERED = (("sigma_min", "sigma_max"),)

    @classmethod
    def VALIDATE_INPUTS(cls, strength=None, sigma_min=None, sigma_max=None, if_missing=None):
        return cls.validate(
            strength=strength, sigma_min=sigma_min, sigma_max=sigma_max, if_missing=if_missing
        )

    def apply(
        self,
        model,
        strength,
        sigma_min,
        sigma_max,
        if_missing,
        label="",
        calibration=None,
        inline_calibration="",
        notes=None,
        latent=None,
    ):
        self.check(
            strength=strength, sigma_min=sigma_min, sigma_max=sigma_max, if_missing=if_missing
        )
        patched = level_patches.apply_correction(
            model,
            strength,
            (sigma_min, sigma_max),
            if_missing,
            label,
            calibration,
            self.store(),
            inline_calibration,
            notes,
            latent=latent,
        )
        return (patched,)
