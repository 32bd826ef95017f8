"""The exact-denoiser testbed as a ComfyUI MODEL: models, schedules,
calibration latents, FD of KSampler samples, the noise floor, gap closed."""

from __future__ import annotations

import contextlib
import functools

import torch

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
import comfy.samplers

from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED
from noise_calibration.noisecal.testing import metrics
from noise_calibration.noisecal.testing.testbed import FieldSpectrum, sample_field
from noise_calibration.noisecal_host.testing import sampling, testbed_model

M = 32  # testbed training resolution
CHANNELS = 4
CAL_STEPS = 20  # the schedule NoiseShift is calibrated at
CAL_SCHEDULER = "simple"


def spectra(pairs, channels: int = CHANNELS) -> list[FieldSpectrum]:
    """FieldSpectrum per (f0, alpha) pair."""
    return [FieldSpectrum(f0, a, channels) for f0, a in pairs]


@functools.cache
def model(sp: FieldSpectrum, train_res: int, variant: str):
    """The testbed MODEL trained at `train_res` (one per process and key)."""
    return testbed_model.make_testbed_model(sp, train_res, variant)


def sigmas(model, steps: int, scheduler: str = CAL_SCHEDULER) -> torch.Tensor:
    ms = model.get_model_object("model_sampling")
    return comfy.samplers.calculate_sigmas(ms, scheduler, steps).to(torch.float64)


def cal_latents(sp: FieldSpectrum, n: int, count: int) -> torch.Tensor:
    """Calibration latents: true field samples at N = n, seed CAL_DATA_SEED."""
    gen = torch.Generator().manual_seed(CAL_DATA_SEED)
    return sample_field(sp, n, count, gen)


def ksample_testbed(model, n: int, count: int, *, steps, sampler, scheduler):
    """`count` KSampler samples of size n x n, seed SAMPLE_SEED."""
    lat = sampling.empty_latent(model, n, n, count)
    cond = testbed_model.make_testbed_conditioning(count)
    return sampling.ksample(
        model, lat, cond, seed=SAMPLE_SEED, steps=steps, sampler_name=sampler, scheduler=scheduler
    )


def fd(model, sp, n, count, *, steps=CAL_STEPS, sampler="euler", scheduler=CAL_SCHEDULER):
    """FD of `count` KSampler samples to the true field at N = n."""
    out = ksample_testbed(model, n, count, steps=steps, sampler=sampler, scheduler=scheduler)
    return metrics.frechet_distance(out, sp.power(n))


def floor(sp, n, count) -> float:
    """The expected FD of `count` true samples (the estimator's noise floor)."""
    return metrics.fd_noise_floor(sp.power(n), count, sp.channels)


def gap(plain, method, native):
    """The share of the plain-to-native FD gap a method closes; None without a gap."""
    if not plain > native:
        return None
    return (plain - method) / (plain - native)


class NetworkCounter:
    """Counts the network's calls and batch rows (a forward hook, once per network)."""

    def __init__(self):
        self.calls = 0
        self.rows = 0
        self._hooked: set[int] = set()

    def watch(self, model):
        net = model.model.diffusion_model
        if id(net) not in self._hooked:
            self._hooked.add(id(net))
            net.register_forward_hook(self._hook)
        return model

    def _hook(self, _mod, args, _out):
        self.calls += 1
        self.rows += int(args[0].shape[0])

    def reset(self) -> None:
        self.calls = self.rows = 0


@contextlib.contextmanager
def counting(model):
    """A NetworkCounter on `model`'s network inside the block only (the hook is
    removed after, so timings that follow run without it)."""
    counter = NetworkCounter()
    handle = model.model.diffusion_model.register_forward_hook(counter._hook)
    try:
        yield counter
    finally:
        handle.remove()
