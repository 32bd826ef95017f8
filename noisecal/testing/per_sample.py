"""Per-sample quality measures for the mixture testbed (``mixture.py``).

The batch spectrum (``metrics.frechet_distance``) sees only the mixture's
mean power; a generator that blends components, or draws them in the wrong
proportions, can match it. Two measures look at samples one by one:

- ``band_power_swd``: the sliced Wasserstein distance between the sets of
  per-sample log band-power vectors (radially binned power of each channel,
  ``spectra.per_sample_rapsd``, DC left out: one coefficient per channel,
  whose log is mostly noise), on fixed random directions from a seed.
- ``component_tv``: each sample classified by the exact likelihood
  (``mixture.classify``), total variation distance of the histogram to the
  mixture's weights.

``floors`` gives each measure, and the batch FD, for true sets of the same
size: what a perfect generator scores.
"""

from __future__ import annotations

import torch

from ..spectra import per_sample_rapsd
from .metrics import frechet_distance
from .mixture import FieldMixture, classify, sample_mixture
from .swd import sliced_wasserstein

__all__ = [
    "log_band_power",
    "band_power_swd",
    "component_histogram",
    "component_tv",
    "floors",
]

DIRECTIONS = 256


def log_band_power(x: torch.Tensor) -> torch.Tensor:
    """Per-sample log radially binned power of each channel, DC dropped: [count, C * (F - 1)]."""
    power, _, _ = per_sample_rapsd(x)
    return power[..., 1:].clamp_min(1e-30).log().reshape(x.shape[0], -1)


def band_power_swd(generated: torch.Tensor, true: torch.Tensor, seed: int = 0) -> float:
    """SWD (mean 1-D W1 over ``DIRECTIONS`` seeded directions) between the log band-power sets."""
    gen = torch.Generator().manual_seed(seed)
    return sliced_wasserstein(log_band_power(generated), log_band_power(true), DIRECTIONS, 1, gen)


def component_histogram(mixture: FieldMixture, x: torch.Tensor) -> torch.Tensor:
    """Share of the samples the exact likelihood assigns to each component, [K] float64."""
    counts = torch.bincount(classify(mixture, x), minlength=len(mixture.weights))
    return counts.to(torch.float64) / x.shape[0]


def component_tv(mixture: FieldMixture, x: torch.Tensor) -> float:
    """Total variation distance between the component histogram and the weights."""
    return 0.5 * float((component_histogram(mixture, x) - mixture.probs).abs().sum())


def floors(mixture: FieldMixture, n: int, count: int, seed: int, repeats: int = 16) -> dict:
    """Mean over ``repeats`` pairs of independent true sets of ``count``: FD to the mean
    power, SWD between the pair, TV of the histogram (the scores of a perfect generator)."""
    gen = torch.Generator().manual_seed(seed)
    power = mixture.power(n)
    fd, swd, tv = [], [], []
    for _ in range(repeats):
        a, _ = sample_mixture(mixture, n, count, gen)
        b, _ = sample_mixture(mixture, n, count, gen)
        fd.append(frechet_distance(a, power))
        swd.append(band_power_swd(a, b))
        tv.append(component_tv(mixture, a))
    return {"fd": _mean(fd), "swd": _mean(swd), "tv": _mean(tv)}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
