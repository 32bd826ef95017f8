"""Transitional: the helper class the correction, guidance and reference
benchmarks still build on (testbed models, calibration, FD, the NoiseShift
node), until they move to the modules of this package like
``bench/noiseshift.py``. Numbers and seeds as there."""

from __future__ import annotations

import time
from pathlib import Path

from bench.lib.calibration import CAL_ROWS_PIXELS
from bench.lib.report import Verdicts, jsonable, pct  # noqa: F401  (pct: for the scripts)
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED, TIMING_SEED  # noqa: F401
from bench.lib.testbed import CAL_SCHEDULER, CAL_STEPS, CHANNELS, M  # noqa: F401


class Bench:
    def __init__(self, cfg: dict, out_dir: Path, quick: bool):
        self.cfg = cfg
        self.out = out_dir
        self.quick = quick
        self.verdicts = Verdicts()
        self.tables: list[str] = []
        self.data: dict = {"mode": "quick" if quick else "full", "config": jsonable(cfg)}
        self._import_pack()
        self.spectra = [self.FieldSpectrum(f0, a, CHANNELS) for f0, a in cfg["spectra"]]
        self._models: dict = {}

    def _import_pack(self):
        from noisecal_host.host import ensure_host

        self.host = ensure_host()
        from noisecal_host.pack_loader import load_pack

        pack = load_pack()
        import comfy.samplers
        import torch

        from noise_calibration.noisecal import noiseshift_search as search
        from noise_calibration.noisecal import store
        from noise_calibration.noisecal.testing import metrics
        from noise_calibration.noisecal.testing.testbed import (
            ExactDenoiser,
            FieldSpectrum,
            sample_field,
        )
        from noise_calibration.noisecal_host import calibrate
        from noise_calibration.noisecal_host.fingerprint import checkpoint_key
        from noise_calibration.noisecal_host.testing import sampling, testbed_model, tiny_models

        self.torch = torch
        self.comfy_samplers = comfy.samplers
        self.metrics, self.search, self.store = metrics, search, store
        self.ExactDenoiser, self.FieldSpectrum, self.sample_field = (
            ExactDenoiser,
            FieldSpectrum,
            sample_field,
        )
        self.calibrate, self.sampling = calibrate, sampling
        self.testbed_model, self.tiny_models = testbed_model, tiny_models
        self.checkpoint_key = checkpoint_key
        self.NoiseShiftNode = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseShift"]

    # ---- models, calibration, sampling

    def model(self, sp, train_res: int, variant: str):
        key = (sp, train_res, variant)
        if key not in self._models:
            self._models[key] = self.testbed_model.make_testbed_model(sp, train_res, variant)
        return self._models[key]

    def sigmas(self, model, steps: int, scheduler: str):
        ms = model.get_model_object("model_sampling")
        return self.comfy_samplers.calculate_sigmas(ms, scheduler, steps).to(self.torch.float64)

    def cal_latents(self, sp, n: int, count: int):
        gen = self.torch.Generator().manual_seed(CAL_DATA_SEED)
        return self.sample_field(sp, n, count, gen)

    def run_calibration(self, model, latents, sigmas, mode: str, max_batch=None, positive=None):
        """run_search plus a schema-1 record the NoiseShift node can use."""
        if max_batch is None:
            max_batch = max(1, CAL_ROWS_PIXELS // (latents.shape[-1] * latents.shape[-2]))
        t0 = time.perf_counter()
        res, _ = self.calibrate.run_search(
            model,
            latents,
            sigmas,
            positive=positive,
            mode=mode,
            seed=SEARCH_SEED,
            max_batch=max_batch,
        )
        wall = time.perf_counter() - t0
        h, w = latents.shape[-2:]
        record = self.store.make_record(
            key=self.checkpoint_key(model),
            image_size=(8 * w, 8 * h),
            latent_size=(h, w),
            parameterization=self.calibrate.parameterization_of(model),
            method=f"noiseshift-{mode}",
            method_params=res.params,
            sigmas=res.sigmas,
            sigma_hat=res.sigma_hat,
            calibration_set={
                "count": int(latents.shape[0]),
                "source": "bench",
                "seed": CAL_DATA_SEED,
            },
            error_before=res.error_before,
            error_after=res.error_after,
            network_evaluations=res.nfe,
            wall_time_s=wall,
        )
        return res, record, wall

    def noiseshift(self, model, record):
        (patched,) = self.NoiseShiftNode().apply(model, 1.0, "error", "", calibration=[record])
        return patched

    def fd(self, model, sp, n, *, steps=CAL_STEPS, sampler="euler", scheduler=CAL_SCHEDULER):
        count = self.cfg["samples"]
        lat = self.sampling.empty_latent(model, n, n, count)
        cond = self.testbed_model.make_testbed_conditioning(count)
        out = self.sampling.ksample(
            model,
            lat,
            cond,
            seed=SAMPLE_SEED,
            steps=steps,
            sampler_name=sampler,
            scheduler=scheduler,
        )
        return self.metrics.frechet_distance(out, sp.power(n))

    def floor(self, sp, n):
        return self.metrics.fd_noise_floor(sp.power(n), self.cfg["samples"], sp.channels)

    @staticmethod
    def gap(plain, method, native):
        if not plain > native:
            return None
        return (plain - method) / (plain - native)
