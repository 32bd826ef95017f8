"""Calibration node: runs the NoiseShift search on the local GPU and writes the file."""

from __future__ import annotations

import comfy.samplers

from ..noisecal_host import calibration_job, calibrations, user_messages
from ..noisecal_host.calibration_job import DEFAULTS
from ..noisecal_host.plots import calibration_plot
from ..noisecal_host.previews import temp_previews
from .calibrate_tooltips import CALIBRATE
from .checks import ChecksInputs
from .common import CALIBRATION_TYPE, CATEGORY, UsesCalibrationStore, rgb_to_image
from .widgets import Combo, Float, Int, Socket, String, input_types

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
        samplers, schedulers = comfy.samplers.KSampler.SAMPLERS, comfy.samplers.KSampler.SCHEDULERS
        size, cfg = dict(max=16384, step=8), dict(min=0.0, max=100.0, step=0.1, round=0.01)
        return input_types(
            CALIBRATE,
            required=[
                Socket("MODEL", "model"),
                Int("steps", DEFAULTS.steps, min=2, max=200),
                Combo("scheduler", schedulers, DEFAULTS.scheduler),
                Combo("search_mode", ["fast", "grid", "lean"], DEFAULTS.search_mode),
                Int("sample_count", DEFAULTS.sample_count, min=1, max=4096),
                Int("seed", DEFAULTS.seed, min=0, max=0xFFFFFFFFFFFFFFFF),
                Int("width", DEFAULTS.width, min=16, **size),
                Int("height", DEFAULTS.height, min=16, **size),
                String("label", DEFAULTS.label),
                Int("max_batch", DEFAULTS.max_batch, min=1, max=4096),
            ],
            # appended over time, in this order: saved workflows keep their widget values
            optional=[
                Socket("LATENT", "latent"),
                Socket("IMAGE", "image"),
                Socket("VAE", "vae"),
                Socket("CONDITIONING", "positive"),
                Socket("SIGMAS", "sigmas"),
                Combo("correction", CORRECTION_CHOICES, DEFAULTS.correction),
                Combo("mode", MODES, DEFAULTS.mode),
                Combo("data", DATA_CHOICES, DEFAULTS.data),
                Socket("CONDITIONING", "negative"),
                Int("generation_steps", DEFAULTS.generation_steps, min=1, max=200),
                Float("generation_cfg", DEFAULTS.generation_cfg, **cfg),
                Combo("generation_sampler", samplers, DEFAULTS.generation_sampler),
                Combo("generation_scheduler", schedulers, DEFAULTS.generation_scheduler),
                Int("native_width", DEFAULTS.native_width, min=0, **size),
                Int("native_height", DEFAULTS.native_height, min=0, **size),
                Combo("check", CHECK_CHOICES, DEFAULTS.check),
            ],
        )

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
        # the plot goes in the node's own panel (web/js), sized to the node, not in
        # "images" (the frontends' previews: a second, smaller copy below the panel)
        height, width = rgb.shape[:2]
        plot = [{**p, "width": width, "height": height} for p in temp_previews(rgb)]
        ui = {"text": [user_messages.gui_text(text)], calibrations.PLOT_KEY: plot}
        return {"ui": ui, "result": ([record], path, rgb_to_image(rgb))}
