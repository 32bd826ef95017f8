"""NoiseShift node: MODEL -> MODEL with calibrated conditioning noise levels."""

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


class NoiseShift(UsesCalibrationStore):
    DESCRIPTION = (
        "NoiseShift (arXiv 2510.02307): tells the network a recalibrated noise level for the "
        "resolution you sample at, so SD3/SD3.5/Flux (and SD1.5/SDXL) stop producing "
        "cramped, noisy images below their training resolution. Only the conditioning "
        "changes: the sampler's steps, input scaling and denoised estimate keep the true "
        "sigma, so it works with KSampler, SamplerCustom and every sampler and scheduler.\n"
        "The resolution is read from the latent at sampling time; the calibration is found "
        "by checkpoint and resolution in models/noise_calibration (between two calibrated "
        "resolutions it interpolates by token count). Create one with 'Noise Calibration: "
        "Calibrate'. Place this node after any ModelSampling* node: a ModelSampling node "
        "after it replaces the model's sampling object and drops NoiseShift."
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
                        "tooltip": "0 = off (plain noise levels), 1 = the calibrated levels; "
                        "values in between scale the shift.",
                    },
                ),
                "if_missing": if_missing_input("calibration"),
                "label": LABEL_INPUT,
            },
            "optional": dict(CALIBRATION_INPUTS),
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        # calibration files are written by another node or the CLI: re-run when they change
        return folders.user_store().fingerprint_files()

    def apply(self, model, strength, if_missing, label="", calibration=None, inline_calibration=""):
        if if_missing not in ON_MISSING:
            raise ValueError(f"if_missing must be one of {ON_MISSING}, got {if_missing!r}")
        if strength == 0:
            return (model,)
        parameterization_of(model)  # clear error for unsupported model types
        if installed(model, "state_fns", CorrectionResolver):
            log.warning(PAIR_WARNING)
        key = checkpoint_key(model, label)
        provided = provided_records(key, calibration, inline_calibration, "NoiseShift")
        resolver = ShiftResolver(
            key,
            provided,
            self.store(),
            strength=strength,
            on_missing=if_missing,
            max_level=max_level(model),
            warn=log.warning,
        )
        return (conditioning_level.patch_model(model, resolver),)
