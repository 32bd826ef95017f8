"""NoiseShift node: MODEL -> MODEL with calibrated conditioning noise levels."""

from __future__ import annotations

from ..noisecal_host import level_patches
from . import tooltips
from .common import LevelPatchNode


class NoiseShift(LevelPatchNode):
    TITLE = "NoiseShift (calibrated noise levels)"
    # ComfyUI calls run (CalibratedModelNode): it calls `apply` below and shows its notes
    FUNCTION = "run"
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
    OUTPUT_TOOLTIPS = (
        "The model telling the network the calibrated noise level for the latent size "
        "it samples (unchanged at strength 0).",
    )
    TOOLTIPS = tooltips.NOISESHIFT
    MISSING = "calibration"

    @classmethod
    def VALIDATE_INPUTS(cls, strength=None, if_missing=None):
        return cls.validate(strength=strength, if_missing=if_missing)

    def apply(
        self,
        model,
        strength,
        if_missing,
        label="",
        calibration=None,
        inline_calibration="",
        notes=None,
        latent=None,
    ):
        self.check(strength=strength, if_missing=if_missing)
        patched = level_patches.apply_noiseshift(
            model,
            strength,
            if_missing,
            label,
            calibration,
            self.store(),
            inline_calibration,
            notes,
            latent=latent,
        )
        return (patched,)
