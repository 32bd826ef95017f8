"""Calibration sets for self-calibration: the model's own samples at its native size
(as the Calibrate node's data = "self-generate" makes them, counted), the resizes the
diagnostics compare with the pack's, the Calibrate node run on a set or
self-generating, and how close a set is to the true data."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
from bench.lib import testbed
from bench.lib.report import fmt
from bench.lib.seeds import SEARCH_SEED
from bench.lib.testbed import CAL_SCHEDULER, CAL_STEPS
from noise_calibration.noisecal.spectra import rapsd
from noise_calibration.noisecal.testing import metrics
from noise_calibration.noisecal_host import self_calibration
from noise_calibration.noisecal_host.fingerprint import checkpoint_key

GEN_STEPS = 20  # the Calibrate node's default generation_steps
GEN_CFG = 1.0
GEN_SAMPLER = "dpmpp_2m"
GEN_SCHEDULER = "simple"
GEN_SEED = SEARCH_SEED  # the Calibrate node generates and searches with its one seed


@dataclass
class Generated:
    """A self-generated set at the native size and what it cost."""

    latents: torch.Tensor
    settings: self_calibration.GenerationSettings
    nfe: int
    calls: int
    wall_s: float


def generation_settings(
    size_px: int, steps: int, count: int, positive, sampler: str = GEN_SAMPLER
) -> self_calibration.GenerationSettings:
    """What the Calibrate node builds for self-generation at the native size."""
    return self_calibration.GenerationSettings(
        width=size_px,
        height=size_px,
        count=count,
        steps=steps,
        cfg=GEN_CFG,
        sampler=sampler,
        scheduler=GEN_SCHEDULER,
        seed=GEN_SEED,
        conditioning=self_calibration.conditioning_digest(positive, None),
    )


def generate(model, settings, positive) -> Generated:
    """``self_calibration.generate``, its network evaluations counted and timed."""
    t0 = time.perf_counter()
    with testbed.counting(model) as counter:
        latents = self_calibration.generate(model, settings, positive=positive)
    wall = time.perf_counter() - t0
    return Generated(latents, settings, counter.rows, counter.calls, wall)


def spread_like(resized: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Each channel's mean and spread set to the source batch's (resize_latents'
    rescale, for the other resizes of the diagnostics)."""
    dims = (0, 2, 3)
    scale = source.std(dim=dims, keepdim=True) / resized.std(dim=dims, keepdim=True)
    return (resized - resized.mean(dim=dims, keepdim=True)) * scale + source.mean(
        dim=dims, keepdim=True
    )


def fourier_crop(x: torch.Tensor, n: int) -> torch.Tensor:
    """The band limit: keeps the DFT coefficients of frequencies below N/2 cycles per
    image (exact for the testbed's periodic fields, which no real image is)."""
    m = x.shape[-1]
    keep = torch.cat([torch.arange(0, n // 2), torch.arange(m - n // 2, m)])
    spec = torch.fft.fft2(x.to(torch.float64), norm="ortho")[..., keep, :][..., keep]
    return torch.fft.ifft2(spec * (n / m), norm="ortho").real.to(torch.float32)


def area_resize(x: torch.Tensor, n: int) -> torch.Tensor:
    """Area averaging to n x n, then the spread rescale."""
    return spread_like(F.interpolate(x, size=(n, n), mode="area"), x)


# --------------------------------------------------------------------------- the node


def calibrate_node(nodes, r, n: int, cfg: dict, mode: str, **inputs) -> tuple[dict, float]:
    """The Calibrate node on the reference `r` at N = n with search `mode`
    (recalibrate: never hands back an earlier record; no held-out check: every
    calibration uses every latent): (record, wall seconds)."""
    t0 = time.perf_counter()
    records, _, _ = nodes.node("Calibrate").calibrate(
        r.model,
        CAL_STEPS,
        CAL_SCHEDULER,
        mode,
        cfg["cal_count"],
        SEARCH_SEED,
        8 * n,
        8 * n,
        "",
        cfg["max_batch"],
        positive=r.positive,
        mode="recalibrate",
        check="off",  # calibrate on every latent, as the true-data calibration does
        **inputs,
    )["result"]
    return records[0], time.perf_counter() - t0


def self_generated_node(nodes, r, n: int, cfg: dict, mode: str):
    """The node's self-generate path, counted: (record, wall s, rows counted)."""
    with testbed.counting(r.model) as counter:
        record, wall = calibrate_node(
            nodes,
            r,
            n,
            cfg,
            mode,
            data="self-generate",
            generation_steps=GEN_STEPS,
            generation_cfg=GEN_CFG,
            generation_sampler=GEN_SAMPLER,
            generation_scheduler=GEN_SCHEDULER,
            native_width=8 * r.ref.train_res,
            native_height=8 * r.ref.train_res,
        )
    return record, wall, counter.rows


def node_generated_set(r, cfg: dict, folder) -> torch.Tensor:
    """The set the node generated, read back from its cache in `folder` (no network
    evaluation)."""
    settings = generation_settings(8 * r.ref.train_res, GEN_STEPS, cfg["cal_count"], r.positive)
    with testbed.counting(r.model) as counter:
        latents, cached = self_calibration.generated_set(
            r.model, checkpoint_key(r.model), settings, folder
        )
    if not cached or counter.rows:
        raise RuntimeError("the node's generated set was not found in its cache")
    return latents


# --------------------------------------------------------------------------- the data


def data_stats(x: torch.Tensor, true: torch.Tensor, power: torch.Tensor) -> dict:
    """How close a calibration set is to the true data at its size: per-channel std,
    RAPSD against the true set's (channel mean, per bin) and the set's own FD to the
    true field (the true set's is the estimator floor)."""
    std = x.to(torch.float64).std(dim=(0, 2, 3))
    mine, ref = rapsd(x), rapsd(true)
    ratio = (mine.mean_power() / ref.mean_power()).tolist()
    freqs = mine.freqs
    log_ratio = [math.log(r) for r in ratio[1:]]  # bin 0 is DC (the mean)
    return {
        "std_mean": float(std.mean()),
        "std_min": float(std.min()),
        "std_max": float(std.max()),
        "std_per_channel": std.tolist(),
        "rapsd_freqs": freqs,
        "rapsd_ratio": ratio,
        "rapsd_ratio_lowest": ratio[1],
        "rapsd_ratio_quarter": ratio[min(range(len(freqs)), key=lambda i: abs(freqs[i] - 0.25))],
        "rapsd_ratio_nyquist": ratio[min(range(len(freqs)), key=lambda i: abs(freqs[i] - 0.5))],
        "rapsd_rms_log_ratio": math.sqrt(sum(v * v for v in log_ratio) / len(log_ratio)),
        "data_fd": metrics.frechet_distance(x, power),
    }


def data_row(label: str, d: dict) -> list:
    """A row of DATA_HEADER."""
    return [
        label,
        f"{d['std_mean']:.4f}",
        f"{d['std_min']:.3f}..{d['std_max']:.3f}",
        f"{d['rapsd_ratio_lowest']:.3f}",
        f"{d['rapsd_ratio_quarter']:.3f}",
        f"{d['rapsd_ratio_nyquist']:.3f}",
        f"{d['rapsd_rms_log_ratio']:.3f}",
        fmt(d["data_fd"]),
    ]


DATA_HEADER = ["set", "std", "std range", "RAPSD low", "RAPSD 0.25", "RAPSD 0.5"]
DATA_HEADER += ["RAPSD rms log", "data FD"]
