"""The NoiseShift search's objective for one step and its evaluated points
(noiseshift_search.py's module docstring gives the objective and the level
space u)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .levels import u_to_sigma

Denoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

TIE_RTOL = 1e-9  # errors this close count as equal (flat objective)
KEY_DIGITS = 10  # u values equal to this many decimals are the same candidate


def key(u: float) -> float:
    return round(float(u), KEY_DIGITS)


def noised(x0: torch.Tensor, eps: torch.Tensor, sigma: float, parameterization: str):
    if parameterization == "flow":
        return (1.0 - sigma) * x0 + sigma * eps
    return x0 + sigma * eps


def draw_eps(x0: torch.Tensor, seed: int) -> torch.Tensor:
    # A CPU generator gives the same noise on every device.
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(x0.shape, generator=gen, dtype=torch.float64)


def state_dtype(x0: torch.Tensor) -> torch.dtype:
    return x0.dtype if x0.is_floating_point() else torch.float32


class StepObjective:
    """err(c) for one step, batched over candidates x samples within max_batch rows."""

    def __init__(
        self,
        denoise: Denoise,
        x0: torch.Tensor,
        eps: torch.Tensor,
        sigma: float,
        sigma_next: float,
        parameterization: str,
        max_batch: int,
    ):
        # float64 keeps differences between close candidates well above
        # rounding; MPS has no float64.
        self.acc = torch.float32 if x0.device.type == "mps" else torch.float64
        x0d = x0.to(self.acc)
        epsd = eps.to(device=x0.device, dtype=self.acc)
        self.denoise = denoise
        # The network sees the state in the latent's own dtype; the error is
        # measured against that same (rounded) state.
        self.x = noised(x0d, epsd, sigma, parameterization).to(state_dtype(x0))
        self.target = noised(x0d, epsd, sigma_next, parameterization)
        self.sigma = float(sigma)
        self.ratio = (float(sigma_next) - float(sigma)) / float(sigma)
        self.max_batch = int(max_batch)
        self.sigma_dtype = torch.float64 if x0.dtype == torch.float64 else torch.float32
        self.rows = 0

    def __call__(self, conds: Sequence[float]) -> list[float]:
        if len(conds) == 0:
            return []
        return self.per_sample(conds).mean(dim=1).double().cpu().tolist()

    def per_sample(self, conds: Sequence[float], keep: bool = False) -> torch.Tensor:
        """Error of every sample at every candidate: [candidates, samples].

        keep: also store the residuals ``x_hat - target`` [candidates,
        samples, values] in ``self.residuals`` (the lean search's Jacobian).
        """
        n = self.x.shape[0]
        m = len(conds)
        device = self.x.device
        cond = torch.tensor([float(c) for c in conds], dtype=self.sigma_dtype, device=device)
        total = m * n
        per_row = torch.empty(total, dtype=self.acc, device=device)
        residuals = (
            torch.empty((total, self.x[0].numel()), dtype=self.acc, device=device) if keep else None
        )
        for start in range(0, total, self.max_batch):
            idx = torch.arange(start, min(start + self.max_batch, total), device=device)
            sample = idx % n
            x = self.x[sample]
            sig = torch.full((len(idx),), self.sigma, dtype=self.sigma_dtype, device=device)
            out = self.denoise(x, sig, cond[idx // n])
            if tuple(out.shape) != tuple(x.shape):
                raise ValueError(
                    f"denoise returned shape {tuple(out.shape)} for input {tuple(x.shape)}"
                )
            self.rows += len(idx)
            xd = x.to(self.acc)
            x_hat = xd + self.ratio * (xd - out.to(self.acc))
            diff = (x_hat - self.target[sample]).reshape(len(idx), -1)
            per_row[start : start + len(idx)] = diff.pow(2).mean(dim=1)
            if residuals is not None:
                residuals[start : start + len(idx)] = diff
        if residuals is not None:
            self.residuals = residuals.reshape(m, n, -1)
        return per_row.reshape(m, n)


class Points:
    """Evaluated candidates of one step, keyed by u, with exact pinned sigmas."""

    def __init__(self, objective, parameterization, u_ref, pinned, lo, hi):
        self.objective = objective
        self.param = parameterization
        self.u_ref = u_ref
        self.pinned = pinned  # key(u) -> exact sigma (identity, range ends)
        self.lo, self.hi = lo, hi
        self.f: dict[float, float] = {}  # key(u) -> error, candidates in range only
        self.u: dict[float, float] = {}
        self.extra: dict[float, float] = {}  # out-of-range points (error_before)
        self.samples: dict[float, torch.Tensor] = {}  # key(u) -> error per sample
        self.keep_residuals = False
        self.residuals: dict[float, torch.Tensor] = {}  # key(u) -> [samples, values]

    def sigma_of(self, u: float) -> float:
        k = key(u)
        return self.pinned[k] if k in self.pinned else u_to_sigma(float(u), self.param)

    def clip(self, u: float) -> float:
        return min(max(u, self.lo), self.hi)

    def known(self, u: float) -> bool:
        k = key(u)
        return k in self.f or k in self.extra

    def evaluate(self, us: Sequence[float]) -> None:
        """One batched round for the not yet evaluated points."""
        todo: dict[float, float] = {}
        for u in us:
            k = key(u)
            if k not in self.f and k not in self.extra and k not in todo:
                todo[k] = float(u)
        if not todo:
            return
        keep = self.keep_residuals
        rows = self.objective.per_sample([self.sigma_of(u) for u in todo.values()], keep)
        errs = rows.mean(dim=1).double().cpu().tolist()
        for j, ((k, u), e, row) in enumerate(zip(todo.items(), errs, rows, strict=True)):
            self.samples[k] = row
            if keep:
                self.residuals[k] = self.objective.residuals[j]
            if self.lo - 1e-12 <= u <= self.hi + 1e-12:
                self.f[k], self.u[k] = e, u
            else:
                self.extra[k] = e

    def error_at(self, u: float) -> float:
        k = key(u)
        return self.f[k] if k in self.f else self.extra[k]

    def best(self) -> float:
        """u of the lowest error; near-ties go to the point closest to u_ref."""
        fmin = min(self.f.values())
        tie = fmin + TIE_RTOL * abs(fmin) + 1e-300
        cands = [self.u[k] for k, e in self.f.items() if e <= tie]
        return min(cands, key=lambda u: (abs(u - self.u_ref), u))

    def sorted_u(self) -> list[float]:
        return sorted(self.u.values())


def flat(*errs: float) -> bool:
    lo, hi = min(errs), max(errs)
    return hi - lo <= TIE_RTOL * abs(lo) + 1e-300
