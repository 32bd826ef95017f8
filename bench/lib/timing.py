"""Sampling wall time of two models, interleaved repeats, and its ratios; the time
spent in a patch's per-step function during a sample and per call."""

from __future__ import annotations

import functools
import statistics
import time

import numpy as np
import torch

from bench.lib.host import HOST  # noqa: F401  (bootstraps ComfyUI and the pack)
from bench.lib.seeds import TIMING_SEED
from noise_calibration.noisecal import sigma_hat_curve
from noise_calibration.noisecal_host.testing import sampling


class TimedSampler:
    """Samples `lat` with `cond` (KSampler, seed TIMING_SEED); each call returns its
    wall time and keeps its CPU time (``cpu``) and output (``out``)."""

    def __init__(self, lat, cond, steps: int):
        self.lat, self.cond, self.steps = lat, cond, steps
        self.cpu = 0.0
        self.out = None

    def __call__(self, model) -> float:
        c0, t0 = time.process_time(), time.perf_counter()
        self.out = sampling.ksample(model, self.lat, self.cond, seed=TIMING_SEED, steps=self.steps)
        self.cpu = time.process_time() - c0
        return time.perf_counter() - t0


def interleaved(run: TimedSampler, plain, patched, repeats: int, warmup: int) -> dict:
    """Warm-up pairs, then `repeats` pairs in alternating order: wall and CPU seconds."""
    for _ in range(warmup):
        run(plain)
        run(patched)
    t = {"plain": [], "patched": []}
    cpu = {"plain": [], "patched": []}
    for r in range(repeats):
        order = (("plain", plain), ("patched", patched))
        for name, m in order if r % 2 == 0 else order[::-1]:
            t[name].append(run(m))
            cpu[name].append(run.cpu)
    return {"t": t, "cpu": cpu}


def ratios(times: dict) -> dict:
    """Medians and ratios of patched to plain: median, per-pair median and quartiles,
    fastest to fastest, and CPU time."""
    t_plain, t_patched = times["t"]["plain"], times["t"]["patched"]
    c_plain, c_patched = times["cpu"]["plain"], times["cpu"]["patched"]
    med_p, med_n = statistics.median(t_plain), statistics.median(t_patched)
    pairs = [b / a for a, b in zip(t_plain, t_patched, strict=True)]
    q1, _, q3 = statistics.quantiles(pairs, n=4)
    return {
        "median_plain_s": med_p,
        "median_patched_s": med_n,
        "ratio": med_n / med_p,
        "median_pair_ratio": statistics.median(pairs),
        "pair_ratio_quartiles": [q1, q3],
        "min_ratio": min(t_patched) / min(t_plain),
        "cpu_ratio": statistics.median(c_patched) / statistics.median(c_plain),
    }


def counted(fn, stats: dict):
    """`fn` adding its calls to ``stats["n"]`` and its seconds to ``stats["s"]``; it
    keeps fn's attributes (the mark by which the pack's dropped-patch check knows a
    patch's function is still there)."""

    @functools.wraps(fn)
    def wrapped(*args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            stats["s"] += time.perf_counter() - t0
            stats["n"] += 1

    return wrapped


def timestep_in_sample(run: TimedSampler, model) -> dict:
    """Calls to and seconds in ``model_sampling.timestep()`` during one sample."""
    cls = type(model.get_model_object("model_sampling"))
    stats = {"n": 0, "s": 0.0}
    had = "timestep" in cls.__dict__
    orig = cls.timestep
    cls.timestep = counted(orig, stats)
    try:
        run(model)
    finally:
        if had:
            cls.timestep = orig
        else:
            delattr(cls, "timestep")
    return stats


def per_call_us(fn, reps: int) -> float:
    """Median over 5 rounds of the microseconds per call of `fn`."""
    fn()
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - t0) / reps * 1e6)
    return statistics.median(samples)


def bare_interpolations(s_list, h_list, sigma):
    """Interpolation on prebuilt knots, in torch and in numpy (what a validated map costs)."""
    pairs = sorted(zip(s_list, h_list, strict=True))
    kx = torch.tensor([0.0] + [p[0] for p in pairs], dtype=torch.float64)
    ky = torch.tensor([0.0] + [p[1] for p in pairs], dtype=torch.float64)
    kx_np, ky_np = kx.numpy(), ky.numpy()

    def bare():
        q = sigma.to(torch.float64)
        i = torch.searchsorted(kx, q).clamp(1, len(kx) - 1)
        t = (q - kx[i - 1]) / (kx[i] - kx[i - 1])
        return (ky[i - 1] + t * (ky[i] - ky[i - 1])).to(sigma.dtype)

    def bare_numpy():
        q = np.interp(sigma.numpy().astype(np.float64), kx_np, ky_np)
        return torch.from_numpy(q).to(sigma.dtype)

    return bare, bare_numpy


def level_profile(patched, model, sigmas, o: dict, run: TimedSampler) -> dict:
    """NoiseShift's level function: timestep() inside a real sample of each model (calls,
    total time) and per-call microbenchmarks of timestep(), the resolver, the
    interpolation and bare interpolations on prebuilt knots (`o`: latent, batch,
    timeit_reps)."""
    ms_p = patched.get_model_object("model_sampling")
    ms_0 = model.get_model_object("model_sampling")
    resolver = ms_p.level_fns[0]
    plain_situ = timestep_in_sample(run, model)
    patched_situ = timestep_in_sample(run, patched)
    hw = (o["latent"], o["latent"])
    sigma = torch.full((o["batch"],), float(sigmas[5]))
    ms_p.latent_hw = hw
    s_list, h_list = resolver.resolver.plan_for(hw).shift.curves[0]
    bare, bare_numpy = bare_interpolations(s_list, h_list, sigma)
    reps = o["timeit_reps"]
    plain_us = per_call_us(lambda: ms_0.timestep(sigma), reps)
    patched_us = per_call_us(lambda: ms_p.timestep(sigma), reps)
    return {
        "calls_per_sample": patched_situ["n"],
        "plain_calls_per_sample": plain_situ["n"],
        "in_sample_plain_ms": 1000 * plain_situ["s"],
        "in_sample_patched_ms": 1000 * patched_situ["s"],
        "plain_timestep_us": plain_us,
        "patched_timestep_us": patched_us,
        "extra_us_per_call": patched_us - plain_us,
        "resolver_us": per_call_us(lambda: resolver(sigma, hw), reps),
        "interp_us": per_call_us(
            lambda: sigma_hat_curve.interp_sigma_hat(s_list, h_list, sigma, max_level=1.0),
            reps,
        ),
        "interp_cached_us": per_call_us(bare, reps),
        "interp_numpy_us": per_call_us(bare_numpy, reps),
    }


def state_fn_profile(patched, run: TimedSampler, sigmas: list[float], o: dict) -> dict:
    """Calls to and seconds in the patch's state function during one sample, and its
    cost per call (`o`: latent, batch, reps)."""
    ms = patched.get_model_object("model_sampling")
    fns = ms.state_fns
    stats = {"n": 0, "s": 0.0}
    ms.state_fns = tuple(counted(fn, stats) for fn in fns)
    try:
        run(patched)
    finally:
        ms.state_fns = fns
    hw = (o["latent"], o["latent"])
    sigma = torch.full((o["batch"],), sigmas[len(sigmas) // 2])
    return {
        "calls": stats["n"],
        "in_sample_ms": 1000 * stats["s"],
        "state_fn_us": per_call_us(lambda: fns[0](sigma, hw), o["reps"]),
    }
