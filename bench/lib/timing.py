"""Sampling wall time of two models, interleaved repeats, and its ratios."""

from __future__ import annotations

import statistics
import time

from bench.lib.host import HOST  # noqa: F401  (bootstraps ComfyUI and the pack)
from bench.lib.seeds import TIMING_SEED
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


def timestep_in_sample(run: TimedSampler, model) -> dict:
    """Calls to and seconds in ``model_sampling.timestep()`` during one sample."""
    cls = type(model.get_model_object("model_sampling"))
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
