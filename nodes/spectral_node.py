"""Spectral Scheduler node: SIGMAS bounded and spaced by the data's spectrum."""

from __future__ import annotations

import comfy.samplers
import torch

from ..noisecal import errors
from ..noisecal.spectra import SpectrumStats, rapsd
from ..noisecal.spectral_schedule import DEFAULT_START, STARTS, VARIANTS, spectral_sigmas
from ..noisecal_host import rounded_weights
from ..noisecal_host.calibration_run import LATENT_DOWNSCALE
from ..noisecal_host.fingerprint import checkpoint_key
from ..noisecal_host.model_info import parameterization_of
from ..noisecal_host.plots import schedule_plot
from . import tooltips
from .checks import ChecksInputs
from .common import CATEGORY, UsesCalibrationStore, rgb_to_image
from .widgets import Combo, Float, Int, Socket, String, input_types

SOURCES = ["calibration", "reference latent"]


class SpectralScheduler(ChecksInputs, UsesCalibrationStore):
    TITLE = "Spectral Scheduler (calibrated SIGMAS)"
    DESCRIPTION = (
        "Spectral schedule (after Esteves & Makadia, ICML 2026): SIGMAS that skip the "
        "levels where every frequency of the data is already drowned in noise (or already "
        "clean) and space the steps so each one makes the same spectral progress. Largest "
        "gains at few steps. The data's spectrum comes from this checkpoint's calibration "
        "at this resolution (the Calibrate node stores it), or from a reference latent "
        "(img2img). Connect the SIGMAS to SamplerCustom / SamplerCustomAdvanced; the "
        "model's own shift and sigma range are respected. Outputs a plot against "
        "ComfyUI's 'simple' schedule."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SIGMAS", "IMAGE")
    RETURN_NAMES = ("sigmas", "plot")
    OUTPUT_TOOLTIPS = (
        "The schedule, for SamplerCustom / SamplerCustomAdvanced.",
        "Plot of the schedule against ComfyUI's 'simple' schedule.",
    )
    FUNCTION = "schedule"

    @classmethod
    def INPUT_TYPES(cls):
        size = dict(min=16, max=16384, step=8)
        return input_types(
            tooltips.SPECTRAL,
            required=[
                Socket("MODEL", "model"),
                Int("steps", 8, min=1, max=200),
                Combo("source", SOURCES, "calibration"),
                Combo("variant", VARIANTS, VARIANTS[0]),
                Int("seed", 0, min=0, max=0xFFFFFFFFFFFFFFFF),
                Float("denoise", 1.0, min=0.0, max=1.0, step=0.01),
                Int("width", 512, **size),
                Int("height", 512, **size),
                String("label"),
            ],
            optional=[Socket("LATENT", "latent"), Combo("start", STARTS, DEFAULT_START)],
        )

    @classmethod
    def VALIDATE_INPUTS(cls, source=None, denoise=None, start=None):
        return cls.validate(source=source, denoise=denoise, start=start)

    def schedule(
        self,
        model,
        steps,
        source,
        variant,
        seed,
        denoise,
        width,
        height,
        label="",
        latent=None,
        start=DEFAULT_START,
    ):
        self.check(source=source, denoise=denoise, start=start)
        ms = model.get_model_object("model_sampling")
        parameterization = parameterization_of(model)
        if latent is not None:
            latent_size = tuple(latent["samples"].shape[-2:])
        else:
            latent_size = (height // LATENT_DOWNSCALE, width // LATENT_DOWNSCALE)
        stats = self._stats(model, source, latent, latent_size, label)
        sigmas = spectral_sigmas(
            stats,
            steps,
            parameterization=parameterization,
            variant=variant,
            sigma_range=(float(ms.sigma_min), float(ms.sigma_max)),
            seed=seed,
            denoise=denoise,
            start=start,
        )
        simple = comfy.samplers.calculate_sigmas(ms, "simple", steps)
        plot = schedule_plot(
            {f"spectral ({variant})": sigmas.tolist(), "simple": simple.tolist()},
            f"{steps} steps at latent {latent_size[0]}x{latent_size[1]}",
        )
        return (sigmas, rgb_to_image(plot))

    def _stats(self, model, source, latent, latent_size, label) -> SpectrumStats:
        if source == "reference latent":
            if latent is None:
                raise errors.CalibrationError("source 'reference latent' needs the latent input")
            samples = latent["samples"]
            if torch.count_nonzero(samples) == 0:
                raise errors.CalibrationError(
                    "the reference latent is empty: connect an encoded image (VAE Encode)"
                )
            return rapsd(model.model.process_latent_in(samples.float()))
        key = rounded_weights.resolve(
            checkpoint_key(model, label), self.store(), "Spectral Scheduler"
        )
        match = self.store().find(key, latent_size)
        record = match.records[0] if len(match.records) == 1 else None
        if record is None or not record.get("spectrum"):
            raise errors.CalibrationError(
                f"the calibration for {key.describe()} at latent "
                f"{latent_size[0]}x{latent_size[1]} has no spectrum (it needs a calibration "
                f"at exactly this resolution, made by this pack's Calibrate node): "
                f"recalibrate, or use source 'reference latent'"
            )
        return SpectrumStats.from_json(record["spectrum"])
