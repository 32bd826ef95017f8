"""Spectral schedule benchmark: FD of spectral sigmas against ComfyUI's schedulers.

Run from the repository root::

    .venv/bin/python bench/schedules.py            # full run (about 5 minutes, 2 cores)
    .venv/bin/python bench/schedules.py --quick    # smoke run (< 1 minute)
    .venv/bin/python bench/schedules.py --out DIR  # plots + JSON go to DIR (default out/bench)

Not a test: nothing here fails the run. Each target prints PASS or MISS.

Setup (docs/design.md sections 2.4 and 5). The exact-denoiser testbed "trained" at M = 32
(4 channels, the two spectra of bench/noiseshift.py) as a ComfyUI MODEL
(shift 1, sigma range [0.001, 1]), sampled at N = M and N = M/2 (there the
model is mismatched, "pixel" variant). The spectrum is the RAPSD
(``noisecal.spectra.rapsd``) of 64 calibration fields at N; the schedule is
``noisecal.spectral_schedule.spectral_sigmas`` with the model's sigma range.
Core schedules come from ``comfy.samplers.calculate_sigmas(model_sampling,
name, steps)``; every schedule runs through ComfyUI's SamplerCustom path
(``comfy.sample.sample_custom`` with a SIGMAS tensor).

FD. Sampler and model are linear and act per Fourier frequency, so a sample
is the noise filtered by a gain ``G(k)`` that depends only on the schedule.
Running ComfyUI's sampler on a unit impulse gives ``G`` (its unnormalized
DFT), hence the exact, infinite-sample FD: ``mean_k (|G(k)| - sqrt(P(k)))^2``
with P the true power at N. No estimator noise, so schedules that differ by a
few percent can be ranked. Section 2 checks it against the usual FD of 512
samples (``noisecal.testing.metrics.frechet_distance``, sampling seed 3003).

Sections:

1. FD at 4, 6, 8, 12, 16, 32 steps with euler and dpmpp_2m (the benchmark's
   second-order sampler; heun is reported as well, without targets): the six
   core schedulers, the four spectral variants (default first), the default
   with per-seed schedules (16 seeds, FD of the mixed samples, closed form) and the
   FD-optimal "oracle" schedule. Oracle: the interior sigmas (and the first
   one, sigma_0 in [0.05, 0.9999]) optimized directly with L-BFGS-B on the
   closed-form FD (the same gains computed in float64 from the sampler's
   update rules; monotone by construction: sigma_0 then softplus decrements of
   logit(sigma)), started from the best core schedule, "simple" and the
   default spectral schedule, then re-evaluated through ComfyUI. An oracle no
   user has: it is tuned on the true FD of this very model. "gap closed" =
   (FD best core - FD default) / (FD best core - FD oracle).
2. Sampled FD (512 samples) against the exact FD, with the estimator's floor,
   for the default and the best core schedule at 4, 8 and 32 steps.
3. Selection: variants and thresholds over the benchmark spectra and four
   held-out spectra (closed-form FD, N = M and M/2): how the default was
   chosen.
4. Properties: the schedule under a shifted model (SD3's shift 3) and the
   cost of computing RAPSD and sigmas.

Seeds: calibration fields 1001 (``sample_field``), sampled FD 3003, per-seed
schedules 0..15.
"""

from __future__ import annotations

import math
import statistics
import sys
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

CAL_DATA_SEED = 1001
SAMPLE_SEED = 3003
M = 32
CHANNELS = 4
CORE = ("simple", "normal", "karras", "exponential", "sgm_uniform", "beta")
TARGET_SAMPLERS = ("euler", "dpmpp_2m")

FULL = {
    "spectra": [(3.0, 2.5), (1.0, 3.5)],
    "heldout": [(2.0, 3.0), (5.0, 2.0), (1.0, 2.5), (4.0, 4.0)],
    "resolutions": [M, M // 2],
    "steps": [4, 6, 8, 12, 16, 32],
    "samplers": ["euler", "dpmpp_2m", "heun"],
    "oracle_samplers": ["euler", "dpmpp_2m"],
    "oracle_maxiter": 200,
    "cal_count": 64,
    "seeds": 16,
    "samples": 512,
    "sampled_steps": [4, 8, 32],
    "sampled_samplers": ["euler", "dpmpp_2m"],
    "sweep_steps": [4, 6, 8, 32],
    "sweep_thresholds": [(0.03, 30.0), (0.1, 10.0), (0.3, 3.0)],
    "sweep_exponents": [0.0, 1.0, 2.0],
}
QUICK = {
    **FULL,
    "spectra": [(3.0, 2.5)],
    "heldout": [(4.0, 4.0)],
    "steps": [4, 8, 32],
    "samplers": ["euler", "dpmpp_2m"],
    "oracle_samplers": ["euler"],
    "oracle_maxiter": 60,
    "seeds": 4,
    "samples": 128,
    "sampled_steps": [4],
    "sampled_samplers": ["euler"],
    "sweep_steps": [4, 32],
    "sweep_thresholds": [(0.1, 10.0)],
    "sweep_exponents": [0.0, 2.0],
}


# --------------------------------------------------------------------------- helpers


def pct(v, spec="+.0f") -> str:
    return "n/a" if v is None else format(100.0 * v, spec) + "%"


# --------------------------------------------------------------------------- closed form


def _gain(sampler: str, s, pm, torch):
    """Per-frequency gain of ComfyUI's sampler on the exact denoiser (float64, autograd-able).

    ``s``: sigmas (ending at 0), ``pm``: the power the model assumes at each
    frequency. Mirrors k-diffusion's sample_euler / sample_dpmpp_2m /
    sample_heun (no churn) with denoised = x - s * v, v the model's velocity.
    """

    def g_denoised(si):
        return (1 - si) * pm / ((1 - si) ** 2 * pm + si**2)

    x = s[0] * torch.ones_like(pm)
    old = None
    for i in range(len(s) - 1):
        si, sn = s[i], s[i + 1]
        if sampler == "euler":
            x = x + (sn - si) * (1 - g_denoised(si)) / si * x
        elif sampler == "heun":
            d = (1 - g_denoised(si)) / si * x
            if sn == 0:
                x = x + d * (sn - si)
            else:
                x2 = x + d * (sn - si)
                d2 = (1 - g_denoised(sn)) / sn * x2
                x = x + (d + d2) / 2 * (sn - si)
        elif sampler == "dpmpp_2m":
            den = g_denoised(si) * x
            if sn == 0:
                x = den
            else:
                h = torch.log(si) - torch.log(sn)
                if old is None:
                    x = (sn / si) * x - torch.expm1(-h) * den
                else:
                    r = (torch.log(s[i - 1]) - torch.log(si)) / h
                    dd = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old
                    x = (sn / si) * x - torch.expm1(-h) * dd
            old = den
        else:
            raise ValueError(sampler)
    return x


class ClosedForm:
    """FD of a schedule from the sampler's gains on unique (model power, true power) pairs."""

    def __init__(self, pm, pt, torch):
        self.torch = torch
        pairs = torch.stack([pm.reshape(-1), pt.reshape(-1)], dim=1)
        uniq, counts = torch.unique(pairs, dim=0, return_counts=True)
        self.pm, self.pt = uniq[:, 0].contiguous(), uniq[:, 1].contiguous()
        self.w = counts.to(torch.float64) / counts.sum()

    def fd_tensor(self, s, sampler):
        g = _gain(sampler, s, self.pm, self.torch)
        return (self.w * (g.abs() - self.pt.sqrt()).square()).sum()

    def fd(self, sigmas, sampler) -> float:
        s = self.torch.as_tensor(sigmas).to(self.torch.float64).reshape(-1)
        return float(self.fd_tensor(s, sampler))

    def fd_mixture(self, sigma_list, sampler) -> float:
        """FD of samples each drawn with its own schedule (per-seed schedules)."""
        torch = self.torch
        v = 0.0
        for sig in sigma_list:
            s = torch.as_tensor(sig).to(torch.float64).reshape(-1)
            v = v + _gain(sampler, s, self.pm, torch).square()
        v = v / len(sigma_list)
        return float((self.w * (v.sqrt() - self.pt.sqrt()).square()).sum())

    def oracle(self, sampler, inits, maxiter):
        """Minimize FD over the sigmas; returns (fd, sigmas float64)."""
        from scipy.optimize import minimize

        torch = self.torch
        softplus = torch.nn.functional.softplus

        def unpack(z):
            s0 = z[0]
            logit0 = torch.log(s0) - torch.log1p(-s0)
            rest = torch.sigmoid(logit0 - torch.cumsum(softplus(z[1:]), 0))
            zero = torch.zeros(1, dtype=torch.float64)
            return torch.cat([s0.reshape(1), rest, zero])

        def pack(s):
            s = torch.as_tensor(s, dtype=torch.float64)[:-1].clamp(1e-4, 0.9999)
            logit = torch.log(s) - torch.log1p(-s)
            d = (logit[:-1] - logit[1:]).clamp_min(1e-3)
            return torch.cat([s[:1], torch.log(torch.expm1(d))]).numpy()

        def objective(zn):
            z = torch.tensor(zn, dtype=torch.float64, requires_grad=True)
            loss = self.fd_tensor(unpack(z), sampler)
            loss.backward()
            return loss.item(), z.grad.numpy().copy()

        best = None
        for s_init in inits:
            z0 = pack(s_init)
            bounds = [(0.05, 0.9999)] + [(None, None)] * (len(z0) - 1)
            res = minimize(
                objective,
                z0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": maxiter},
            )
            cand = (float(res.fun), unpack(torch.tensor(res.x)).detach())
            if best is None or cand[0] < best[0]:
                best = cand
        return best


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
        self.agreement: list[float] = []  # |closed form - ComfyUI| / ComfyUI

    def _import_pack(self):
        from noisecal_host.host import ensure_host

        self.host = ensure_host()
        from noisecal_host.pack_loader import load_pack

        load_pack()
        import comfy.model_sampling
        import comfy.sample
        import comfy.samplers
        import torch

        from noise_calibration.noisecal import spectra, spectral_schedule
        from noise_calibration.noisecal.testing import metrics
        from noise_calibration.noisecal.testing.testbed import (
            ExactDenoiser,
            FieldSpectrum,
            sample_field,
        )
        from noise_calibration.noisecal_host.testing import sampling, testbed_model

        self.torch = torch
        self.comfy_samplers, self.comfy_sample = comfy.samplers, comfy.sample
        self.comfy_model_sampling = comfy.model_sampling
        self.metrics, self.spectra_mod, self.ss = metrics, spectra, spectral_schedule
        self.ExactDenoiser, self.FieldSpectrum = ExactDenoiser, FieldSpectrum
        self.sample_field = sample_field
        self.sampling, self.testbed_model = sampling, testbed_model

    # ---- per-cell setup

    def model(self, sp):
        if sp not in self._models:
            self._models[sp] = self.testbed_model.make_testbed_model(sp, M, "pixel")
        return self._models[sp]

    def stats(self, sp, n):
        gen = self.torch.Generator().manual_seed(CAL_DATA_SEED)
        return self.spectra_mod.rapsd(self.sample_field(sp, n, self.cfg["cal_count"], gen))

    def closed_form(self, sp, n):
        pm = self.ExactDenoiser(sp, M, "pixel").assumed_power(n)
        return ClosedForm(pm, sp.power(n), self.torch)

    def sigma_range(self, model):
        ms = model.get_model_object("model_sampling")
        return float(ms.sigma_min), float(ms.sigma_max)

    def core_sigmas(self, model, name, steps):
        ms = model.get_model_object("model_sampling")
        return self.comfy_samplers.calculate_sigmas(ms, name, steps).to(self.torch.float32)

    def spectral(self, stats, model, steps, variant=None, seed=None, **kw):
        return self.ss.spectral_sigmas(
            stats,
            steps,
            parameterization="flow",
            variant=variant or self.ss.DEFAULT_VARIANT,
            sigma_range=self.sigma_range(model),
            seed=seed,
            **kw,
        )

    # ---- ComfyUI evaluation

    def gain2(self, model, sigmas, sampler, n):
        """|G(k)|^2 [n, n] through ComfyUI's SamplerCustom path (impulse response)."""
        torch = self.torch
        noise = torch.zeros(1, CHANNELS, n, n)
        noise[:, :, 0, 0] = 1.0
        latent = torch.zeros_like(noise)
        cond = self.testbed_model.make_testbed_conditioning(1)
        out = self.comfy_sample.sample_custom(
            model,
            noise,
            1.0,
            self.comfy_samplers.sampler_object(sampler),
            torch.as_tensor(sigmas, dtype=torch.float32),
            cond,
            cond,
            latent,
            disable_pbar=True,
            seed=0,
        )
        return torch.fft.fft2(out.to(torch.float64)).abs().square().mean(dim=(0, 1))

    def fd_exact(self, model, sigmas, sampler, sp, n, cf=None):
        """Exact FD through ComfyUI; with ``cf`` also records the closed form's agreement."""
        v = self.gain2(model, sigmas, sampler, n)
        fd = float((v.sqrt() - sp.power(n).sqrt()).square().mean())
        if cf is not None and fd > 0:
            self.agreement.append(abs(cf.fd(sigmas, sampler) - fd) / fd)
        return fd

    # ---- section 1

    def section_fd(self):
        print("=" * 78 + "\n1. Exact FD: spectral schedules against ComfyUI's schedulers\n")
        cfg = self.cfg
        variants = self.ss.VARIANTS
        default = self.ss.DEFAULT_VARIANT
        cases = []
        self.cells = []
        for sp in self.spectra:
            model = self.model(sp)
            for n in cfg["resolutions"]:
                stats = self.stats(sp, n)
                cf = self.closed_form(sp, n)
                bounds = self.ss.schedule_bounds(stats, "flow")
                converged = self.fd_exact(
                    model, self.core_sigmas(model, "simple", 200), "euler", sp, n
                )
                self.cells.append(
                    {
                        "spectrum": spectrum_name(sp),
                        "N": n,
                        "stats": stats.to_json(),
                        "bounds_ref": bounds,
                        "fd_euler_200_simple": converged,
                    }
                )
                for sampler in cfg["samplers"]:
                    for steps in cfg["steps"]:
                        t0 = time.perf_counter()
                        core = {}
                        core_sigmas = {}
                        for name in CORE:
                            sig = self.core_sigmas(model, name, steps)
                            core_sigmas[name] = sig
                            core[name] = self.fd_exact(model, sig, sampler, sp, n, cf)
                        spec, spec_sigmas = {}, {}
                        for v in variants:
                            sig = self.spectral(stats, model, steps, v)
                            spec_sigmas[v] = sig
                            spec[v] = self.fd_exact(model, sig, sampler, sp, n, cf)
                        seeds = [
                            self.spectral(stats, model, steps, default, seed=k)
                            for k in range(cfg["seeds"])
                        ]
                        fd_seeded = cf.fd_mixture(seeds, sampler)
                        best = min(core, key=core.get)
                        oracle = oracle_cf = oracle_sig = None
                        if sampler in cfg["oracle_samplers"]:
                            inits = [core_sigmas[best], spec_sigmas[default]]
                            if best != "simple":
                                inits.append(core_sigmas["simple"])
                            oracle_cf, oracle_sig = cf.oracle(sampler, inits, cfg["oracle_maxiter"])
                            oracle = self.fd_exact(model, oracle_sig, sampler, sp, n)
                        fd_def = spec[default]
                        gap = None
                        if oracle is not None and core[best] > oracle:
                            gap = (core[best] - fd_def) / (core[best] - oracle)
                        gap_simple = None
                        if oracle is not None and core["simple"] > oracle:
                            gap_simple = (core["simple"] - fd_def) / (core["simple"] - oracle)
                        cases.append(
                            {
                                "spectrum": spectrum_name(sp),
                                "N": n,
                                "sampler": sampler,
                                "steps": steps,
                                "core": core,
                                "spectral": spec,
                                "fd_default": fd_def,
                                "fd_default_per_seed": fd_seeded,
                                "best_core": best,
                                "fd_best_core": core[best],
                                "ratio_best_core": fd_def / core[best],
                                "fd_oracle": oracle,
                                "fd_oracle_closed_form": oracle_cf,
                                "gap_closed_vs_best_core": gap,
                                "gap_closed_vs_simple": gap_simple,
                                "sigmas_default": spec_sigmas[default].tolist(),
                                "sigmas_variants": {k: v.tolist() for k, v in spec_sigmas.items()},
                                "sigmas_core": {k: v.tolist() for k, v in core_sigmas.items()},
                                "sigmas_oracle": None
                                if oracle_sig is None
                                else oracle_sig.tolist(),
                                "seconds": time.perf_counter() - t0,
                            }
                        )
                print(f"  {spectrum_name(sp)} N={n}: done ({len(cases)} cases so far)", flush=True)
        self.data["fd"] = cases
        self.data["cells"] = self.cells
        self._tables_fd(cases)
        self._verdicts_fd(cases)

    def _tables_fd(self, cases):
        default = self.ss.DEFAULT_VARIANT
        variants = self.ss.VARIANTS
        for sampler in self.cfg["samplers"]:
            rows = []
            for c in (c for c in cases if c["sampler"] == sampler):
                rows.append(
                    [
                        c["spectrum"],
                        c["N"],
                        c["steps"],
                        *[fmt(c["core"][k]) for k in CORE],
                        fmt(c["fd_default"]),
                        f"{c['ratio_best_core']:.3f}",
                        fmt(c["fd_oracle"]),
                        pct(c["gap_closed_vs_best_core"]),
                        pct(c["gap_closed_vs_simple"]),
                    ]
                )
            self.tables.append(
                print_table(
                    f"Table 1 ({sampler}): exact FD to the true field; default = '{default}'",
                    [
                        "spectrum",
                        "N",
                        "steps",
                        *CORE,
                        "default",
                        "def/best",
                        "oracle",
                        "gap best",
                        "gap simple",
                    ],
                    rows,
                )
            )
        rows = []
        for c in cases:
            rows.append(
                [
                    c["spectrum"],
                    c["N"],
                    c["sampler"],
                    c["steps"],
                    *[fmt(c["spectral"][v]) for v in variants],
                    fmt(c["fd_default_per_seed"]),
                    f"{c['best_core']}",
                ]
            )
        self.tables.append(
            print_table(
                "Table 2: exact FD of each spectral variant, and of the default with per-seed "
                f"schedules ({self.cfg['seeds']} seeds)",
                ["spectrum", "N", "sampler", "steps", *variants, "per-seed", "best core"],
                rows,
            )
        )
        rows = [
            [
                c["spectrum"],
                c["N"],
                f"{c['bounds_ref'][0]:.4f}",
                f"{c['bounds_ref'][1]:.4f}",
                fmt(c["fd_euler_200_simple"]),
            ]
            for c in self.cells
        ]
        self.tables.append(
            print_table(
                "Table 3: spectral bounds at the reference thresholds (SNR 0.1 / 10) and the "
                "model's converged FD (200 Euler steps, simple)",
                ["spectrum", "N", "sigma_min", "sigma_max", "FD 200 steps"],
                rows,
            )
        )
        print(
            "(def/best = FD default / FD of the best core scheduler in that row; gap best, gap\n"
            " simple = share of the way from that scheduler's FD to the oracle's that the default\n"
            " goes (negative: worse than the scheduler). At N = M/2 the model is mismatched: its\n"
            " own error dominates the FD and does not shrink with more steps, see Table 3)\n"
        )
        if self.agreement:
            print(
                f"closed form vs ComfyUI: max relative FD difference {max(self.agreement):.2e} "
                f"over {len(self.agreement)} schedules\n"
            )

    def _verdicts_fd(self, cases):
        default = self.ss.DEFAULT_VARIANT
        for c in cases:
            if c["sampler"] not in TARGET_SAMPLERS:
                continue
            name = f"{c['spectrum']} N={c['N']} {c['sampler']} {c['steps']} steps"
            if c["steps"] <= 8:
                losers = [k for k in CORE if not c["fd_default"] < c["core"][k]]
                self.verdicts.check(
                    not losers,
                    f"T1 {name}: {default} FD {c['fd_default']:.5f} vs best core "
                    f"{c['best_core']} {c['fd_best_core']:.5f} (ratio {c['ratio_best_core']:.3f})"
                    + (f"; not below {', '.join(losers)}" if losers else "")
                    + f"; gap to oracle closed {pct(c['gap_closed_vs_best_core'])}"
                    + " (target: below every core scheduler)",
                )
            if c["steps"] == 32:
                self.verdicts.check(
                    c["ratio_best_core"] <= 1.05,
                    f"T2 {name}: {default} FD {c['fd_default']:.6f} vs best core "
                    f"{c['best_core']} {c['fd_best_core']:.6f} (ratio {c['ratio_best_core']:.3f}, "
                    "target <= 1.05)",
                )
        for sampler in TARGET_SAMPLERS:
            for n in self.cfg["resolutions"]:
                gaps = [
                    c["gap_closed_vs_best_core"]
                    for c in cases
                    if c["sampler"] == sampler
                    and c["N"] == n
                    and c["steps"] <= 8
                    and c["gap_closed_vs_best_core"] is not None
                ]
                if gaps:
                    print(
                        f"gap to the oracle closed at <= 8 steps, {sampler}, N={n}: median "
                        f"{pct(statistics.median(gaps))}, range {pct(min(gaps))} .. "
                        f"{pct(max(gaps))} (vs the best core scheduler of each row)"
                    )
        print()
        if self.agreement:
            worst = max(self.agreement)
            self.verdicts.check(
                worst <= 1e-3,
                f"T3 closed-form FD (oracle objective) agrees with ComfyUI's sampler: max rel. "
                f"diff {worst:.2e} over {len(self.agreement)} schedules (target <= 1e-3)",
            )

    # ---- section 2

    def section_sampled(self):
        print("=" * 78 + "\n2. Sampled FD (SamplerCustom, noise from a seed) vs exact FD\n")
        cfg = self.cfg
        rows, out = [], []
        by_key = {(c["spectrum"], c["N"], c["sampler"], c["steps"]): c for c in self.data["fd"]}
        for sp in self.spectra:
            model = self.model(sp)
            for n in cfg["resolutions"]:
                floor = self.metrics.fd_noise_floor(sp.power(n), cfg["samples"], CHANNELS)
                for sampler in cfg["sampled_samplers"]:
                    for steps in cfg["sampled_steps"]:
                        c = by_key.get((spectrum_name(sp), n, sampler, steps))
                        if c is None:
                            continue
                        picks = {
                            "default": c["sigmas_default"],
                            c["best_core"]: c["sigmas_core"][c["best_core"]],
                        }
                        for label, sig in picks.items():
                            exact = c["fd_default"] if label == "default" else c["core"][label]
                            lat = self.sampling.empty_latent(model, n, n, cfg["samples"])
                            cond = self.testbed_model.make_testbed_conditioning(cfg["samples"])
                            samples = self.sampling.sample_with_sigmas(
                                model,
                                lat,
                                cond,
                                self.torch.tensor(sig, dtype=self.torch.float32),
                                seed=SAMPLE_SEED,
                                sampler_name=sampler,
                            )
                            fd = self.metrics.frechet_distance(samples, sp.power(n))
                            out.append(
                                {
                                    "spectrum": spectrum_name(sp),
                                    "N": n,
                                    "sampler": sampler,
                                    "steps": steps,
                                    "schedule": label,
                                    "fd_sampled": fd,
                                    "fd_exact": exact,
                                    "floor": floor,
                                }
                            )
                            rows.append(
                                [
                                    spectrum_name(sp),
                                    n,
                                    sampler,
                                    steps,
                                    label,
                                    fmt(exact),
                                    fmt(fd),
                                    f"{(fd - exact) / floor:+.2f}",
                                ]
                            )
        self.tables.append(
            print_table(
                f"Table 4: FD of {cfg['samples']} samples (seed {SAMPLE_SEED}) vs the exact FD; "
                f"noise floor {fmt(out[0]['floor'] if out else None)} (N=M)",
                ["spectrum", "N", "sampler", "steps", "schedule", "exact", "sampled", "diff/floor"],
                rows,
            )
        )
        self.data["sampled"] = out
        groups: dict = {}
        for r in out:
            groups.setdefault((r["spectrum"], r["N"], r["sampler"], r["steps"]), []).append(r)
        flips = []
        for key, rs in groups.items():
            for a in rs:
                for b in rs:
                    # a pair the exact FD separates by more than the estimator's floor
                    if a["fd_exact"] + 2 * a["floor"] < b["fd_exact"] and not (
                        a["fd_sampled"] < b["fd_sampled"]
                    ):
                        flips.append(f"{key} {a['schedule']} vs {b['schedule']}")
        if out:
            self.verdicts.check(
                not flips,
                f"T5 sampled FD ({cfg['samples']} samples) ranks the schedules as the exact FD "
                f"does in all {len(groups)} groups"
                + (f"; flipped: {'; '.join(flips)}" if flips else "")
                + " (pairs further apart than 2 noise floors)",
            )

    # ---- section 3

    def section_selection(self):
        print("=" * 78 + "\n3. Selection of the default variant and thresholds (closed form)\n")
        cfg = self.cfg
        torch = self.torch
        spectra = [(sp, "bench") for sp in self.spectra] + [
            (self.FieldSpectrum(f0, a, CHANNELS), "held-out") for f0, a in cfg["heldout"]
        ]
        rng = self.sigma_range(self.model(self.spectra[0]))
        ms = self.model(self.spectra[0]).get_model_object("model_sampling")
        cells = []
        for sp, group in spectra:
            for n in cfg["resolutions"] if group == "bench" else [M]:
                stats = self.stats(sp, n)
                cf = self.closed_form(sp, n)
                for sampler in cfg["samplers"]:
                    for steps in cfg["sweep_steps"]:
                        best = min(
                            cf.fd(self.comfy_samplers.calculate_sigmas(ms, k, steps), sampler)
                            for k in CORE
                        )
                        cells.append((group, spectrum_name(sp), n, stats, cf, sampler, steps, best))
        ref = self.ss.REFERENCE_STEPS
        rows, out = [], []
        for variant in self.ss.VARIANTS:
            for low, high in cfg["sweep_thresholds"]:
                for k in cfg["sweep_exponents"]:
                    score = {}
                    for _group, _, n, stats, cf, sampler, steps, best in cells:
                        scale = (ref / steps) ** k
                        sig = self.ss.spectral_sigmas(
                            stats,
                            steps,
                            variant=variant,
                            sigma_range=rng,
                            snr_low=min(low * scale, 1.0),
                            snr_high=max(high / scale, 1.0),
                        )
                        r = cf.fd(sig.to(torch.float64), sampler) / best
                        key = (sampler, "few" if steps <= 8 else "many", n == M)
                        score.setdefault(key, []).append(r)
                    entry = {"variant": variant, "snr_low": low, "snr_high": high, "exponent": k}
                    row = [variant, f"{low:g}/{high:g}", f"{k:g}"]
                    for sampler in cfg["samplers"]:
                        few = score.get((sampler, "few", True), [])
                        many = score.get((sampler, "many", True), [])
                        few_h = score.get((sampler, "few", False), [])
                        geo = math.exp(statistics.fmean(math.log(x) for x in few + many))
                        entry[sampler] = {
                            "wins_few_matched": sum(x < 1 for x in few),
                            "cells_few_matched": len(few),
                            "worst_few_matched": max(few),
                            "worst_many_matched": max(many) if many else None,
                            "wins_few_half_res": sum(x < 1 for x in few_h),
                            "cells_few_half_res": len(few_h),
                            "geo_mean_matched": geo,
                        }
                        row += [
                            f"{sum(x < 1 for x in few)}/{len(few)}",
                            f"{max(few):.2f}",
                            fmt(max(many) if many else None, ".2f"),
                            f"{geo:.2f}",
                        ]
                    out.append(entry)
                    rows.append(row)
        header = ["variant", "SNR lo/hi @8", "exp"]
        for sampler in cfg["samplers"]:
            short = {"euler": "eu", "dpmpp_2m": "dpm", "heun": "heun"}.get(sampler, sampler)
            header += [f"{short} wins", f"{short} worst", f"{short} w32", f"{short} geo"]
        n_spectra = len(spectra)
        self.tables.append(
            print_table(
                f"Table 5: FD / best core FD over {n_spectra} spectra at N = M "
                f"({len(self.spectra)} benchmark + {len(cfg['heldout'])} held-out); "
                f"steps {cfg['sweep_steps']}",
                header,
                rows,
            )
        )
        print(
            "(wins: cells at <= 8 steps below every core scheduler; worst: the largest ratio\n"
            " there; w32: the largest ratio at 32 steps; geo: geometric mean of all ratios.\n"
            " Thresholds scale as snr_low * (8/steps)^exp, snr_high * (steps/8)^exp)\n"
        )
        self.data["selection"] = out

    # ---- section 4

    def section_properties(self):
        print("=" * 78 + "\n4. Properties: shifted models, cost\n")
        torch = self.torch
        sp = self.spectra[0]
        stats = self.stats(sp, M)
        rows, out = [], []
        base = None
        for shift in (1.0, 3.0):
            ms = self.comfy_model_sampling.ModelSamplingDiscreteFlow()
            ms.set_parameters(shift=shift)
            rng = (float(ms.sigma_min), float(ms.sigma_max))
            sig = self.ss.spectral_sigmas(stats, 8, sigma_range=rng)
            simple = self.comfy_samplers.calculate_sigmas(ms, "simple", 8)
            if base is None:
                base = sig
            same = bool(torch.equal(sig, base))
            out.append(
                {"shift": shift, "range": rng, "sigmas": sig.tolist(), "same_as_shift_1": same}
            )
            rows.append(
                [
                    f"{shift:g}",
                    f"[{rng[0]:.4f}, {rng[1]:.4f}]",
                    " ".join(f"{v:.3f}" for v in sig.tolist()),
                    " ".join(f"{v:.3f}" for v in simple.tolist()),
                ]
            )
        self.tables.append(
            print_table(
                f"Table 6: 8-step spectral schedule ({spectrum_name(sp)}, N={M}) under model "
                "shifts, and the model's own 'simple' schedule",
                ["shift", "sigma range", "spectral sigmas", "simple sigmas"],
                rows,
            )
        )
        print(
            "(the spectral levels are absolute: a shift changes the model's range and its\n"
            " timestep map, not the schedule; shift 3 gives the same sigmas here because the\n"
            " bounds lie inside both ranges)\n"
        )

        def timeit(fn, reps):
            fn()
            samples = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                samples.append((time.perf_counter() - t0) / reps)
            return statistics.median(samples)

        lat = self.sample_field(sp, 128, 64, torch.Generator().manual_seed(CAL_DATA_SEED))
        cost = {
            "rapsd_64x4x128x128_ms": 1000 * timeit(lambda: self.spectra_mod.rapsd(lat), 2),
            "spectral_sigmas_8_ms": 1000
            * timeit(lambda: self.ss.spectral_sigmas(stats, 8, sigma_range=(0.001, 1.0)), 20),
            "spectral_sigmas_32_seed_ms": 1000
            * timeit(lambda: self.ss.spectral_sigmas(stats, 32, seed=5), 20),
        }
        print(
            "cost (median): rapsd of 64 x 4 x 128 x 128 latents "
            f"{cost['rapsd_64x4x128x128_ms']:.1f} ms; spectral_sigmas 8 steps "
            f"{cost['spectral_sigmas_8_ms']:.2f} ms; 32 steps with a seed "
            f"{cost['spectral_sigmas_32_seed_ms']:.2f} ms\n"
        )
        self.data["properties"] = {"shift": out, "cost": cost}

    # ---- plots and output

    def plots(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker

        self.out.mkdir(parents=True, exist_ok=True)
        written = []
        cases = self.data.get("fd", [])
        if not cases:
            return written
        default = self.ss.DEFAULT_VARIANT
        panels = []
        for c in cases:
            key = (c["spectrum"], c["N"])
            if key not in panels:
                panels.append(key)
        samplers = self.cfg["samplers"]
        fig, axes = plt.subplots(
            len(panels),
            len(samplers),
            figsize=(4.3 * len(samplers), 3.4 * len(panels)),
            squeeze=False,
        )
        colors = plt.get_cmap("tab10")
        for i, key in enumerate(panels):
            for j, sampler in enumerate(samplers):
                ax = axes[i][j]
                rows = [
                    c for c in cases if (c["spectrum"], c["N"]) == key and c["sampler"] == sampler
                ]
                steps = [c["steps"] for c in rows]
                for k, name in enumerate(CORE):
                    ax.plot(
                        steps,
                        [c["core"][name] for c in rows],
                        color=colors(k),
                        lw=1,
                        marker=".",
                        label=name,
                    )
                ax.plot(
                    steps,
                    [c["fd_default"] for c in rows],
                    color="k",
                    lw=2.2,
                    marker="o",
                    label=f"spectral ({default})",
                )
                if rows and rows[0]["fd_oracle"] is not None:
                    ax.plot(
                        steps,
                        [c["fd_oracle"] for c in rows],
                        color="k",
                        ls="--",
                        lw=1,
                        label="oracle (FD-optimal)",
                    )
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_xticks(steps)
                ax.set_xticklabels([str(s) for s in steps])
                ax.set_title(f"{key[0]}, N={key[1]}, {sampler}", fontsize=9)
                if j == 0:
                    ax.set_ylabel("exact FD")
                if i == len(panels) - 1:
                    ax.set_xlabel("steps")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
        fig.suptitle(f"Testbed FD vs steps (model trained at M={M})")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        path = self.out / "schedules_fd.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

        # schedules at 8 steps and the spectra with their bounds
        picks = [c for c in cases if c["steps"] == 8 and c["sampler"] == "euler"]
        if picks:
            fig, axes = plt.subplots(2, len(picks), figsize=(4.2 * len(picks), 7), squeeze=False)
            for j, c in enumerate(picks):
                ax = axes[0][j]
                for k, name in enumerate(CORE):
                    ax.plot(c["sigmas_core"][name], color=colors(k), lw=1, marker=".", label=name)
                for v, ls in zip(self.ss.VARIANTS, ("-", "-.", ":", "--"), strict=False):
                    ax.plot(
                        c["sigmas_variants"][v],
                        color="k",
                        lw=2 if v == default else 1,
                        ls=ls,
                        label=f"spectral {v}",
                    )
                if c["sigmas_oracle"] is not None:
                    ax.plot(c["sigmas_oracle"], color="m", lw=1.5, ls="--", label="oracle (euler)")
                ax.set_title(f"{c['spectrum']}, N={c['N']}: 8 steps", fontsize=9)
                ax.set_xlabel("step")
                ax.set_ylabel("sigma")
                cell = next(
                    x for x in self.cells if (x["spectrum"], x["N"]) == (c["spectrum"], c["N"])
                )
                st = cell["stats"]
                p = np.mean(np.array(st["power"]), axis=0)
                ax2 = axes[1][j]
                ax2.loglog(st["freqs"][1:], p[1:], color="k")
                ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax2.set_xlabel("frequency (cycles/pixel)")
                ax2.set_ylabel("RAPSD (channel mean)")
                s_min, s_max = cell["bounds_ref"]
                ax2.set_title(f"bounds @8 steps: sigma in [{s_min:.3f}, {s_max:.3f}]", fontsize=9)
            handles, labels = axes[0][0].get_legend_handles_labels()
            axes[0][-1].legend(handles, labels, fontsize=6)
            fig.tight_layout()
            path = self.out / "schedules_sigmas.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        return written


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    t_start = time.perf_counter()
    bench = Bench(QUICK if args.quick else FULL, Path(args.out), args.quick)
    describe_run(bench, args.quick)
    timings = run_sections(
        (
            ("fd", bench.section_fd),
            ("sampled", bench.section_sampled),
            ("selection", bench.section_selection),
            ("properties", bench.section_properties),
        )
    )
    defaults = {
        "variant": bench.ss.DEFAULT_VARIANT,
        "snr_low": bench.ss.DEFAULT_SNR_LOW,
        "snr_high": bench.ss.DEFAULT_SNR_HIGH,
        "reference_steps": bench.ss.REFERENCE_STEPS,
        "threshold_exponent": bench.ss.THRESHOLD_EXPONENT,
    }

    def time_target(total):
        if not args.quick:
            bench.verdicts.check(total <= 600, f"T4 full run {total:.0f} s (target <= 600 s)")

    seeds = {"calibration_data": CAL_DATA_SEED, "sampling": SAMPLE_SEED}
    return finish(
        bench,
        "schedules",
        timings,
        t_start,
        seeds,
        extra={"defaults": defaults},
        after_total=time_target,
    )


if __name__ == "__main__":
    sys.exit(main())
