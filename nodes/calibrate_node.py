"""Calibration node: runs the NoiseShift search on the local GPU and writes the file."""

from __future__ import annotations

import time
from dataclasses import asdict

import comfy.model_management
import comfy.samplers
import torch

from ..noisecal import held_out_check, store
from ..noisecal.calibration_summary import summary
from ..noisecal.resize import center_crop_resize
from ..noisecal.reuse import SELF_GENERATED
from ..noisecal_host import calibrate, calibrate_inputs, calibration_run, memory, self_calibration
from ..noisecal_host.calibration_phases import BAR_UNITS, GENERATION, Phases, progress_text
from ..noisecal_host.fingerprint import checkpoint_key
from ..noisecal_host.memory import check_one_row_fits
from ..noisecal_host.network_calls import network_calls
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
                    ["fast", "grid", "lean"],
                    {
                        "default": "lean",
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
                        "default": 16,
                        "min": 1,
                        "max": 4096,
                        "tooltip": "How many calibration latents to use (the first N of "
                        "the batch). With check = held-out a quarter (at least 4) is held "
                        "back: 16 = 12 calibrated on + 4 held back, about 2,400 network "
                        "evaluations at 20 steps with correction and 1,500 without.",
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
                        "default": "off",
                        "tooltip": "Also calibrate the Noise Level Correction table in the same "
                        "run, for this sampler family: euler (euler, euler_ancestral, ddim) "
                        "or heun (second-order samplers). About 25 extra network calls "
                        "per latent per step (twice that for heun). It fits the steps and scheduler set here "
                        "best: calibrate at the step count you sample with.",
                    },
                ),
                # appended after correction, in this order: saved workflows keep loading
                "mode": (
                    MODES,
                    {
                        "default": "reuse",
                        "tooltip": "reuse: when a calibration for this checkpoint, resolution and "
                        "settings exists, show it instead of calibrating again (a changed seed "
                        "alone never recalibrates). recalibrate: always run and replace it.",
                    },
                ),
                "data": (
                    DATA_CHOICES,
                    {
                        "default": "auto",
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
                        "default": 20,
                        "min": 1,
                        "max": 200,
                        "tooltip": "Sampler steps for each self-generated image.",
                    },
                ),
                "generation_cfg": (
                    "FLOAT",
                    {
                        "default": 1.0,
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
                        "default": "dpmpp_2m",
                        "tooltip": "Sampler for self-generation. dpmpp_2m (one evaluation per "
                        "step, second order): on the testbed its 20-step samples have the "
                        "data's spread and the calibration from them matches one from real "
                        "data; euler's 20-step samples are about 7% too smooth.",
                    },
                ),
                "generation_scheduler": (
                    comfy.samplers.KSampler.SCHEDULERS,
                    {"default": "simple", "tooltip": "Scheduler for self-generation."},
                ),
                "native_width": (
                    "INT",
                    {
                        "default": 0,
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
                        "default": 0,
                        "min": 0,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Height the model generates well at (0: its family's).",
                    },
                ),
                "check": (
                    CHECK_CHOICES,
                    {
                        "default": "held-out",
                        "tooltip": "held-out: hold back a quarter of the latents, sample them "
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
        correction="off",
        mode="reuse",
        data="auto",
        negative=None,
        generation_steps=20,
        generation_cfg=1.0,
        generation_sampler="dpmpp_2m",
        generation_scheduler="simple",
        native_width=0,
        native_height=0,
        check="held-out",
    ):
        self.check_widgets(
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
        started = time.perf_counter()
        calibrate_inputs.check_family(model)
        sigmas = calibration_run.schedule_sigmas(model, scheduler, steps, sigmas)
        calibrate_inputs.check_schedule(
            model, torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        )
        key = checkpoint_key(model, label or None)
        generating = self._generates(data, latent, image)
        generation = None
        if generating:
            settings = self._generation_settings(
                model,
                sample_count,
                seed,
                positive,
                negative,
                generation_steps,
                generation_cfg,
                generation_sampler,
                generation_scheduler,
                native_width,
                native_height,
            )
            generation = {k: v for k, v in asdict(settings).items()}
            calibrate_inputs.check_image_size(model, width, height, "width/height")
            latent_size, count = (height // 8, width // 8), sample_count
        else:
            latent_size, count = self._connected_size(
                model, latent, image, width, height, sample_count
            )
        correction_sampler = None if correction == "off" else correction
        if mode == "reuse":
            found = calibration_run.find_reusable(
                self.store(),
                key,
                latent_size,
                sigmas=sigmas.tolist(),
                method=f"noiseshift-{search_mode}",
                correction=correction_sampler,
                count=count,
                generation=generation,
                # a set too small to hold any back gets no check either way
                check=check == "held-out" and held_out_check.split(count)[1] > 0,
            )
            if found is not None:
                record, path = found
                text = summary(
                    record,
                    path,
                    reused=True,
                    data=record["calibration_set"]["source"],
                    evaluations=0,
                    seconds=time.perf_counter() - started,
                )
                return self._output(record, path, text)
        # a size one network call cannot hold is refused before any (it ignored Cancel)
        self._check_memory(model, latent_size, latent, settings if generating else None)
        # a folder or path this machine cannot write is refused before any network call
        self.store().check_writable(key, latent_size)
        if generating:
            self_calibration.check_cache_writable(self.store().write_dir, key, settings)
        phases = self._phases(
            sigmas, count, check, correction_sampler, settings if generating else None
        )
        with network_calls(model) as calls:
            if generating:
                latents, source = self._self_generated(
                    model, key, settings, positive, negative, vae, width, height, max_batch, phases
                )
            else:
                latents, source = self._latents(latent, image, vae, width, height, max_batch)
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
                correction=correction_sampler,
                generation=generation,
                check=check == "held-out",
                phases=phases,
            )
        text = summary(
            record,
            path,
            reused=False,
            data=source,
            evaluations=calls[0],
            seconds=time.perf_counter() - started,
        )
        return self._output(record, path, text)

    @staticmethod
    def _output(record, path, text):
        rgb = calibration_plot(record)
        ui = {"text": [text], "images": temp_previews(rgb)}
        return {"ui": ui, "result": ([record], path, rgb_to_image(rgb))}

    @staticmethod
    def _generates(data, latent, image) -> bool:
        if data == "self-generate":
            return True
        if latent is not None or image is not None:
            return False
        if data == "connected":
            raise store.CalibrationError(
                "data is 'connected' but nothing is connected: connect a LATENT of encoded "
                "real images, or IMAGE + VAE, or set data to self-generate"
            )
        return True

    @staticmethod
    def _check_memory(model, latent_size, latent, settings) -> None:
        """Refuse a generation or calibration size whose one row does not fit."""
        channels = model.model.latent_format.latent_channels
        if settings is not None:
            native = (settings.height // 8, settings.width // 8)
            check_one_row_fits(model, (1, channels, *native), "native_width/native_height")
        names = "latent" if latent is not None and settings is None else "width/height"
        check_one_row_fits(model, (1, channels, *latent_size), names)

    @staticmethod
    def _generation_settings(
        model,
        count,
        seed,
        positive,
        negative,
        steps,
        cfg,
        sampler,
        scheduler,
        native_width,
        native_height,
    ):
        default_w, default_h = self_calibration.native_size(model)
        native = (native_width or default_w, native_height or default_h)
        calibrate_inputs.check_image_size(model, *native, "native_width/native_height")
        return self_calibration.GenerationSettings(
            width=(native_width or default_w) // 8 * 8,
            height=(native_height or default_h) // 8 * 8,
            count=int(count),
            steps=int(steps),
            cfg=float(cfg),
            sampler=sampler,
            scheduler=scheduler,
            seed=int(seed),
            conditioning=self_calibration.conditioning_digest(positive, negative),
        )

    @staticmethod
    def _phases(sigmas, count, check, correction, settings):
        """One progress bar for the whole run, its phase named on the node."""
        steps = sum(1 for s in sigmas.tolist()[:-1] if s > 0)
        fit, held = held_out_check.split(count) if check == "held-out" else (count, 0)
        generation = 0
        if settings is not None:  # rows at the native size, in target-size rows
            generation = settings.count * settings.steps * (2 if settings.cfg > 1 else 1)
        plan = calibrate.plan(steps, fit, held, correction, generation)
        return Phases(plan, calibrate.comfy_progress(BAR_UNITS), progress_text())

    def _self_generated(
        self, model, key, settings, positive, negative, vae, width, height, max_batch, phases
    ):
        channels = model.get_model_object("latent_format").latent_channels
        native_shape = (1, channels, settings.height // 8, settings.width // 8)
        rows = 2 if settings.cfg > 1 else 1  # cfg > 1 runs the negative too
        with phases.phase(GENERATION, model) as progress:
            native, cached = self_calibration.generated_set(
                model,
                key,
                settings,
                self.store().write_dir,
                positive,
                negative,
                max_batch=memory.batch_size(model, native_shape, max_batch, rows),
                progress=progress,
            )
        latents = self_calibration.to_target(native, width, height, vae, max_batch)
        how = "through the VAE" if vae is not None else "resized in latent space"
        origin = "cached" if cached else "new"
        return latents, f"{SELF_GENERATED} ({origin}): {settings.describe()}, {how}"

    @staticmethod
    def _connected_size(model, latent, image, width, height, sample_count):
        """(latent size, count) of connected data, checked before encoding anything."""
        if latent is not None:
            samples = latent["samples"]
            used = samples[:sample_count] if isinstance(samples, torch.Tensor) else samples
            calibrate_inputs.check_latents(model, used)
            calibrate_inputs.check_latent_size(model, samples)
            return tuple(samples.shape[-2:]), min(sample_count, samples.shape[0])
        calibrate_inputs.check_image_size(model, width, height, "width/height")
        return (height // 8, width // 8), min(sample_count, image.shape[0])

    @staticmethod
    def _latents(latent, image, vae, width, height, max_batch) -> tuple[torch.Tensor, str]:
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
        encoded = []
        for start in range(0, image.shape[0], max_batch):
            # Cancel is honoured between batches, not only after the whole set
            comfy.model_management.throw_exception_if_processing_interrupted()
            part = image[start : start + max_batch, ..., :3].movedim(-1, 1)
            pixels = center_crop_resize(part, height, width).movedim(1, -1)
            encoded.append(vae.encode(pixels.clamp(0, 1)))
        return torch.cat(encoded), "images + VAE"
