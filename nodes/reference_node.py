"""The pack's reference networks as nodes: a loader and a decoder, no download."""

from __future__ import annotations

from ..noisecal_host import reference_models
from . import tooltips
from .checks import ChecksInputs
from .common import CATEGORY
from .widgets import Combo, Socket, input_types


class LoadReference(ChecksInputs):
    TITLE = "Noise Calibration: Load Reference Model"
    DESCRIPTION = (
        "Loads one of the small SD3-architecture networks shipped with the pack "
        "(models/reference/), trained on synthetic images: try the nodes without "
        "downloading any weights. The Calibrate node generates at the size the network "
        "was trained at (from its sidecar .json). Sample it with the Empty Conditioning "
        "node as positive and negative; decode the dead-leaves networks' latents with "
        "'Noise Calibration: Decode Reference Latent'."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The reference network, as a diffusion model loader gives it.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return input_types(tooltips.LOAD_REFERENCE, [Combo("model_name", reference_models.names())])

    @classmethod
    def VALIDATE_INPUTS(cls, model_name=None):
        return cls.validate(model_name=model_name)

    def load(self, model_name):
        self.check(model_name=model_name)
        return (reference_models.load(model_name),)


class ReferenceDecode:
    TITLE = "Noise Calibration: Decode Reference Latent"
    DESCRIPTION = (
        "Turns the latents of the pack's dead-leaves reference networks into pictures: "
        "their latent is an exact 2x2 space-to-depth of a 4-channel image (the first 3 "
        "are shown as RGB), so no VAE is needed. A latent of W x H latent pixels "
        "gives a 2W x 2H image."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded images.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return input_types(tooltips.REFERENCE_DECODE, [Socket("LATENT", "samples")])

    def decode(self, samples):
        return (reference_models.to_image(samples["samples"]),)
