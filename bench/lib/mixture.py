"""The mixture testbed as a ComfyUI MODEL and its measures: the batch-spectrum FD,
the per-sample log band-power SWD against a true set and the component-histogram
TV, each with its floor (``noisecal/testing/per_sample.py``)."""

from __future__ import annotations

import functools

import torch

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
from bench.lib.seeds import CAL_DATA_SEED
from noise_calibration.noisecal.testing import per_sample
from noise_calibration.noisecal.testing.metrics import frechet_distance
from noise_calibration.noisecal.testing.mixture import MIXTURES, sample_mixture
from noise_calibration.noisecal_host.testing import testbed_model

TRUE_SEED = 5005  # the true set the per-sample SWD compares with
FLOOR_SEED = 6006  # the true sets of the floors
MEASURES = ("fd", "swd", "tv")
TITLES = {
    "fd": "batch-spectrum FD to the mean power",
    "swd": "per-sample log band-power SWD",
    "tv": "component-histogram TV to the weights",
}


@functools.cache
def model(name: str, train_res: int, variant: str):
    """The mixture MODEL trained at `train_res` (one per process and key)."""
    return testbed_model.make_mixture_model(MIXTURES[name], train_res, variant)


def cal_latents(name: str, n: int, count: int) -> torch.Tensor:
    """Calibration latents: true mixture samples at N = n, seed CAL_DATA_SEED."""
    gen = torch.Generator().manual_seed(CAL_DATA_SEED)
    return sample_mixture(MIXTURES[name], n, count, gen)[0]


@functools.cache
def true_set(name: str, n: int, count: int) -> torch.Tensor:
    """The true samples the per-sample SWD compares with (seed TRUE_SEED)."""
    return sample_mixture(MIXTURES[name], n, count, torch.Generator().manual_seed(TRUE_SEED))[0]


@functools.cache
def floors(name: str, n: int, count: int) -> dict:
    """Each measure's floor for `count` samples at n (seed FLOOR_SEED)."""
    return per_sample.floors(MIXTURES[name], n, count, FLOOR_SEED)


def measures(name: str, samples: torch.Tensor) -> dict:
    """Batch FD, per-sample SWD and component TV of generated `samples`."""
    mix, n = MIXTURES[name], samples.shape[-1]
    return {
        "fd": frechet_distance(samples, mix.power(n)),
        "swd": per_sample.band_power_swd(samples, true_set(name, n, samples.shape[0])),
        "tv": per_sample.component_tv(mix, samples),
    }
