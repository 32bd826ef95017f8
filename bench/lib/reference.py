"""The trained reference network as the benchmarks use it: loaded with its zero
conditioning, FD of its KSampler samples, and the exact denoiser for N."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.lib import testbed
from bench.lib.seeds import SAMPLE_SEED
from bench.lib.testbed import CAL_SCHEDULER, CAL_STEPS
from noise_calibration.noisecal.testing import metrics
from noise_calibration.noisecal_host import demo_models
from noise_calibration.noisecal_host.model_info import zero_conditioning
from noise_calibration.noisecal_host.testing import sampling


@dataclass
class Reference:
    """The reference network, its conditioning and how long loading took."""

    ref: demo_models.Reference
    positive: list
    load_s: float

    @property
    def model(self):
        return self.ref.model


def load() -> Reference:
    t0 = time.perf_counter()
    loaded = demo_models.load_reference()
    return Reference(loaded, zero_conditioning(loaded.model), time.perf_counter() - t0)


def fd(r: Reference, model, n: int, count: int, steps: int = CAL_STEPS) -> float:
    """FD to the true field at N = n of `model`'s Euler samples (KSampler)."""
    lat = sampling.empty_latent(model, n, n, count)
    out = sampling.ksample(
        model,
        lat,
        r.positive,
        seed=SAMPLE_SEED,
        steps=steps,
        sampler_name="euler",
        scheduler=CAL_SCHEDULER,
    )
    return samples_fd(r, model, out, n)


def fd_timed(r: Reference, model, n: int, count: int, steps: int = CAL_STEPS):
    """``fd`` and the sampling wall seconds."""
    t0 = time.perf_counter()
    value = fd(r, model, n, count, steps)
    return value, time.perf_counter() - t0


def fd_with_sigmas(r: Reference, model, n: int, count: int, sigmas, sampler: str) -> float:
    """FD to the true field at N = n of `model`'s samples on the given SIGMAS
    (SamplerCustom, the same noise as `fd`)."""
    lat = sampling.empty_latent(model, n, n, count)
    out = sampling.sample_with_sigmas(
        model, lat, r.positive, sigmas, seed=SAMPLE_SEED, sampler_name=sampler
    )
    return samples_fd(r, model, out, n)


def samples_fd(r: Reference, model, out, n: int) -> float:
    """FD of sampled latents to the true field at N = n (through the SD3 latent
    format first: the field lives in the model's space)."""
    out = model.model.process_latent_in(out)
    return metrics.frechet_distance(out, r.ref.spectrum.power(n))


def native_fd(r: Reference, n: int, count: int, steps: int = CAL_STEPS) -> float:
    """FD of the exact testbed denoiser for N = n on the same data and schedule."""
    native = demo_models.reference_native(r.ref, n)
    out = testbed.ksample_testbed(
        native, n, count, steps=steps, sampler="euler", scheduler=CAL_SCHEDULER
    )
    return metrics.frechet_distance(out, r.ref.spectrum.power(n))


def info(r: Reference) -> dict:
    """The reference network, as the results JSON records it."""
    return {
        "file": r.ref.path.name,
        "sha256": r.ref.sidecar.get("sha256"),
        "train_res": r.ref.train_res,
        "shift": r.ref.shift,
        "spectrum": r.ref.sidecar["data"]["spectrum"],
        "load_s": r.load_s,
    }
