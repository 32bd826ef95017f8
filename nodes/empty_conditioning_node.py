"""Empty conditioning for a MODEL: sample models that have no text encoder."""

from __future__ import annotations

from ..noisecal_host.model_info import zero_conditioning
from . import tooltips
from .common import CATEGORY
from .widgets import Socket, input_types


class EmptyConditioning:
    TITLE = "Noise Calibration: Empty Conditioning"
    DESCRIPTION = (
        "A zero (empty) conditioning shaped for the connected model, with the pooled "
        "vector SD3 and Flux expect. For models that have no text encoder at hand (such "
        "as the pack's trained reference model) and for unconditional sampling: connect "
        "it to a sampler's positive and negative. The Calibrate node uses the same "
        "conditioning when its positive input is not connected."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Zero conditioning this model accepts.",)
    FUNCTION = "condition"

    @classmethod
    def INPUT_TYPES(cls):
        return input_types(tooltips.EMPTY_CONDITIONING, [Socket("MODEL", "model")])

    def condition(self, model):
        return (zero_conditioning(model),)
