"""A NoiseShift search's chosen levels against the exhaustive optimum: the same
one-step error (``noisecal.noiseshift_search.step_errors``) on a dense list of
candidates every 0.001 on [0, 1], then every 0.0001 around the best, within the
range the search may choose from ([0, the previous sigma_hat])."""

from __future__ import annotations

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
from bench.lib.seeds import SEARCH_SEED
from bench.lib.testbed import M
from noise_calibration.noisecal import noiseshift_search
from noise_calibration.noisecal.testing.testbed import ExactDenoiser

DENSE = [i / 1000 for i in range(1001)]


def direct_denoise(denoiser):
    """The testbed's denoise as ComfyUI forms it (velocity at the told level, true sigma)."""

    def denoise(x, sigma, sigma_cond):
        v = denoiser.velocity(x, sigma_cond)
        return x - sigma.to(x.dtype).reshape(-1, 1, 1, 1) * v

    return denoise


DENSE = [i / 1000 for i in range(1001)]


def step_check(sp, variant: str, x0, sigmas, i: int, results: dict) -> dict:
    """Step i of the searches in `results` (mode -> search result) on the testbed
    trained at M (`variant`) against a dense scan of the same one-step error."""
    denoise = direct_denoise(ExactDenoiser(sp, M, variant))
    levels = [float(v) for v in sigmas]

    def errs(cands):
        return noiseshift_search.step_errors(
            denoise, x0, levels[i], levels[i + 1], cands, seed=SEARCH_SEED, max_batch=512
        )

    e_dense = errs(DENSE)
    per_mode = {mode: in_range(errs, e_dense, res, i) for mode, res in results.items()}
    _, c_glob = min(zip(e_dense, DENSE, strict=True))
    return {
        "step": i,
        "sigma": levels[i],
        "global_best_dense": c_glob,
        "error_plain": errs([levels[i]])[0],
        **per_mode,
    }


def in_range(errs, e_dense, res, i: int) -> dict:
    """The exhaustive optimum within the mode's allowed range [0, previous sigma_hat]."""
    upper = 1.0 if i == 0 else res.sigma_hat[i - 1]
    allowed = [(e, c) for e, c in zip(e_dense, DENSE, strict=True) if c <= upper]
    _, c_best = min(allowed)
    fine = sorted({min(max(c_best + k * 1e-4, 0.0), upper) for k in range(-20, 21)} | {upper})
    e_fine = errs(fine)
    e_star, c_star = min(zip(e_fine, fine, strict=True))
    e_star = min(e_star, min(e for e, _ in allowed))
    e_mode = errs([res.sigma_hat[i]])[0]
    return {
        "sigma_hat": res.sigma_hat[i],
        "upper": upper,
        "exhaustive_sigma_hat": c_star,
        "exhaustive_error": e_star,
        "error": e_mode,
        "excess": e_mode / e_star - 1.0,
    }
