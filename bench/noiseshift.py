"""NoiseShift benchmark: quality, transfer, search cost and sampling overhead.

Run from the repository root::

    .venv/bin/python bench/noiseshift.py            # full run (a few minutes, 2 cores)
    .venv/bin/python bench/noiseshift.py --quick    # smoke run (< 1 minute)
    .venv/bin/python bench/noiseshift.py --out DIR  # plots + JSON go to DIR (default out/bench)

Not a test: nothing here fails the run. Each target prints PASS or MISS.

Everything runs through ComfyUI's own code (the host from
``noisecal_host.host``): calibration through ``noisecal_host.calibrate.run_search``
(the search runs inside a ComfyUI sampler on the MODEL), sampling through
``comfy.sample.sample`` (KSampler), NoiseShift applied with the pack's
NoiseShift node and a connected calibration record.

Sections (DESIGN.md 2.1 and 5):

1. Testbed quality. The exact-denoiser testbed "trained" at M = 32, sampled
   at N = M, M/2, M/4 (two spectra, both mismatch variants, 20 Euler steps,
   "simple"): FD of plain / NoiseShift / native (exact denoiser for N), the
   gap closed and the FD estimator's noise floor.
2. Transfer. Calibrated at 20 simple Euler steps, applied at 10 and 40 steps,
   with the "beta" and "normal" schedulers and with dpmpp_2m; "recal" is a
   calibration made at the target schedule itself, for comparison.
3. Search cost. Grid (the paper's coarse-to-fine search) against fast (ours):
   network evaluations (NFE), wall time and the total one-step error, plus an
   exhaustive check of single steps (``noisecal.noiseshift_search.step_errors`` on a
   dense candidate list).
4. Overhead. Sampling wall time with NoiseShift (a real calibration record
   for that resolution) against the unpatched model on tiny SD3 and tiny Flux,
   interleaved repeats, medians; the level function is profiled per call.

Seeds: calibration data, search noise and sampling noise use different seeds
(the same seed would make x0 and eps the same white noise).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402  (needs ROOT on sys.path)
    Verdicts,
    describe_run,
    finish,
    fmt,
    jsonable,
    parse_args,
    print_table,
    run_sections,
    spectrum_name,
)

CAL_DATA_SEED = 1001  # generator of the calibration latents (sample_field)
SEARCH_SEED = 2002  # eps of the calibration search
SAMPLE_SEED = 3003  # KSampler noise seed for the FD samples
TIMING_SEED = 4004  # noise for the overhead timing
M = 32  # testbed training resolution
CHANNELS = 4
CAL_STEPS = 20
CAL_SCHEDULER = "simple"
CAL_ROWS_PIXELS = (
    64 * 32 * 32
)  # rows x pixels per forward in the testbed search (memory-bound FFTs)

FULL = {
    "spectra": [(3.0, 2.5), (1.0, 3.5)],
    "variants": ["pixel", "image"],
    "resolutions": [M, M // 2, M // 4],
    "cal_count": 64,
    "samples": 512,
    # (label, steps, sampler, scheduler)
    "transfer": [
        ("10 steps", 10, "euler", "simple"),
        ("40 steps", 40, "euler", "simple"),
        ("beta", 20, "euler", "beta"),
        ("normal", 20, "euler", "normal"),
        ("dpmpp_2m", 20, "dpmpp_2m", "simple"),
    ],
    "transfer_resolutions": [M // 2, M // 4],
    "transfer_spectra": 2,
    "cost_cases": [
        (0, "pixel", M),
        (0, "pixel", M // 2),
        (0, "image", M // 2),
        (0, "image", M // 4),
        (1, "pixel", M // 2),
        (1, "pixel", M // 4),
        (1, "image", M // 2),
    ],
    "exhaustive_cases": [(0, "pixel", M // 2), (0, "image", M // 4), (1, "pixel", M // 2)],
    "exhaustive_steps": [0, 2, 3, 7, 12, 15, 17, 19],
    "tiny_cost": True,
    "overhead": {
        "latent": 32,
        "batch": 4,
        "steps": 20,
        "repeats": 25,
        "warmup": 2,
        "calibrate": True,
        "timeit_reps": 300,
    },
}
QUICK = {
    "spectra": [(3.0, 2.5)],
    "variants": ["pixel", "image"],
    "resolutions": [M, M // 2, M // 4],
    "cal_count": 64,
    "samples": 256,
    "transfer": [
        ("10 steps", 10, "euler", "simple"),
        ("beta", 20, "euler", "beta"),
        ("dpmpp_2m", 20, "dpmpp_2m", "simple"),
    ],
    "transfer_resolutions": [M // 2],
    "transfer_spectra": 1,
    "cost_cases": [(0, "image", M // 2), (0, "pixel", M // 4)],
    "exhaustive_cases": [(0, "image", M // 2)],
    "exhaustive_steps": [0, 10],
    "tiny_cost": False,
    "overhead": {
        "latent": 32,
        "batch": 4,
        "steps": 10,
        "repeats": 4,
        "warmup": 1,
        "calibrate": False,
        "timeit_reps": 100,
    },
}


# --------------------------------------------------------------------------- helpers


def pct(v, spec="+.1f") -> str:
    return "n/a" if v is None else format(100.0 * v, spec) + "%"


# --------------------------------------------------------------------------- the bench


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

    # ---- section 1

    def section_quality(self):
        print("=" * 78 + "\n1. Testbed quality (M = 32, 20 Euler steps, simple)\n", flush=True)
        rows, cases = [], []
        self.calibrations: dict = {}
        for sp in self.spectra:
            for variant in self.cfg["variants"]:
                plain_model = self.model(sp, M, variant)
                sigmas = self.sigmas(plain_model, CAL_STEPS, CAL_SCHEDULER)
                for n in self.cfg["resolutions"]:
                    x0 = self.cal_latents(sp, n, self.cfg["cal_count"])
                    res, record, wall = self.run_calibration(plain_model, x0, sigmas, "fast")
                    self.calibrations[(sp, variant, n)] = (res, record, x0)
                    ns_model = self.noiseshift(plain_model, record)
                    native = self.model(sp, n, "pixel")  # trained at N: both variants agree
                    fd_plain = self.fd(plain_model, sp, n)
                    fd_ns = self.fd(ns_model, sp, n)
                    fd_native = fd_plain if n == M else self.fd(native, sp, n)
                    gap = None if n == M else self.gap(fd_plain, fd_ns, fd_native)
                    shifts = [h - s for s, h in zip(res.sigmas, res.sigma_hat, strict=True)]
                    max_shift = max(abs(v) for v in shifts)
                    signed = max(shifts, key=abs)
                    case = {
                        "spectrum": spectrum_name(sp),
                        "variant": variant,
                        "N": n,
                        "fd_plain": fd_plain,
                        "fd_noiseshift": fd_ns,
                        "fd_native": fd_native,
                        "gap_closed": gap,
                        "fd_floor": self.floor(sp, n),
                        "max_abs_shift": max_shift,
                        "largest_shift_signed": signed,
                        "nfe": res.nfe,
                        "calibration_s": wall,
                        "sigmas": res.sigmas,
                        "sigma_hat": res.sigma_hat,
                        "total_error_before": res.total_error_before,
                        "total_error_after": res.total_error_after,
                    }
                    cases.append(case)
                    rows.append(
                        [
                            spectrum_name(sp),
                            variant,
                            n,
                            fmt(fd_plain),
                            fmt(fd_ns),
                            fmt(fd_native),
                            pct(gap, ".0f"),
                            fmt(case["fd_floor"]),
                            f"{signed:+.4f}",
                            res.nfe,
                            f"{wall:.2f}",
                        ]
                    )
        self.tables.append(
            print_table(
                f"Table 1: FD to the true field ({self.cfg['samples']} samples, seed "
                f"{SAMPLE_SEED}); calibration fast mode, {self.cfg['cal_count']} latents",
                [
                    "spectrum",
                    "variant",
                    "N",
                    "FD plain",
                    "FD NoiseShift",
                    "FD native",
                    "gap closed",
                    "FD floor",
                    "max shift",
                    "cal NFE",
                    "cal s",
                ],
                rows,
            )
        )
        print("(max shift: the largest sigma_hat - sigma of the schedule, signed)\n")
        for c in cases:
            name = f"{c['spectrum']} {c['variant']} N={c['N']}"
            if c["N"] == M:
                self.verdicts.check(
                    c["max_abs_shift"] <= 0.01,
                    f"S1 {name}: max |sigma_hat - sigma| = {c['max_abs_shift']:.4f} "
                    "(target <= 0.01)",
                )
            else:
                g = c["gap_closed"]
                ok = self.verdicts.check(
                    g is not None and g >= 0.5,
                    f"S1 {name}: gap closed = {pct(g, '.0f')} (target >= 50%)",
                )
                if not ok:
                    c["diagnosis"] = self._diagnose(c)
        self.data["quality"] = cases

    def _diagnose(self, c):
        """A missed case: is it the search or the objective? Grid search and strength scan."""
        sp = next(s for s in self.spectra if spectrum_name(s) == c["spectrum"])
        n, variant = c["N"], c["variant"]
        res, record, x0 = self.calibrations[(sp, variant, n)]
        plain_model = self.model(sp, M, variant)
        grid, grid_record, _ = self.run_calibration(
            plain_model, x0, self.sigmas(plain_model, CAL_STEPS, CAL_SCHEDULER), "grid"
        )
        fd_grid = self.fd(self.noiseshift(plain_model, grid_record), sp, n)
        out = {
            "fd_grid": fd_grid,
            "gap_closed_grid": self.gap(c["fd_plain"], fd_grid, c["fd_native"]),
            "total_error_fast": res.total_error_after,
            "total_error_grid": grid.total_error_after,
            "total_error_plain": res.total_error_before,
            "strength_scan": {},
        }
        for strength in (0.5, 0.75, 1.25, 1.5):
            (pm,) = self.NoiseShiftNode().apply(
                plain_model, strength, "error", "", calibration=[record]
            )
            fd = self.fd(pm, sp, n)
            out["strength_scan"][strength] = (fd, self.gap(c["fd_plain"], fd, c["fd_native"]))
        scan = ", ".join(
            f"{k:g}: {v[0]:.5f} ({pct(v[1], '.0f')})" for k, v in out["strength_scan"].items()
        )
        print(
            f"      diagnosis: one-step total error plain {out['total_error_plain']:.6g}, "
            f"fast {out['total_error_fast']:.6g}, grid {out['total_error_grid']:.6g}; FD with "
            f"the grid calibration {fd_grid:.5f} (gap {pct(out['gap_closed_grid'], '.0f')}); "
            f"FD (gap) at NoiseShift strength {scan}",
            flush=True,
        )
        return out

    # ---- section 2

    def section_transfer(self):
        print("=" * 78 + "\n2. Transfer (calibrated at 20 Euler steps, simple)\n", flush=True)
        rows, cases = [], []
        for sp in self.spectra[: self.cfg["transfer_spectra"]]:
            for variant in self.cfg["variants"]:
                plain_model = self.model(sp, M, variant)
                for n in self.cfg["transfer_resolutions"]:
                    res, record, x0 = self.calibrations[(sp, variant, n)]
                    ns_model = self.noiseshift(plain_model, record)
                    native = self.model(sp, n, "pixel")
                    for label, steps, sampler, scheduler in self.cfg["transfer"]:
                        kw = {"steps": steps, "sampler": sampler, "scheduler": scheduler}
                        fd_plain = self.fd(plain_model, sp, n, **kw)
                        fd_ns = self.fd(ns_model, sp, n, **kw)
                        fd_native = self.fd(native, sp, n, **kw)
                        fd_recal = gap_recal = None
                        if sampler == "euler":  # the objective is an Euler step
                            sig = self.sigmas(plain_model, steps, scheduler)
                            _, rec2, _ = self.run_calibration(plain_model, x0, sig, "fast")
                            fd_recal = self.fd(self.noiseshift(plain_model, rec2), sp, n, **kw)
                            gap_recal = self.gap(fd_plain, fd_recal, fd_native)
                        gap = self.gap(fd_plain, fd_ns, fd_native)
                        case = {
                            "spectrum": spectrum_name(sp),
                            "variant": variant,
                            "N": n,
                            "applied_at": label,
                            "steps": steps,
                            "sampler": sampler,
                            "scheduler": scheduler,
                            "fd_plain": fd_plain,
                            "fd_noiseshift": fd_ns,
                            "fd_native": fd_native,
                            "gap_closed": gap,
                            "fd_recalibrated": fd_recal,
                            "gap_closed_recalibrated": gap_recal,
                        }
                        cases.append(case)
                        rows.append(
                            [
                                spectrum_name(sp),
                                variant,
                                n,
                                label,
                                fmt(fd_plain),
                                fmt(fd_ns),
                                fmt(fd_native),
                                pct(gap, ".0f"),
                                fmt(fd_recal),
                                pct(gap_recal, ".0f"),
                            ]
                        )
        self.tables.append(
            print_table(
                "Table 2: transfer of the 20-step simple calibration "
                "(recal = calibrated at the target schedule itself)",
                [
                    "spectrum",
                    "variant",
                    "N",
                    "applied at",
                    "FD plain",
                    "FD NoiseShift",
                    "FD native",
                    "gap closed",
                    "FD recal",
                    "gap recal",
                ],
                rows,
            )
        )
        self.data["transfer"] = cases

    # ---- section 3

    def direct_denoise(self, denoiser):
        """The testbed's denoise as ComfyUI forms it (velocity at the told level, true sigma)."""

        def denoise(x, sigma, sigma_cond):
            v = denoiser.velocity(x, sigma_cond)
            return x - sigma.to(x.dtype).reshape(-1, 1, 1, 1) * v

        return denoise

    def section_cost(self):
        print("=" * 78 + "\n3. Search cost: grid vs fast\n", flush=True)
        # warm-up so the first timed search does not pay for imports / caches
        sp0 = self.spectra[0]
        warm = self.model(sp0, M, "pixel")
        self.run_calibration(
            warm, self.cal_latents(sp0, 8, 4), self.sigmas(warm, 4, CAL_SCHEDULER), "grid"
        )
        rows, cases, results = [], [], {}
        for si, variant, n in self.cfg["cost_cases"]:
            sp = self.spectra[si]
            model = self.model(sp, M, variant)
            sigmas = self.sigmas(model, CAL_STEPS, CAL_SCHEDULER)
            x0 = self.cal_latents(sp, n, self.cfg["cal_count"])
            out = {}
            for mode in ("grid", "fast"):
                res, _, wall = self.run_calibration(model, x0, sigmas, mode)
                out[mode] = (res, wall)
            results[(si, variant, n)] = (out, x0, sigmas)
            case = self._cost_case(f"testbed {spectrum_name(sp)} {variant}", n, out)
            cases.append(case)
            rows.append(self._cost_row(case))
        if self.cfg["tiny_cost"]:
            tm = self.tiny_models.tiny_sd3()
            model = tm.patcher
            sigmas = self.sigmas(model, CAL_STEPS, CAL_SCHEDULER)
            gen = self.torch.Generator().manual_seed(CAL_DATA_SEED)
            x0 = self.torch.randn(8, 16, 16, 16, generator=gen)
            out = {}
            for mode in ("grid", "fast"):
                res, _, wall = self.run_calibration(
                    model, x0, sigmas, mode, max_batch=64, positive=tm.conditioning(1)
                )
                out[mode] = (res, wall)
            case = self._cost_case("tiny SD3 (random weights), 8 latents", 16, out, info=True)
            cases.append(case)
            rows.append(self._cost_row(case))
        self.tables.append(
            print_table(
                "Table 3a: calibration cost, 20-step simple schedule "
                f"({self.cfg['cal_count']} latents on the testbed); "
                "err = total one-step error after (sum over steps)",
                [
                    "case",
                    "N",
                    "grid NFE",
                    "fast NFE",
                    "NFE ratio",
                    "grid s",
                    "fast s",
                    "grid err",
                    "fast err",
                    "fast vs grid",
                    "before",
                ],
                rows,
            )
        )
        print("(fast vs grid: (fast - grid) / grid of the total error; negative = fast lower)\n")
        for c in cases:
            if c["info"]:
                continue
            name = f"{c['case']} N={c['N']}"
            self.verdicts.check(
                c["nfe_ratio"] >= 5,
                f"S3 {name}: grid/fast NFE = {c['nfe_ratio']:.1f}x (target >= 5x)",
            )
            self.verdicts.check(
                c["rel_error"] <= 0.01,
                f"S3 {name}: fast total error {pct(c['rel_error'], '+.3f')} vs grid "
                f"(target within 1%, lower is better)",
            )
        self.data["cost"] = cases
        self._exhaustive(results)

    def _cost_case(self, name, n, out, info=False):
        g, gw = out["grid"]
        f, fw = out["fast"]
        return {
            "case": name,
            "N": n,
            "info": info,
            "grid_nfe": g.nfe,
            "fast_nfe": f.nfe,
            "nfe_ratio": g.nfe / f.nfe,
            "grid_s": gw,
            "fast_s": fw,
            "grid_error": g.total_error_after,
            "fast_error": f.total_error_after,
            "error_before": g.total_error_before,
            "rel_error": (f.total_error_after - g.total_error_after) / g.total_error_after,
            "grid_sigma_hat": g.sigma_hat,
            "fast_sigma_hat": f.sigma_hat,
            "sigmas": g.sigmas,
            "max_abs_hat_diff": max(
                abs(a - b) for a, b in zip(g.sigma_hat, f.sigma_hat, strict=True)
            ),
        }

    @staticmethod
    def _cost_row(c):
        return [
            c["case"] + (" [info]" if c["info"] else ""),
            c["N"],
            c["grid_nfe"],
            c["fast_nfe"],
            f"{c['nfe_ratio']:.1f}x",
            f"{c['grid_s']:.2f}",
            f"{c['fast_s']:.2f}",
            f"{c['grid_error']:.6g}",
            f"{c['fast_error']:.6g}",
            pct(c["rel_error"], "+.3f"),
            f"{c['error_before']:.6g}",
        ]

    def _exhaustive(self, results):
        rows, cases = [], []
        dense = [i / 1000 for i in range(1001)]
        for si, variant, n in self.cfg["exhaustive_cases"]:
            sp = self.spectra[si]
            out, x0, sigmas = results[(si, variant, n)]
            denoise = self.direct_denoise(self.ExactDenoiser(sp, M, variant))
            levels = [float(v) for v in sigmas]

            def errs(i, cands, _d=denoise, _x0=x0, _lv=levels):
                return self.search.step_errors(
                    _d,
                    _x0,
                    _lv[i],
                    _lv[i + 1],
                    cands,
                    seed=SEARCH_SEED,
                    max_batch=512,
                )

            for i in self.cfg["exhaustive_steps"]:
                e_dense = errs(i, dense)
                per_mode = {}
                for mode in ("grid", "fast"):
                    res = out[mode][0]
                    upper = 1.0 if i == 0 else res.sigma_hat[i - 1]
                    # exhaustive optimum of the same problem: candidates in [0, upper]
                    allowed = [(e, c) for e, c in zip(e_dense, dense, strict=True) if c <= upper]
                    _, c_best = min(allowed)
                    fine = sorted(
                        {min(max(c_best + k * 1e-4, 0.0), upper) for k in range(-20, 21)} | {upper}
                    )
                    e_fine = errs(i, fine)
                    e_star, c_star = min(zip(e_fine, fine, strict=True))
                    e_star = min(e_star, min(e for e, _ in allowed))
                    e_mode = errs(i, [res.sigma_hat[i]])[0]
                    per_mode[mode] = {
                        "sigma_hat": res.sigma_hat[i],
                        "upper": upper,
                        "exhaustive_sigma_hat": c_star,
                        "exhaustive_error": e_star,
                        "error": e_mode,
                        "excess": e_mode / e_star - 1.0,
                    }
                e_min, c_glob = min(zip(e_dense, dense, strict=True))
                case = {
                    "case": f"{spectrum_name(sp)} {variant} N={n}",
                    "step": i,
                    "sigma": levels[i],
                    "global_best_dense": c_glob,
                    "error_plain": errs(i, [levels[i]])[0],
                    **{m: v for m, v in per_mode.items()},
                }
                cases.append(case)
                g, f = per_mode["grid"], per_mode["fast"]
                rows.append(
                    [
                        case["case"],
                        i,
                        f"{levels[i]:.4f}",
                        f"{c_glob:.3f}",
                        f"{g['exhaustive_sigma_hat']:.4f}",
                        f"{g['sigma_hat']:.4f}",
                        pct(g["excess"], "+.4f"),
                        f"{f['exhaustive_sigma_hat']:.4f}",
                        f"{f['sigma_hat']:.4f}",
                        pct(f["excess"], "+.4f"),
                        f"{case['error_plain'] / g['exhaustive_error'] - 1:+.1%}",
                    ]
                )
        self.tables.append(
            print_table(
                "Table 3b: exhaustive check (dense candidates every 0.001 on [0, 1], then 0.0001 "
                "around the optimum, within each mode's allowed range [0, previous sigma_hat])",
                [
                    "case",
                    "step",
                    "sigma",
                    "global opt",
                    "optimum (grid range)",
                    "grid",
                    "grid excess",
                    "optimum (fast range)",
                    "fast",
                    "fast excess",
                    "plain excess",
                ],
                rows,
            )
        )
        print(
            "(global opt = best of the dense list on [0, 1]; excess = error / exhaustive optimum\n"
            " within that mode's range - 1; plain excess = conditioning on sigma itself, against\n"
            " the grid range's optimum)\n"
        )
        self.data["exhaustive"] = cases

    # ---- section 4

    def section_overhead(self):
        o = self.cfg["overhead"]
        print(
            "=" * 78 + f"\n4. Sampling overhead ({o['latent']}x{o['latent']} latent, batch "
            f"{o['batch']}, {o['steps']} Euler steps, cfg 1)\n",
            flush=True,
        )
        torch = self.torch
        rows, cases = [], []
        for name in ("sd3", "flux"):
            tm = self.tiny_models.TINY_MODELS[name]()
            model = tm.patcher
            sigmas = self.sigmas(model, o["steps"], CAL_SCHEDULER)
            h = w = o["latent"]
            if o["calibrate"]:
                gen = torch.Generator().manual_seed(CAL_DATA_SEED)
                lat = torch.randn(4, 16, h, w, generator=gen)
                res, record, cal_s = self.run_calibration(
                    model, lat, sigmas, "fast", max_batch=32, positive=tm.conditioning(1)
                )
                source = f"fast calibration ({res.nfe} NFE, {cal_s:.1f} s)"
            else:
                hats = [min(1.0, float(s) * 1.05) for s in sigmas[:-1]]
                record = self.store.make_record(
                    key=self.checkpoint_key(model),
                    image_size=(8 * w, 8 * h),
                    latent_size=(h, w),
                    parameterization="flow",
                    method="noiseshift-fast",
                    method_params={},
                    sigmas=[float(s) for s in sigmas[:-1]],
                    sigma_hat=hats,
                    calibration_set={"count": 1, "source": "identity plus shift", "seed": 0},
                )
                source = "identity-plus-shift record"
            patched = self.noiseshift(model, record)
            lat = self.sampling.empty_latent(model, w, h, o["batch"])
            cond = tm.conditioning(o["batch"])

            cpu = {}

            def run(m, _lat=lat, _cond=cond, cpu=cpu):
                c0, t0 = time.process_time(), time.perf_counter()
                self.sampling.ksample(m, _lat, _cond, seed=TIMING_SEED, steps=o["steps"])
                cpu["last"] = time.process_time() - c0
                return time.perf_counter() - t0

            for _ in range(o["warmup"]):
                run(model)
                run(patched)
            t_plain, t_patched, c_plain, c_patched = [], [], [], []
            for r in range(o["repeats"]):
                order = ((model, t_plain, c_plain), (patched, t_patched, c_patched))
                for m, acc, cacc in order if r % 2 == 0 else order[::-1]:
                    acc.append(run(m))
                    cacc.append(cpu["last"])
            med_p, med_n = statistics.median(t_plain), statistics.median(t_patched)
            pairs = [b / a for a, b in zip(t_plain, t_patched, strict=True)]
            pair = statistics.median(pairs)
            q1, _, q3 = statistics.quantiles(pairs, n=4)
            best = min(t_patched) / min(t_plain)
            cpu_ratio = statistics.median(c_patched) / statistics.median(c_plain)
            prof = self._profile_level(patched, model, sigmas, lat, cond, o, run)
            case = {
                "model": name,
                "record": source,
                "plain_s": t_plain,
                "patched_s": t_patched,
                "median_plain_s": med_p,
                "median_patched_s": med_n,
                "ratio": med_n / med_p,
                "median_pair_ratio": pair,
                "pair_ratio_quartiles": [q1, q3],
                "min_ratio": best,
                "plain_cpu_s": c_plain,
                "patched_cpu_s": c_patched,
                "cpu_ratio": cpu_ratio,
                "profile": prof,
            }
            case["profile"]["estimated_overhead"] = (
                prof["in_sample_patched_ms"] - prof["in_sample_plain_ms"]
            ) / (1000 * med_p)
            cases.append(case)
            rows.append(
                [
                    f"tiny {name}",
                    f"{1000 * med_p:.1f}",
                    f"{1000 * med_n:.1f}",
                    f"{case['ratio']:.4f}",
                    f"{pair:.4f}",
                    f"{q1:.3f}-{q3:.3f}",
                    f"{best:.4f}",
                    f"{cpu_ratio:.4f}",
                    prof["calls_per_sample"],
                    f"{prof['in_sample_plain_ms']:.2f}",
                    f"{prof['in_sample_patched_ms']:.2f}",
                    f"{prof['estimated_overhead']:+.2%}",
                ]
            )
            print(f"tiny {name}: NoiseShift record: {source}")
        print()
        self.tables.append(
            print_table(
                f"Table 4: sampling wall time, median of {o['repeats']} interleaved repeats",
                [
                    "model",
                    "plain ms",
                    "NoiseShift ms",
                    "ratio",
                    "pair ratio",
                    "pair IQR",
                    "min ratio",
                    "CPU-time ratio",
                    "timestep calls",
                    "in timestep() plain ms",
                    "NoiseShift ms",
                    "est. overhead",
                ],
                rows,
            )
        )
        prow = []
        for c in cases:
            p = c["profile"]
            prow.append(
                [
                    f"tiny {c['model']}",
                    f"{p['plain_timestep_us']:.1f}",
                    f"{p['patched_timestep_us']:.1f}",
                    f"{p['resolver_us']:.1f}",
                    f"{p['interp_us']:.1f}",
                    f"{p['interp_cached_us']:.1f}",
                    f"{p['interp_numpy_us']:.1f}",
                ]
            )
        self.tables.append(
            print_table(
                "Table 4b: per-call cost of the conditioning level (microseconds, median)",
                [
                    "model",
                    "timestep() plain",
                    "timestep() NoiseShift",
                    "level fn (resolver)",
                    "interp_sigma_hat",
                    "bare interpolation",
                    "numpy.interp",
                ],
                prow,
            )
        )
        print(
            "(ratio = median NoiseShift / median plain; pair ratio = median of the per-repeat\n"
            " ratios, pair IQR their quartiles (the measurement's spread); min ratio = fastest\n"
            " / fastest; CPU-time ratio = the medians of process CPU time. In timestep(): total\n"
            " time spent in model_sampling.timestep() during one timed sample, which for\n"
            " NoiseShift includes the level function; est. overhead = the difference / plain\n"
            " sample time.\n"
            " Bare interpolation = torch.searchsorted + lerp on prebuilt knot tensors,\n"
            " numpy.interp = the same on prebuilt knot arrays: what a map that validates once\n"
            " and keeps its knots would cost per call)\n"
        )
        for c in cases:
            self.verdicts.check(
                c["ratio"] <= 1.03,
                f"S4 tiny {c['model']}: patched/plain = {c['ratio']:.4f} (target <= 1.03)"
                + (f" [quick: {o['repeats']} repeats, noisy]" if self.quick else ""),
            )
        self.data["overhead"] = cases

    def _profile_level(self, patched, model, sigmas, lat, cond, o, run):
        """timestep() inside a real sample (calls, total time) and per-call microbenchmarks."""
        torch = self.torch
        ms_p = patched.get_model_object("model_sampling")
        ms_0 = model.get_model_object("model_sampling")
        resolver = ms_p.level_fns[0]

        def in_situ(cls, m):
            stats = {"n": 0, "s": 0.0}
            had = "timestep" in cls.__dict__
            orig = cls.timestep

            def timed(self_, sigma):
                t0 = time.perf_counter()
                try:
                    return orig(self_, sigma)
                finally:
                    stats["s"] += time.perf_counter() - t0
                    stats["n"] += 1

            cls.timestep = timed
            try:
                run(m)
            finally:
                if had:
                    cls.timestep = orig
                else:
                    delattr(cls, "timestep")
            return stats

        plain_situ = in_situ(type(ms_0), model)
        patched_situ = in_situ(type(ms_p), patched)
        hw = (o["latent"], o["latent"])
        sigma = torch.full((o["batch"],), float(sigmas[5]))
        ms_p.latent_hw = hw
        shift_map = resolver.map_for(hw)
        s_list, h_list = shift_map.curves[0]

        def timeit(fn, reps=o["timeit_reps"]):
            fn()
            samples = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                samples.append((time.perf_counter() - t0) / reps * 1e6)
            return statistics.median(samples)

        pairs = sorted(zip(s_list, h_list, strict=True))
        kx = torch.tensor([0.0] + [p[0] for p in pairs], dtype=torch.float64)
        ky = torch.tensor([0.0] + [p[1] for p in pairs], dtype=torch.float64)

        def bare():
            q = sigma.to(torch.float64)
            i = torch.searchsorted(kx, q).clamp(1, len(kx) - 1)
            t = (q - kx[i - 1]) / (kx[i] - kx[i - 1])
            return (ky[i - 1] + t * (ky[i] - ky[i - 1])).to(sigma.dtype)

        kx_np, ky_np = kx.numpy(), ky.numpy()

        def bare_numpy():
            q = np.interp(sigma.numpy().astype(np.float64), kx_np, ky_np)
            return torch.from_numpy(q).to(sigma.dtype)

        plain_us = timeit(lambda: ms_0.timestep(sigma))
        patched_us = timeit(lambda: ms_p.timestep(sigma))
        return {
            "calls_per_sample": patched_situ["n"],
            "plain_calls_per_sample": plain_situ["n"],
            "in_sample_plain_ms": 1000 * plain_situ["s"],
            "in_sample_patched_ms": 1000 * patched_situ["s"],
            "plain_timestep_us": plain_us,
            "patched_timestep_us": patched_us,
            "extra_us_per_call": patched_us - plain_us,
            "resolver_us": timeit(lambda: resolver(sigma, hw)),
            "interp_us": timeit(
                lambda: self.search.interp_sigma_hat(s_list, h_list, sigma, max_level=1.0)
            ),
            "interp_cached_us": timeit(bare),
            "interp_numpy_us": timeit(bare_numpy),
        }

    # ---- plots and output

    def plots(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.out.mkdir(parents=True, exist_ok=True)
        written = []
        cases = self.data.get("quality", [])
        groups = []
        for c in cases:
            g = (c["spectrum"], c["variant"])
            if g not in groups:
                groups.append(g)
        if cases:
            fig, axes = plt.subplots(2, len(groups), figsize=(4 * len(groups), 7), squeeze=False)
            for j, g in enumerate(groups):
                top, bottom = axes[0][j], axes[1][j]
                top.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="identity")
                bottom.axhline(0, color="0.6", linestyle="--")
                for c in cases:
                    if (c["spectrum"], c["variant"]) != g:
                        continue
                    top.plot(c["sigmas"], c["sigma_hat"], marker="o", ms=3, label=f"N={c['N']}")
                    shift = [h - s for s, h in zip(c["sigmas"], c["sigma_hat"], strict=True)]
                    bottom.plot(c["sigmas"], shift, marker="o", ms=3, label=f"N={c['N']}")
                top.set_title(f"{g[0]}, {g[1]} (M={M})")
                top.set_xlabel("sigma")
                top.set_ylabel("sigma_hat")
                bottom.set_xlabel("sigma")
                bottom.set_ylabel("sigma_hat - sigma")
                top.legend(fontsize=8)
            fig.tight_layout()
            path = self.out / "noiseshift_sigma_hat.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)

            fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(cases)), 4.5))
            labels = [f"{c['spectrum']}\n{c['variant']} N={c['N']}" for c in cases]
            x = list(range(len(cases)))
            width = 0.27
            for k, (key, name) in enumerate(
                (("fd_plain", "plain"), ("fd_noiseshift", "NoiseShift"), ("fd_native", "native"))
            ):
                ax.bar([i + (k - 1) * width for i in x], [c[key] for c in cases], width, label=name)
            ax.scatter(
                x, [c["fd_floor"] for c in cases], color="k", marker="_", s=300, label="FD floor"
            )
            ax.set_yscale("log")
            ax.set_xticks(x)
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_ylabel("FD to the true field")
            ax.set_title("Testbed FD, 20 Euler steps (simple)")
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = self.out / "noiseshift_fd.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)

        tr = self.data.get("transfer", [])
        if tr:
            panels = []
            for c in tr:
                key = (c["spectrum"], c["variant"], c["N"])
                if key not in panels:
                    panels.append(key)
            ncols = min(4, len(panels))
            nrows = math.ceil(len(panels) / ncols)
            fig, axes = plt.subplots(
                nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False
            )
            series = (
                ("fd_plain", "plain"),
                ("fd_noiseshift", "NoiseShift (20-step cal)"),
                ("fd_recalibrated", "NoiseShift (recal)"),
                ("fd_native", "native"),
            )
            width = 0.2
            for j, key in enumerate(panels):
                ax = axes[j // ncols][j % ncols]
                rows = [c for c in tr if (c["spectrum"], c["variant"], c["N"]) == key]
                x = list(range(len(rows)))
                for k, (field, name) in enumerate(series):
                    vals = [c[field] if c[field] is not None else float("nan") for c in rows]
                    ax.bar([i + (k - 1.5) * width for i in x], vals, width, label=name)
                ax.set_yscale("log")
                ax.set_xticks(x)
                ax.set_xticklabels([c["applied_at"] for c in rows], fontsize=7, rotation=30)
                ax.set_title(f"{key[0]}, {key[1]}, N={key[2]}", fontsize=9)
                if j % ncols == 0:
                    ax.set_ylabel("FD to the true field")
            for j in range(len(panels), nrows * ncols):
                axes[j // ncols][j % ncols].axis("off")
            handles, labels = axes[0][0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
            fig.suptitle("Transfer of the 20-step simple Euler calibration (M=32)")
            fig.tight_layout(rect=(0, 0.06, 1, 1))
            path = self.out / "noiseshift_transfer_fd.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        return written


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    # NoiseShift gets its calibration connected; an empty private store keeps
    # the user's calibration files out of it.
    os.environ["NOISE_CALIBRATION_DIR"] = tempfile.mkdtemp(prefix="noiseshift-bench-")
    t_start = time.perf_counter()
    bench = Bench(QUICK if args.quick else FULL, Path(args.out), args.quick)
    describe_run(bench, args.quick)
    timings = run_sections(
        (
            ("quality", bench.section_quality),
            ("transfer", bench.section_transfer),
            ("cost", bench.section_cost),
            ("overhead", bench.section_overhead),
        )
    )
    seeds = {
        "calibration_data": CAL_DATA_SEED,
        "search": SEARCH_SEED,
        "sampling": SAMPLE_SEED,
        "timing": TIMING_SEED,
    }
    return finish(bench, "noiseshift", timings, t_start, seeds)


if __name__ == "__main__":
    sys.exit(main())
