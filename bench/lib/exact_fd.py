"""The exact FD of a schedule on the exact-denoiser testbed, with no estimator noise.

Sampler and model are linear and act per Fourier frequency, so a sample is the
noise filtered by a gain ``G(k)`` that depends only on the schedule. Running
ComfyUI's sampler on a unit impulse gives ``G`` (its unnormalized DFT), hence the
infinite-sample FD ``mean_k (|G(k)| - sqrt(P(k)))^2`` with P the true power at N
(``exact_fd``). The same gains in closed form (float64, autograd-able, from the
samplers' update rules: ``ClosedForm``) give the FD-optimal "oracle" schedule by
L-BFGS-B. ``sampled_fd`` is the usual FD of SamplerCustom samples, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import minimize

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
import comfy.sample
import comfy.samplers

from bench.lib import testbed
from bench.lib.seeds import SAMPLE_SEED
from bench.lib.testbed import CHANNELS, M
from noise_calibration.noisecal import spectra
from noise_calibration.noisecal.testing import metrics
from noise_calibration.noisecal.testing.testbed import ExactDenoiser, FieldSpectrum
from noise_calibration.noisecal_host.testing import sampling, testbed_model


def gain(sampler: str, s, pm):
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


def oracle_unpack(z):
    """Oracle parameters -> sigmas: sigma_0, then softplus decrements of logit(sigma), 0."""
    s0 = z[0]
    logit0 = torch.log(s0) - torch.log1p(-s0)
    rest = torch.sigmoid(logit0 - torch.cumsum(torch.nn.functional.softplus(z[1:]), 0))
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([s0.reshape(1), rest, zero])


def oracle_pack(s):
    """Sigmas -> oracle parameters (the inverse of ``oracle_unpack``, clamped)."""
    s = torch.as_tensor(s, dtype=torch.float64)[:-1].clamp(1e-4, 0.9999)
    logit = torch.log(s) - torch.log1p(-s)
    d = (logit[:-1] - logit[1:]).clamp_min(1e-3)
    return torch.cat([s[:1], torch.log(torch.expm1(d))]).numpy()


class ClosedForm:
    """FD of a schedule from the sampler's gains on unique (model power, true power) pairs."""

    def __init__(self, pm, pt):
        pairs = torch.stack([pm.reshape(-1), pt.reshape(-1)], dim=1)
        uniq, counts = torch.unique(pairs, dim=0, return_counts=True)
        self.pm, self.pt = uniq[:, 0].contiguous(), uniq[:, 1].contiguous()
        self.w = counts.to(torch.float64) / counts.sum()

    def fd_tensor(self, s, sampler):
        g = gain(sampler, s, self.pm)
        return (self.w * (g.abs() - self.pt.sqrt()).square()).sum()

    def fd(self, sigmas, sampler) -> float:
        s = torch.as_tensor(sigmas).to(torch.float64).reshape(-1)
        return float(self.fd_tensor(s, sampler))

    def fd_mixture(self, sigma_list, sampler) -> float:
        """FD of samples each drawn with its own schedule (per-seed schedules)."""
        v = 0.0
        for sig in sigma_list:
            s = torch.as_tensor(sig).to(torch.float64).reshape(-1)
            v = v + gain(sampler, s, self.pm).square()
        v = v / len(sigma_list)
        return float((self.w * (v.sqrt() - self.pt.sqrt()).square()).sum())

    def oracle(self, sampler, inits, maxiter):
        """Minimize FD over the sigmas from each start; returns (fd, sigmas float64)."""

        def objective(zn):
            z = torch.tensor(zn, dtype=torch.float64, requires_grad=True)
            loss = self.fd_tensor(oracle_unpack(z), sampler)
            loss.backward()
            return loss.item(), z.grad.numpy().copy()

        best = None
        for s_init in inits:
            z0 = oracle_pack(s_init)
            bounds = [(0.05, 0.9999)] + [(None, None)] * (len(z0) - 1)
            res = minimize(
                objective,
                z0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": maxiter},
            )
            cand = (float(res.fun), oracle_unpack(torch.tensor(res.x)).detach())
            if best is None or cand[0] < best[0]:
                best = cand
        return best


def sigma_range(model) -> tuple[float, float]:
    ms = model.get_model_object("model_sampling")
    return float(ms.sigma_min), float(ms.sigma_max)


def core_sigmas(model, name: str, steps: int):
    """ComfyUI's scheduler `name` for the model, float32."""
    ms = model.get_model_object("model_sampling")
    return comfy.samplers.calculate_sigmas(ms, name, steps).to(torch.float32)


def impulse_power(model, sigmas, sampler: str, n: int):
    """|G(k)|^2 [n, n] through ComfyUI's SamplerCustom path (impulse response)."""
    noise = torch.zeros(1, CHANNELS, n, n)
    noise[:, :, 0, 0] = 1.0
    latent = torch.zeros_like(noise)
    cond = testbed_model.make_testbed_conditioning(1)
    out = comfy.sample.sample_custom(
        model,
        noise,
        1.0,
        comfy.samplers.sampler_object(sampler),
        torch.as_tensor(sigmas, dtype=torch.float32),
        cond,
        cond,
        latent,
        disable_pbar=True,
        seed=0,
    )
    return torch.fft.fft2(out.to(torch.float64)).abs().square().mean(dim=(0, 1))


def exact_fd(model, sp, n: int, sigmas, sampler: str) -> float:
    """The infinite-sample FD at N = n of the schedule through ComfyUI's sampler."""
    v = impulse_power(model, sigmas, sampler, n)
    return float((v.sqrt() - sp.power(n).sqrt()).square().mean())


def sampled_fd(model, sp, n: int, sigmas, sampler: str, count: int) -> float:
    """FD of `count` SamplerCustom samples (seed SAMPLE_SEED) to the true field."""
    lat = sampling.empty_latent(model, n, n, count)
    cond = testbed_model.make_testbed_conditioning(count)
    sig = torch.tensor(sigmas, dtype=torch.float32)
    samples = sampling.sample_with_sigmas(
        model, lat, cond, sig, seed=SAMPLE_SEED, sampler_name=sampler
    )
    return metrics.frechet_distance(samples, sp.power(n))


@dataclass
class Cell:
    """One spectrum at one resolution N: the testbed trained at M ("pixel"), the RAPSD
    of the calibration fields at N and the closed form of the FD there."""

    sp: FieldSpectrum
    n: int
    model: object
    stats: object
    cf: ClosedForm

    @classmethod
    def make(cls, sp, n: int, cal_count: int) -> Cell:
        model = testbed.model(sp, M, "pixel")
        return cls(sp, n, model, calibration_stats(sp, n, cal_count), closed_form(sp, n))

    def exact_fd(self, sigmas, sampler: str) -> float:
        return exact_fd(self.model, self.sp, self.n, sigmas, sampler)

    def sampled_fd(self, sigmas, sampler: str, count: int) -> float:
        return sampled_fd(self.model, self.sp, self.n, sigmas, sampler, count)


def calibration_stats(sp, n: int, count: int):
    """The RAPSD of `count` calibration fields at N = n (seed CAL_DATA_SEED)."""
    return spectra.rapsd(testbed.cal_latents(sp, n, count))


def closed_form(sp, n: int) -> ClosedForm:
    """The closed-form FD at N = n of the testbed trained at M ("pixel")."""
    return ClosedForm(ExactDenoiser(sp, M, "pixel").assumed_power(n), sp.power(n))
