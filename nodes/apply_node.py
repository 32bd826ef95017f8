"""Apply node: MODEL -> MODEL with what the calibration's held-out check verified."""

from __future__ import annotations

from ..noisecal_host import level_patches
from . import tooltips
from .common import LevelPatchNode


class Apply(LevelPatchNode):
    TITLE = "Noise Calibration: Apply"
    # ComfyUI calls run (CalibratedModelNode): it calls `apply` below and shows its notes
    FUNCTION = "run"
    DESCRIPTION = (
        "One node for better low-resolution and few-step images: applies, for the resolution "
        "you sample at, the combination the Calibrate node verified on data it held back: "
        "plain, NoiseShift, Noise Level Correction or both, at strength 0.5 or 1, and on "
        "top of that Noise Awareness Guidance at the weight the check chose (or none). "
        "Where no candidate beat plain by more than the check's own noise, or one made "
        "edges worse, the model is left as it is. Calibrate with check = held-out (and "
        "correction = euler or heun to let the correction compete). A calibration without "
        "a check applies NoiseShift. Place it after any ModelSampling* node, between the "
        "loader and the sampler."
    )
    OUTPUT_TOOLTIPS = ("The model with the recommended combination for each sampled size.",)

    TOOLTIPS = tooltips.APPLY

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
        patched = level_patches.apply_recommended(
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
