"""NoiseShift fast search against scipy.optimize.minimize_scalar, on the exact testbed.

Both minimize the same one-step error per step (the search's own objective
and noise), step by step from the noisiest, each bounded above by its own
previous sigma_hat (the monotone bound) and warm-started by its own previous
shifts (the fast search's linear extrapolation). scipy variants:

- ``brent``: ``method="brent"`` with the bracket ``(u_w - 0.01, u_w + 0.01)``
  around the warm start ``u_w``; scipy expands it downhill. The bound is a
  penalty: a point beyond ``[0, u_max]`` costs the error at the nearest end
  (no extra network evaluation) times ``1 + 10 * distance``. xtol is relative
  in scipy, so it is set to ``0.001 / |u_w|`` (0.001 in u, as ours).
- ``bounded``: ``method="bounded"`` on ``[0, u_max]``, ``xatol=0.001``; it
  takes no starting point, so the warm start is unused.

Both also evaluate the unshifted level (the error before) and keep it when
scipy's point is no better, as the fast search does. Evaluations (distinct
candidates, each ``latents`` rows) and batched forward calls are counted; the
fast search batches a round's candidates into one call, scipy evaluates one
point at a time. Run from the repository root::

    .venv/bin/python tools/compare_scipy_search.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402

from noisecal_host.pack_loader import load_pack  # noqa: E402

load_pack()

# isort: split
from noise_calibration.noisecal import noiseshift_search as ns  # noqa: E402
from noise_calibration.noisecal.noiseshift_grid_fast import predict_shift  # noqa: E402
from noise_calibration.noisecal.noiseshift_points import StepObjective, draw_eps  # noqa: E402
from noise_calibration.noisecal.testing.testbed import (  # noqa: E402
    ExactDenoiser,
    FieldSpectrum,
    flow_sigmas,
    sample_field,
)

M, STEPS, LATENTS = 32, 20, 64
DATA_SEED, SEARCH_SEED = 1001, 2002  # the benchmarks' calibration data and search seeds
TOL, STENCIL = ns.FAST_PARAMS["tolerance"], ns.FAST_PARAMS["initial_step"]
CASES = [
    (FieldSpectrum(f0, alpha), n, variant)
    for f0, alpha in ((3.0, 2.5), (1.0, 3.5))
    for variant in ("pixel", "image")
    for n in (32, 16, 8)
]


class Counted:
    """The testbed denoiser as ComfyUI forms it, counting forward calls."""

    def __init__(self, denoiser: ExactDenoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma, sigma_cond):
        self.calls += 1
        v = self.denoiser.velocity(x, sigma_cond)
        return x - sigma.to(x.dtype).reshape(-1, 1, 1, 1) * v


def ours(denoise: Counted, x0, sigmas) -> dict:
    res = ns.calibrate_noiseshift(denoise, x0, sigmas, seed=SEARCH_SEED, max_batch=1 << 16)
    return {"hat": res.sigma_hat, "err": res.error_after, "evals": res.nfe // LATENTS}


def scipy_search(denoise: Counted, x0, sigmas, method: str) -> dict:
    levels = [float(s) for s in sigmas]
    eps = draw_eps(x0, SEARCH_SEED)  # the search's own noise and objective
    hat, err, evals, shifts, u_max = [], [], 0, [], 1.0
    for s, s_next in zip(levels, levels[1:], strict=False):
        obj = StepObjective(denoise, x0, eps, s, s_next, "flow", 1 << 16)
        seen: dict[float, float] = {}

        def f(u, obj=obj, seen=seen, top=u_max):
            inside = min(max(float(u), 0.0), top)
            if inside not in seen:
                seen[inside] = obj([inside])[0]
            return seen[inside] * (1 + 10 * abs(float(u) - inside))

        u_w = min(max(s + predict_shift(shifts, ns.FAST_PARAMS), 0.0), u_max)
        if method == "bounded":
            out = minimize_scalar(f, bounds=(0.0, u_max), method="bounded", options={"xatol": TOL})
        else:
            xtol = TOL / max(abs(u_w), TOL)
            bracket = (u_w - STENCIL, u_w + STENCIL)
            out = minimize_scalar(f, bracket=bracket, method="brent", options={"xtol": xtol})
        best = min(max(float(out.x), 0.0), u_max)
        f(best)
        before = seen[s] if s in seen else obj([s])[0]  # the error before
        if s <= u_max and before <= seen[best]:  # a no-better point keeps the level
            best = s
        hat.append(best)
        err.append(seen.get(best, before))
        evals += len(seen) + (s not in seen)
        shifts.append(best - s)
        u_max = best
    return {"hat": hat, "err": err, "evals": evals}


def main() -> None:
    sigmas = flow_sigmas(STEPS)
    head = (
        f"{'case':<22} {'ours evals':>10} {'calls':>5} {'brent evals':>11} {'bounded evals':>13}"
        f" {'ours err':>9} {'brent err':>9} {'bounded err':>11} {'max |du| brent':>14}"
        f" {'max |du| bounded':>16}"
    )
    print(head)
    print("-" * len(head))
    totals = {"ours": [0, 0], "brent": [0, 0], "bounded": [0, 0]}
    for sp, n, variant in CASES:
        x0 = sample_field(sp, n, LATENTS, torch.Generator().manual_seed(DATA_SEED))
        runs = {}
        for name in totals:
            denoise = Counted(ExactDenoiser(sp, M, variant))
            runs[name] = (ours if name == "ours" else scipy_search)(
                denoise, x0, sigmas, *(() if name == "ours" else (name,))
            )
            runs[name]["calls"] = denoise.calls
            totals[name][0] += runs[name]["evals"]
            totals[name][1] += denoise.calls
        du = {
            k: max(abs(a - b) for a, b in zip(runs[k]["hat"], runs["ours"]["hat"], strict=True))
            for k in ("brent", "bounded")
        }
        case = f"f0={sp.f0:g},a={sp.alpha:g} {variant} N={n}"
        print(
            f"{case:<22} {runs['ours']['evals']:>10} {runs['ours']['calls']:>5}"
            f" {runs['brent']['evals']:>11} {runs['bounded']['evals']:>13}"
            f" {sum(runs['ours']['err']):>9.6f} {sum(runs['brent']['err']):>9.6f}"
            f" {sum(runs['bounded']['err']):>11.6f} {du['brent']:>14.4f} {du['bounded']:>16.4f}"
        )
    print(
        "total evaluations (forward calls): "
        + ", ".join(f"{k} {v[0]} ({v[1]})" for k, v in totals.items())
    )


if __name__ == "__main__":
    main()
