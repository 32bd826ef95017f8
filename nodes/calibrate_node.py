"""Calibration node: runs the NoiseShift search on the local GPU and writes the file."""

from __future__ import annotations

import comfy.samplers
import comfy.utils
import torch

from ..noisecal import store
from ..noisecal_host import calibrate, calibration_run
from ..noisecal_host.plots import calibration_plot
from .common import (
    CALIBRATION_TYPE,
    CATEGORY,
    ChecksInputs,
    UsesCalibrationStore,
    rgb_to_image,
)

CORRECTION_CHOICES = ["off", "euler", "heun"]


class Calibrate(ChecksInputs, UsesCalibrationStore):
    TITLE = "Noise Calibration: Calibrate"
    DESCRIPTION = (
        "Calibrates NoiseShift for this checkpoint at one resolution: for every step of the "
        "schedule it searches the noise level the network should be told so that one "
        "sampler step best reproduces real data, and writes the result to "
        "models/noise_calibration (once per checkpoint and resolution; NoiseShift nodes "
        "then find it). Feed it 16-64 latents of real images at the target resolution "
        "(LATENT, or IMAGE + VAE which are resized and center-cropped). Shows progress and "
        "can be cancelled; an earlier file is only replaced when the run completes.\n"
        "Set 'correction' to also calibrate the table the Noise Level Correction node "
        "reads, in the same run and file."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (CALIBRATION_TYPE, "STRING", "IMAGE")
    RETURN_NAMES = ("calibration", "file", "plot")
    OUTPUT_TOOLTIPS = (
        "The calibration record, for a NoiseShift or Noise Level Correction node's "
        "calibration input (used before any file).",
        "The calibration file written to models/noise_calibration.",
        "Plot of the calibrated noise levels (and correction table) against the plain ones.",
    )
    OUTPUT_NODE = True
    FUNCTION = "calibrate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (
                    "MODEL",
                    {
                        "tooltip": "The model to calibrate (after any "
                        "ModelSampling node you sample with)."
                    },
                ),
                "steps": (
                    "INT",
                    {
                        "default": 20,
                        "min": 2,
                        "max": 200,
                        "tooltip": "Steps of the schedule to calibrate at; the "
                        "result is a curve over sigma that serves "
                        "other step counts too.",
                    },
                ),
                "scheduler": (
                    comfy.samplers.KSampler.SCHEDULERS,
                    {
                        "default": "simple",
                        "tooltip": "Scheduler giving the calibration sigmas (from this model's "
                        "own sampling, so a shift is respected).",
                    },
                ),
                "search_mode": (
                    ["fast", "grid"],
                    {
                        "default": "fast",
                        "tooltip": "fast: bracketing + parabolic refinement (few evaluations). "
                        "grid: the paper's coarse-to-fine grid (slower).",
                    },
                ),
                "sample_count": (
                    "INT",
                    {
                        "default": 32,
                        "min": 1,
                        "max": 4096,
                        "tooltip": "How many calibration latents to use "
                        "(the first N of the batch).",
                    },
                ),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 0xFFFFFFFFFFFFFFFF,
                        "tooltip": "Seed of the calibration noise.",
                    },
                ),
                "width": (
                    "INT",
                    {
                        "default": 512,
                        "min": 16,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Target width in pixels when calibrating from "
                        "IMAGE (a LATENT input sets it itself).",
                    },
                ),
                "height": (
                    "INT",
                    {
                        "default": 512,
                        "min": 16,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Target height in pixels when calibrating from IMAGE.",
                    },
                ),
                "label": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Optional name to store the calibration under "
                        "instead of the weights fingerprint.",
                    },
                ),
                "max_batch": (
                    "INT",
                    {
                        "default": 32,
                        "min": 1,
                        "max": 4096,
                        "tooltip": "Memory budget: latents per forward pass. "
                        "Lower it if you run out of VRAM.",
                    },
                ),
            },
            "optional": {
                "latent": (
                    "LATENT",
                    {
                        "tooltip": "Calibration latents (VAE-encoded real "
                        "images at the target resolution)."
                    },
                ),
                "image": ("IMAGE", {"tooltip": "Calibration images; needs the VAE input."}),
                "vae": ("VAE", {"tooltip": "VAE to encode the calibration images."}),
                "positive": (
                    "CONDITIONING",
                    {
                        "tooltip": "Conditioning during calibration; default: the model's empty "
                        "(zero) conditioning."
                    },
                ),
                "sigmas": (
                    "SIGMAS",
                    {"tooltip": "Calibrate at these sigmas instead of steps + scheduler."},
                ),
                # last, so workflows saved before it existed keep their widget values
                "correction": (
                    CORRECTION_CHOICES,
                    {
                        "default": "off",
                        "tooltip": "Also calibrate the Noise Level Correction table in the same "
                        "run, for this sampler family: euler (euler, euler_ancestral, ddim) "
                        "or heun (second-order samplers). About 25 extra network calls "
                        "per latent per step (twice that for heun). It fits the steps and scheduler set here "
                        "best: calibrate at the step count you sample with.",
                    },
                ),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, correction=None):
        return cls.validate(correction=correction)

    def calibrate(
        self,
        model,
        steps,
        scheduler,
        search_mode,
        sample_count,
        seed,
        width,
        height,
        label,
        max_batch,
        latent=None,
        image=None,
        vae=None,
        positive=None,
        sigmas=None,
        correction="off",
    ):
        self.check(correction=correction)
        latents, source = self._latents(latent, image, vae, width, height)
        sigmas = calibration_run.schedule_sigmas(model, scheduler, steps, sigmas)
        record, path = calibration_run.calibrate_latents(
            model,
            latents,
            sigmas,
            sample_count=sample_count,
            source=source,
            positive=positive,
            mode=search_mode,
            seed=seed,
            label=label or None,
            max_batch=max_batch,
            calibration_store=self.store(),
            progress=calibrate.comfy_progress(len(sigmas) - 1),
            correction=None if correction == "off" else correction,
        )
        plot = rgb_to_image(calibration_plot(record))
        return {"ui": {"text": [path]}, "result": ([record], path, plot)}

    @staticmethod
    def _latents(latent, image, vae, width, height) -> tuple[torch.Tensor, str]:
        if latent is not None:
            samples = latent["samples"]
            if torch.count_nonzero(samples) == 0:
                raise store.CalibrationError(
                    "the calibration latent is empty (all zeros): connect latents of real "
                    "images (VAE Encode), or connect IMAGE + VAE"
                )
            return samples, "LATENT input"
        if image is None:
            raise store.CalibrationError(
                "connect calibration data: a LATENT of encoded real images, or IMAGE + VAE"
            )
        if vae is None:
            raise store.CalibrationError("an IMAGE input needs the VAE input to encode it")
        width, height = width // 8 * 8, height // 8 * 8
        pixels = comfy.utils.common_upscale(
            image.movedim(-1, 1), width, height, "bilinear", "center"
        ).movedim(1, -1)
        return vae.encode(pixels[:, :, :, :3]), "images + VAE"
