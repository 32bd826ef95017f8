"""Calibration node: runs the NoiseShift search on the local GPU and writes the file."""

from __future__ import annotations

import comfy.samplers

from ..noisecal_host import calibration_job, user_messages
from ..noisecal_host.calibration_job import DEFAULTS
from ..noisecal_host.plots import calibration_plot
from ..noisecal_host.previews import temp_previews
from .common import (
    CALIBRATION_TYPE,
    CATEGORY,
    ChecksInputs,
    UsesCalibrationStore,
    rgb_to_image,
)

CORRECTION_CHOICES = ["off", "euler", "heun"]
MODES = ["reuse", "recalibrate"]
DATA_CHOICES = ["auto", "connected", "self-generate"]
CHECK_CHOICES = ["held-out", "off"]


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
        "Set 'correction' to also calibrate a correction table in the same run and file: "
        "for Apply with the held-out check on, for the Noise Level Correction node with "
        "check = off."
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
                        "default": DEFAULTS.steps,
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
                        "default": DEFAULTS.scheduler,
                        "tooltip": "Scheduler giving the calibration sigmas (from this model's "
                        "own sampling, so a shift is respected).",
                    },
                ),
                "search_mode": (
                    ["fast", "grid", "lean"],
                    {
                        "default": DEFAULTS.search_mode,
                        "tooltip": "lean (default): Gauss-Newton steps on the one-step "
                        "residuals, about 3 evaluations per latent and step; a small shift is "
                        "kept only where its gain clears twice its standard error, so the "
                        "training resolution gets none. "
                        "fast: bracketing + parabolic refinement (about twice the evaluations). "
                        "grid: the paper's coarse-to-fine grid (slowest).",
                    },
                ),
                "sample_count": (
                    "INT",
                    {
                        "default": DEFAULTS.sample_count,
                        "min": 1,
                        "max": 4096,
                        "tooltip": "How many calibration latents to use (the first N of "
                        "the batch). With check = held-out 3/8 (at least 4) are held "
                        "back: 16 = 10 calibrated on + 6 held back, about 2,200 network "
                        "evaluations at 20 steps with correction and 1,300 without.",
                    },
                ),
                "seed": (
                    "INT",
                    {
                        "default": DEFAULTS.seed,
                        "min": 0,
                        "max": 0xFFFFFFFFFFFFFFFF,
                        "tooltip": "Seed of the calibration noise.",
                    },
                ),
                "width": (
                    "INT",
                    {
                        "default": DEFAULTS.width,
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
                        "default": DEFAULTS.height,
                        "min": 16,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Target height in pixels when calibrating from IMAGE.",
                    },
                ),
                "label": (
                    "STRING",
                    {
                        "default": DEFAULTS.label,
                        "tooltip": "Optional name to store the calibration under "
                        "instead of the weights fingerprint.",
                    },
                ),
                "max_batch": (
                    "INT",
                    {
                        "default": DEFAULTS.max_batch,
                        "min": 1,
                        "max": 4096,
                        "tooltip": "Most latents per forward pass. Each call takes "
                        "as many as fit in the free memory by ComfyUI's own estimate, "
                        "up to this; results do not depend on it.",
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
                        "default": DEFAULTS.correction,
                        "tooltip": "Also calibrate a Noise Level Correction table in the same "
                        "run, for this sampler family: euler (euler, euler_ancestral, ddim) "
                        "or heun (second-order samplers). About 4 extra network calls per "
                        "latent per step (twice that for heun). With check = held-out the "
                        "table is made for Apply (with NoiseShift on where its curve "
                        "shifts); with check = off, alone, for the Noise Level Correction "
                        "node. It fits the steps and scheduler set here best: calibrate at "
                        "the step count you sample with.",
                    },
                ),
                # appended after correction, in this order: saved workflows keep loading
                "mode": (
                    MODES,
                    {
                        "default": DEFAULTS.mode,
                        "tooltip": "reuse: when a calibration for this checkpoint, resolution and "
                        "settings exists, show it instead of calibrating again (a changed seed "
                        "alone never recalibrates). recalibrate: always run and replace it.",
                    },
                ),
                "data": (
                    DATA_CHOICES,
                    {
                        "default": DEFAULTS.data,
                        "tooltip": "auto: the connected latent or image if any, else self-generate. "
                        "self-generate: the model samples sample_count images at its native "
                        "resolution (from positive/negative), which are brought to width x "
                        "height (through the VAE when connected); no dataset needed.",
                    },
                ),
                "negative": (
                    "CONDITIONING",
                    {"tooltip": "Negative conditioning for self-generation (default: empty)."},
                ),
                "generation_steps": (
                    "INT",
                    {
                        "default": DEFAULTS.generation_steps,
                        "min": 1,
                        "max": 200,
                        "tooltip": "Sampler steps for each self-generated image.",
                    },
                ),
                "generation_cfg": (
                    "FLOAT",
                    {
                        "default": DEFAULTS.generation_cfg,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": "CFG for self-generation (1: positive only, e.g. Flux or an empty "
                        "conditioning; about 4-5 for SD3.5 with a prompt).",
                    },
                ),
                "generation_sampler": (
                    comfy.samplers.KSampler.SAMPLERS,
                    {
                        "default": DEFAULTS.generation_sampler,
                        "tooltip": "Sampler for self-generation. dpmpp_2m (one evaluation per "
                        "step, second order): on the testbed its 20-step samples have the "
                        "data's spread and the calibration from them matches one from real "
                        "data; euler's 20-step samples are about 7% too smooth.",
                    },
                ),
                "generation_scheduler": (
                    comfy.samplers.KSampler.SCHEDULERS,
                    {
                        "default": DEFAULTS.generation_scheduler,
                        "tooltip": "Scheduler for self-generation.",
                    },
                ),
                "native_width": (
                    "INT",
                    {
                        "default": DEFAULTS.native_width,
                        "min": 0,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Width the model generates well at, in pixels (0: the "
                        "model's own: a reference network's trained size, else its family's, "
                        "1024 for SD3/SD3.5/Flux/SDXL, 512 for SD1.5, at most what the "
                        "network takes).",
                    },
                ),
                "native_height": (
                    "INT",
                    {
                        "default": DEFAULTS.native_height,
                        "min": 0,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Height the model generates well at (0: its family's).",
                    },
                ),
                "check": (
                    CHECK_CHOICES,
                    {
                        "default": DEFAULTS.check,
                        "tooltip": "held-out: hold back 3/8 of the latents (at least 4), sample them "
                        "with plain, NoiseShift and (with correction) NLC and both, and record "
                        "which one the Apply node should use (plain unless a gain clears the "
                        "check's noise and edges do not get worse), then the Noise Awareness "
                        "Guidance weight on top of it (0 unless one clears the noise). off: "
                        "calibrate on all latents, no recommendation.",
                    },
                ),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(
        cls,
        correction=None,
        mode=None,
        data=None,
        generation_steps=None,
        generation_cfg=None,
        native_width=None,
        native_height=None,
        check=None,
    ):
        return cls.validate(
            correction=correction,
            mode=mode,
            data=data,
            generation_steps=generation_steps,
            generation_cfg=generation_cfg,
            native_width=native_width,
            native_height=native_height,
            check=check,
        )

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
        correction=DEFAULTS.correction,
        mode=DEFAULTS.mode,
        data=DEFAULTS.data,
        negative=None,
        generation_steps=DEFAULTS.generation_steps,
        generation_cfg=DEFAULTS.generation_cfg,
        generation_sampler=DEFAULTS.generation_sampler,
        generation_scheduler=DEFAULTS.generation_scheduler,
        native_width=DEFAULTS.native_width,
        native_height=DEFAULTS.native_height,
        check=DEFAULTS.check,
    ):
        widgets = dict(
            steps=steps,
            scheduler=scheduler,
            search_mode=search_mode,
            sample_count=sample_count,
            seed=seed,
            width=width,
            height=height,
            label=label,
            max_batch=max_batch,
            correction=correction,
            mode=mode,
            data=data,
            generation_steps=generation_steps,
            generation_cfg=generation_cfg,
            generation_sampler=generation_sampler,
            generation_scheduler=generation_scheduler,
            native_width=native_width,
            native_height=native_height,
            check=check,
        )
        # headless callers get the same range and choice checks as the UI
        self.check_widgets(**widgets)
        request = calibration_job.Request(**widgets)
        inputs = calibration_job.Inputs(latent, image, vae, positive, negative, sigmas)
        record, path, text = calibration_job.run(model, request, inputs, self.store())
        return self._output(record, path, text)

    @staticmethod
    def _output(record, path, text):
        rgb = calibration_plot(record)
        ui = {"text": [user_messages.gui_text(text)], "images": temp_previews(rgb)}
        return {"ui": ui, "result": ([record], path, rgb_to_image(rgb))}
