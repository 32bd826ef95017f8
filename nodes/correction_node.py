"""Noise Level Correction node: MODEL -> MODEL, the denoiser evaluated at sigma_hat."""

from __future__ import annotations

from ..noisecal.correction import CorrectionResolver
from ..noisecal.noiseshift import ShiftResolver
from ..noisecal_host import conditioning_level, folders
from ..noisecal_host.fingerprint import checkpoint_key
from ..noisecal_host.model_info import max_level, parameterization_of
from .common import (
    CALIBRATION_INPUTS,
    CATEGORY,
    LABEL_INPUT,
    ON_MISSING,
    PAIR_WARNING,
    UsesCalibrationStore,
    if_missing_input,
    installed,
    log,
    provided_records,
)


class NoiseLevelCorrection(UsesCalibrationStore):
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
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model to patch."}),
                "strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.05,
                        "tooltip": "Scales the calibrated correction r: 0 = off (the model is "
                        "unchanged), 1 = as calibrated.",
                    },
                ),
                "sigma_min": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 1000.0,
                        "step": 0.01,
                        "tooltip": "Correct only steps whose sampler sigma is at least this.",
                    },
                ),
                "sigma_max": (
                    "FLOAT",
                    {
                        "default": 1000.0,
                        "min": 0.0,
                        "max": 1000.0,
                        "step": 0.01,
                        "tooltip": "Correct only steps whose sampler sigma is at most this "
                        "(flow models such as SD3/Flux go from 1 to 0).",
                    },
                ),
                "if_missing": if_missing_input("correction table"),
                "label": LABEL_INPUT,
            },
            "optional": dict(CALIBRATION_INPUTS),
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        # calibration files are written by another node or the CLI: re-run when they change
        return folders.user_store().fingerprint_files()

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
    ):
        if if_missing not in ON_MISSING:
            raise ValueError(f"if_missing must be one of {ON_MISSING}, got {if_missing!r}")
        if sigma_min > sigma_max:
            raise ValueError(f"sigma_min ({sigma_min}) must not exceed sigma_max ({sigma_max})")
        if strength == 0:
            return (model,)
        parameterization_of(model)  # clear error for unsupported model types
        if installed(model, "level_fns", ShiftResolver):
            log.warning(PAIR_WARNING)
        key = checkpoint_key(model, label)
        provided = provided_records(key, calibration, inline_calibration, "Noise Level Correction")
        resolver = CorrectionResolver(
            key,
            provided,
            self.store(),
            strength=strength,
            on_missing=if_missing,
            max_level=max_level(model),
            warn=log.warning,
            sigma_range=(sigma_min, sigma_max),
        )
        return (conditioning_level.patch_model(model, state_fn=resolver),)
