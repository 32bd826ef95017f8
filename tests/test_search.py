"""NoiseShift calibration search on an exact Gaussian model (no mocks).

Data x0 ~ N(0, diag(P)) with P varied across dimensions. The "network" is the
exact posterior mean for an assumed power k * P, used the way ComfyUI uses a
real one: it is conditioned on sigma_cond, while input scaling and the
denoised formula use the true sigma. k = 1 is the matched model (optimal
conditioning is the identity in expectation); k = 4 believes the signal is
stronger than it is, as a model run below its training resolution does, and
wants upward shifts; k = 0.25 wants downward shifts.
"""

from __future__ import annotations

import math

import pytest
import torch

from noise_calibration.noisecal.levels import sigma_to_u, u_to_sigma
from noise_calibration.noisecal.noiseshift_search import (
    SearchResult,
    calibrate_noiseshift,
    step_errors,
)
from noise_calibration.noisecal.sigma_hat_curve import interp_sigma_hat

N_SAMPLES = 256
SHAPE = (4, 8, 8)  # 256 dims per sample: enough to pin the matched optimum


def _power() -> torch.Tensor:
    p = torch.logspace(-1, 1, SHAPE[-1], dtype=torch.float64)
    return p.expand(SHAPE).contiguous()


def _x0(seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((N_SAMPLES, *SHAPE), generator=gen, dtype=torch.float64)
    return (z * _power().sqrt()).float()


class GaussianModel:
    """Exact denoiser for power k * P, conditioned on sigma_cond.

    flow: the network outputs the velocity it believes in at level c,
    v = (x - D_c(x)) / c, and denoised = x - sigma * v.
    ve (eps model): the network sees x / sqrt(1 + sigma^2), reads it as a VP
    latent at level c, predicts eps, and denoised = x - sigma * eps.
    """

    def __init__(self, parameterization: str = "flow", k: float = 1.0):
        self.param = parameterization
        self.power = _power() * k
        self.max_rows = 0
        self.rows = 0

    def __call__(self, x, sigma, sigma_cond):
        assert x.shape[0] == sigma.shape[0] == sigma_cond.shape[0]
        self.max_rows = max(self.max_rows, x.shape[0])
        self.rows += x.shape[0]
        p = self.power.to(x.dtype)
        extra = (1,) * (x.dim() - 1)
        s = sigma.to(x.dtype).reshape(-1, *extra)
        c = sigma_cond.to(x.dtype).reshape(-1, *extra)
        if self.param == "flow":
            v = x * (c - (1 - c) * p) / ((1 - c) ** 2 * p + c**2)
            return x - s * v
        x_ve = x * torch.sqrt(1 + c**2) / torch.sqrt(1 + s**2)
        return x - s * x_ve * c / (p + c**2)


def flow_sigmas(steps: int = 20, shift: float = 3.0) -> torch.Tensor:
    """SD3-style schedule: uniform t, shifted, ending in 0."""
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def karras_sigmas(steps: int = 20, lo: float = 0.0292, hi: float = 14.6146) -> torch.Tensor:
    """SD1.5-range Karras schedule (rho 7), ending in 0."""
    rho = 7.0
    r = torch.linspace(0, 1, steps, dtype=torch.float64)
    s = (hi ** (1 / rho) + r * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()


SCHEDULES = {"flow": flow_sigmas, "ve": karras_sigmas}


@pytest.fixture(scope="module")
def x0():
    return _x0()


_CACHE: dict = {}


def run(x0, param: str, k: float, mode: str, **kw) -> SearchResult:
    key = (param, k, mode, tuple(sorted(kw.items())))
    if key not in _CACHE:
        kw.setdefault("max_batch", 4096)
        _CACHE[key] = calibrate_noiseshift(
            GaussianModel(param, k), x0, SCHEDULES[param](), parameterization=param, mode=mode, **kw
        )
    return _CACHE[key]


def shifts_u(res: SearchResult, param: str) -> list[float]:
    return [
        sigma_to_u(h, param) - sigma_to_u(s, param)
        for s, h in zip(res.sigmas, res.sigma_hat, strict=True)
    ]


def _check_invariants(res: SearchResult, param: str, upper: float) -> None:
    n = len(res.sigmas)
    assert len(res.sigma_hat) == len(res.error_before) == len(res.error_after) == n
    assert all(s > 0 for s in res.sigmas)
    assert all(0.0 <= h <= upper for h in res.sigma_hat)
    assert all(b <= a for a, b in zip(res.sigma_hat, res.sigma_hat[1:], strict=False))
    assert all(
        after <= before * (1 + 1e-12)
        for before, after in zip(res.error_before, res.error_after, strict=True)
    )
    assert res.nfe > 0 and res.wall_time_s >= 0
    assert res.params["parameterization"] == param


# 1. and 6. Matched model: no spurious shift.
@pytest.mark.parametrize("param", ["flow", "ve"])
@pytest.mark.parametrize("mode", ["grid", "fast", "lean"])
def test_matched_model_gives_identity(x0, param, mode):
    res = run(x0, param, 1.0, mode)
    assert res.mode == mode
    assert len(res.sigmas) == 20  # every step, including the one to 0
    du = shifts_u(res, param)
    assert max(abs(d) for d in du) <= 0.01, du
    _check_invariants(res, param, 1.0 if param == "flow" else res.sigmas[0])


# 2. Mismatched model: shifts in the expected direction, constraints hold.
@pytest.mark.parametrize("param", ["flow", "ve"])
@pytest.mark.parametrize("mode", ["grid", "fast", "lean"])
@pytest.mark.parametrize("k", [4.0, 0.25])
def test_mismatched_model_shifts(x0, param, mode, k):
    res = run(x0, param, k, mode)
    upper = 1.0 if param == "flow" else res.sigmas[0]
    _check_invariants(res, param, upper)
    du = shifts_u(res, param)
    # The noisy half, where the mismatch dominates. lean keeps the identity at
    # step 1, where the gain (about 1e-3 of the step's error) is within noise.
    early = du[2:10] if mode == "lean" else du[1:10]
    if k > 1:
        # Believes in too much signal: told a higher noise level, it denoises more.
        assert all(d > 0.005 for d in early), du
    else:
        assert all(d < -0.005 for d in early), du
        assert all(d <= 0.002 for d in du), du
    assert sum(res.error_after) < 0.97 * sum(res.error_before)


# 3. fast against the paper's grid.
@pytest.mark.parametrize("param", ["flow", "ve"])
def test_fast_matches_grid_with_fewer_evaluations(x0, param):
    grid = run(x0, param, 4.0, "grid")
    fast = run(x0, param, 4.0, "fast")
    print(
        f"\n[{param}, k=4, {N_SAMPLES} samples, {len(grid.sigmas)} steps] "
        f"grid: NFE {grid.nfe}, error {grid.total_error_before:.6g} -> "
        f"{grid.total_error_after:.6g}, {grid.wall_time_s:.2f}s | "
        f"fast: NFE {fast.nfe}, error -> {fast.total_error_after:.6g}, "
        f"{fast.wall_time_s:.2f}s | NFE ratio {grid.nfe / fast.nfe:.2f}"
    )
    assert fast.total_error_after <= 1.01 * grid.total_error_after
    assert grid.nfe >= 5 * fast.nfe
    assert fast.error_before == pytest.approx(grid.error_before, rel=1e-12)
    # Grid cost: 21 coarse + up to 20 new fine candidates per step, fewer when clipped.
    assert grid.nfe <= 41 * N_SAMPLES * len(grid.sigmas)


# 3b. lean against fast: fewer evaluations, the same error within 1%.
@pytest.mark.parametrize("param", ["flow", "ve"])
@pytest.mark.parametrize("k", [4.0, 0.25])
def test_lean_matches_fast_with_fewer_evaluations(x0, param, k):
    fast = run(x0, param, k, "fast")
    lean = run(x0, param, k, "lean")
    # Savings here are 5-30%; on the testbed's fields 4-6x at 16 latents
    # against fast at 64 (bench/calibration_cost.py).
    assert lean.nfe < fast.nfe, (lean.nfe, fast.nfe)
    assert lean.total_error_after <= 1.01 * fast.total_error_after
    assert lean.error_before == pytest.approx(fast.error_before, rel=1e-12)
    assert lean.params["mode"] == "lean" and lean.params["max_points"] == 6


def test_lean_keeps_identity_where_the_gain_is_noise():
    """With 8 small latents the matched model's objective minimum wanders; lean
    keeps the identity where a small shift (<= 0.02 in u) does not clear z
    standard errors of the paired per-latent gain."""
    small = _x0(seed=5)[:8]

    def small_shifts(z):
        res = calibrate_noiseshift(
            GaussianModel("flow", 1.0), small, flow_sigmas(), mode="lean", search_params={"z": z}
        )
        return [d for d in shifts_u(res, "flow") if 0 < abs(d) <= 0.02]

    assert len(small_shifts(0)) >= 5  # the control: without the rule noise moves steps
    assert small_shifts(2) == []


def test_lean_respects_its_point_budget(x0):
    model = GaussianModel("flow", 4.0)
    res = calibrate_noiseshift(
        model,
        x0[:32],
        flow_sigmas(),
        mode="lean",
        search_params={"max_points": 3, "jump_probe": 0},
    )
    # Step 0 has no curvature prior and runs the fast search; later steps <= 3 points.
    first = calibrate_noiseshift(
        GaussianModel("flow", 4.0), x0[:32], flow_sigmas()[:2], mode="lean"
    )
    assert res.nfe <= first.nfe + 3 * 32 * (len(res.sigmas) - 1)
    _check_invariants(res, "flow", 1.0)


# 4. Exhaustive check of the grid on one step.
def test_grid_matches_dense_search():
    param, k, i = "flow", 4.0, 3
    x0 = _x0()[:64]  # the dense sweep is 2201 candidates: keep it small
    sig = flow_sigmas()
    res = calibrate_noiseshift(GaussianModel(param, k), x0, sig, mode="grid", max_batch=4096)
    u_i = float(sig[i])
    upper = res.sigma_hat[i - 1]
    us = [u_i - 0.11 + j * 1e-4 for j in range(2201)]  # everything the grid can reach
    us = [u for u in us if 0.0 <= u <= upper]
    errs = step_errors(
        GaussianModel(param, k), x0, float(sig[i]), float(sig[i + 1]), us, max_batch=16384
    )
    j = min(range(len(us)), key=errs.__getitem__)
    assert 0 < j < len(us) - 1  # an interior optimum, not the window edge
    u_grid = res.sigma_hat[i]
    assert abs(us[j] - u_grid) <= 0.002, (us[j], u_grid)
    assert res.error_after[i] <= errs[j] * (1 + 1e-4)
    # The reported error is the objective at the reported level.
    again = step_errors(GaussianModel(param, k), x0, float(sig[i]), float(sig[i + 1]), [u_grid])
    assert again[0] == pytest.approx(res.error_after[i], rel=1e-12)


# 5. Determinism and the memory budget.
@pytest.mark.parametrize("mode", ["grid", "fast"])
def test_deterministic_and_batch_splitting(mode):
    x0 = _x0(seed=5)[:24]
    sig = flow_sigmas(steps=6)
    results = []
    for max_batch in (7, 10_000, 7):
        model = GaussianModel("flow", 4.0)
        res = calibrate_noiseshift(model, x0, sig, mode=mode, seed=3, max_batch=max_batch)
        assert model.max_rows <= max_batch
        assert model.rows == res.nfe  # NFE counts every row passed to denoise
        results.append(res)
    a, b, c = results
    for other in (b, c):
        assert other.sigma_hat == a.sigma_hat
        assert other.error_after == a.error_after
        assert other.error_before == a.error_before
        assert other.nfe == a.nfe
    other_seed = calibrate_noiseshift(GaussianModel("flow", 4.0), x0, sig, mode=mode, seed=4)
    assert other_seed.error_before != a.error_before


# 6b. A first-step optimum above the allowed range lands on the range end.
def test_ve_upper_limit_and_boundary_minimum(x0):
    sig = karras_sigmas()
    capped = run(x0, "ve", 4.0, "fast")
    assert capped.sigma_hat[0] == pytest.approx(float(sig[0]))
    assert capped.params["sigma_max"] == pytest.approx(float(sig[0]))
    for mode in ("grid", "fast"):
        free = run(x0, "ve", 4.0, mode, sigma_max=2 * float(sig[0]))
        assert free.sigma_hat[0] > float(sig[0])
        assert free.error_after[0] < capped.error_after[0]


def test_flat_objective_gives_no_shift():
    # A network that ignores its conditioning (e.g. a clamped timestep).
    def deaf(x, sigma, sigma_cond):
        return GaussianModel("flow", 4.0)(x, sigma, sigma)

    x0 = _x0()[:16]
    for mode in ("grid", "fast"):
        res = calibrate_noiseshift(deaf, x0, flow_sigmas(steps=5), mode=mode)
        assert res.sigma_hat == res.sigmas
        assert res.error_after == res.error_before


# 7. Cancel: exceptions from progress or denoise propagate.
def test_progress_exception_propagates():
    class Cancelled(Exception):
        pass

    calls = []

    def progress(done, total):
        calls.append((done, total))
        if done == 3:
            raise Cancelled

    x0 = _x0()[:8]
    with pytest.raises(Cancelled):
        calibrate_noiseshift(GaussianModel(), x0, flow_sigmas(steps=8), progress=progress)
    assert calls == [(1, 8), (2, 8), (3, 8)]
    assert torch.is_grad_enabled()

    def broken(x, sigma, sigma_cond):
        raise Cancelled

    with pytest.raises(Cancelled):
        calibrate_noiseshift(broken, x0, flow_sigmas(steps=8), mode="grid")
    assert torch.is_grad_enabled()


def test_progress_reports_every_step():
    calls = []
    res = calibrate_noiseshift(
        GaussianModel(), _x0()[:8], flow_sigmas(steps=4), progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert res.sigmas == pytest.approx(flow_sigmas(steps=4)[:-1].tolist())


def test_rejects_bad_input():
    x0 = _x0()[:4]
    model = GaussianModel()
    with pytest.raises(ValueError):
        calibrate_noiseshift(model, x0, torch.tensor([0.5, 0.8, 0.0]))
    with pytest.raises(ValueError):
        calibrate_noiseshift(model, x0, flow_sigmas(4), mode="brute")
    with pytest.raises(ValueError):
        calibrate_noiseshift(model, x0, flow_sigmas(4), parameterization="eps")
    with pytest.raises(ValueError):
        calibrate_noiseshift(model, x0, flow_sigmas(4), max_batch=0)
    with pytest.raises(ValueError):
        calibrate_noiseshift(model, x0, torch.tensor([2.0, 1.0, 0.0]))  # flow level above 1


def test_level_mapping_roundtrip():
    for s in (0.0, 0.03, 1.0, 14.6):
        assert u_to_sigma(sigma_to_u(s, "ve"), "ve") == pytest.approx(s, rel=1e-12)
    assert sigma_to_u(1.0, "ve") == 0.5
    assert sigma_to_u(0.3, "flow") == 0.3


# 8. The sigma -> sigma_hat map.
def test_interp_sigma_hat(x0):
    res = run(x0, "flow", 4.0, "fast")
    s, h = res.sigmas, res.sigma_hat
    assert interp_sigma_hat(s, h, s) == pytest.approx(h, abs=0, rel=1e-12)
    for si, hi in zip(s, h, strict=True):
        assert interp_sigma_hat(s, h, si) == hi
    assert interp_sigma_hat(s, h, 0.0) == 0.0
    q = torch.linspace(0, 1, 2001, dtype=torch.float32)
    out = interp_sigma_hat(s, h, q)
    assert isinstance(out, torch.Tensor) and out.dtype == q.dtype and out.shape == q.shape
    assert bool((out[1:] >= out[:-1]).all())
    assert bool((out >= 0).all()) and bool((out <= 1).all())


def test_interp_sigma_hat_ends_and_validation():
    s, h = [0.8, 0.5, 0.2], [0.85, 0.6, 0.2]
    # Between the smallest level and 0: linear to (0, 0).
    assert interp_sigma_hat(s, h, 0.1) == pytest.approx(0.1)
    # Above the largest level: that level's shift, clipped to max_level.
    assert interp_sigma_hat(s, h, 0.9) == pytest.approx(0.95)
    assert interp_sigma_hat(s, h, 0.99, max_level=1.0) == 1.0
    assert interp_sigma_hat(s, h, 0.65) == pytest.approx(0.725)
    assert math.isclose(interp_sigma_hat(s, h, -0.1), -0.1)
    with pytest.raises(ValueError):
        interp_sigma_hat([0.8, 0.5], [0.4, 0.6], 0.3)  # not monotone
    with pytest.raises(ValueError):
        interp_sigma_hat([0.8, 0.8], [0.8, 0.8], 0.3)  # repeated level


def test_search_params_override_and_record():
    x0 = _x0()[:32]
    sig = flow_sigmas(steps=10)
    wide = {"coarse_window": 0.3, "coarse_step": 0.03}
    res = calibrate_noiseshift(GaussianModel("flow", 4.0), x0, sig, mode="grid", search_params=wide)
    assert res.params["coarse_window"] == 0.3 and res.params["fine_step"] == 0.001
    assert max(shifts_u(res, "flow")) > 0.15  # beyond the default window's reach
    with pytest.raises(ValueError):
        calibrate_noiseshift(GaussianModel(), x0, sig, search_params={"window": 0.3})
    with pytest.raises(ValueError):
        calibrate_noiseshift(GaussianModel(), x0, sig, search_params={"tolerance": -1})


def test_low_precision_latents():
    seen = []

    def model(x, sigma, sigma_cond):
        seen.append((x.dtype, sigma.dtype, sigma_cond.dtype))
        return GaussianModel("flow", 4.0)(x.float(), sigma, sigma_cond).to(x.dtype)

    res = calibrate_noiseshift(model, _x0()[:16].bfloat16(), flow_sigmas(steps=4))
    assert set(seen) == {(torch.bfloat16, torch.float32, torch.float32)}
    assert all(math.isfinite(e) for e in res.error_after)
    assert all(a <= b for a, b in zip(res.error_after, res.error_before, strict=True))


# Reuse across resolutions, the jump probe and the restored small shifts (lean).


class Recording(GaussianModel):
    """GaussianModel that records the conditioning levels of every call, by true sigma."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls: list[tuple[float, list[float]]] = []

    def __call__(self, x, sigma, sigma_cond):
        self.calls.append((float(sigma[0]), sorted(set(sigma_cond.tolist()))))
        return super().__call__(x, sigma, sigma_cond)


@pytest.mark.parametrize("k", [4.0, 0.25])
def test_lean_warm_start_starts_from_the_other_curve_and_saves_evaluations(x0, k):
    """A warm start from a curve that is right (here this model's own cold curve,
    as if calibrated at a neighbouring resolution) puts the first candidate of a
    step on it and spends fewer evaluations for the same error."""
    sigmas = flow_sigmas()
    cold = calibrate_noiseshift(GaussianModel("flow", k), x0, sigmas, mode="lean", max_batch=4096)
    model = Recording("flow", k)
    warm = calibrate_noiseshift(
        model, x0, sigmas, mode="lean", max_batch=4096, warm_start=(cold.sigmas, cold.sigma_hat)
    )
    # step 1's first batch holds u_1 and the other curve's level there
    first = next(conds for s, conds in model.calls if s == pytest.approx(cold.sigmas[1]))
    assert any(c == pytest.approx(cold.sigma_hat[1], abs=1e-6) for c in first), (first, cold)
    assert warm.nfe < cold.nfe, (warm.nfe, cold.nfe)
    assert warm.total_error_after <= 1.01 * cold.total_error_after
    _check_invariants(warm, "flow", 1.0)
    # a wrong curve (the opposite shift) costs more, and the search still lands near the minimum
    wrong = [2 * s - h for s, h in zip(cold.sigmas, cold.sigma_hat, strict=True)]
    wrong = [min(max(w, 0.0), 1.0) for w in wrong]
    wrong = [min(wrong[: i + 1]) for i in range(len(wrong))]  # monotone
    off = calibrate_noiseshift(
        GaussianModel("flow", k), x0, sigmas, mode="lean", warm_start=(cold.sigmas, wrong)
    )
    assert off.nfe > warm.nfe
    assert off.total_error_after <= 1.02 * cold.total_error_after
    # the other modes ignore it
    fast = run(x0, "flow", k, "fast")
    fast_warm = calibrate_noiseshift(
        GaussianModel("flow", k),
        x0,
        sigmas,
        mode="fast",
        max_batch=4096,
        warm_start=(cold.sigmas, cold.sigma_hat),
    )
    assert fast_warm.sigma_hat == fast.sigma_hat and fast_warm.nfe == fast.nfe


JUMP_STEP = 8  # flow_sigmas()[8] = 0.818
JUMP = 0.15


class TwoBasins(GaussianModel):
    """Matched above step JUMP_STEP; below it the network wants its level lowered
    by JUMP. At JUMP_STEP itself the objective has two basins: near the identity
    (slightly off: its optimum lies above the monotone limit) and, deeper, at
    sigma - JUMP, where the next steps' curve lies."""

    def __init__(self):
        super().__init__("flow", 1.0)
        self.near = GaussianModel("flow", 1.5)  # its best is worse than the matched one's
        self.s_jump = float(flow_sigmas()[JUMP_STEP])

    def __call__(self, x, sigma, sigma_cond):
        s = float(sigma[0])
        if s < self.s_jump - 1e-6:
            return super().__call__(x, sigma, (sigma_cond + JUMP).clamp(max=1.0))
        if s > self.s_jump + 1e-6:
            return super().__call__(x, sigma, sigma_cond)
        far = (sigma_cond < s - JUMP / 2).reshape(-1, *(1,) * (x.dim() - 1))
        deep = super().__call__(x, sigma, (sigma_cond + JUMP).clamp(max=1.0))
        return torch.where(far, deep, self.near(x, sigma, sigma_cond))


def test_lean_jump_probe_finds_the_basin_the_next_step_lies_in(x0):
    sigmas = flow_sigmas()
    s_j = float(sigmas[JUMP_STEP])

    def at_jump(**params):
        res = calibrate_noiseshift(TwoBasins(), x0, sigmas, mode="lean", search_params=params)
        _check_invariants(res, "flow", 1.0)
        return res, res.sigma_hat[JUMP_STEP] - s_j

    off, shift_off = at_jump(jump_probe=0)
    on, shift_on = at_jump()
    assert abs(shift_off) < 0.03  # the local search keeps to the near basin
    assert shift_on == pytest.approx(-JUMP, abs=0.01)
    assert on.error_after[JUMP_STEP] < off.error_after[JUMP_STEP]
    assert on.error_after[JUMP_STEP + 1 :] == pytest.approx(
        off.error_after[JUMP_STEP + 1 :], rel=1e-3
    )
    assert off.nfe < on.nfe <= off.nfe + 3 * x0.shape[0] * 3  # a few probes, not a search


def test_lean_restores_small_shifts_on_a_shifted_curve():
    """With 8 latents the rule drops the noise shifts of the matched steps above
    JUMP_STEP; once the curve is significantly shifted below it, they come back
    (restore_small), monotone."""
    small = _x0(seed=5)[:8]

    def small_shifts(restore):
        res = calibrate_noiseshift(
            TwoBasins(),
            small,
            flow_sigmas(),
            mode="lean",
            search_params={"restore_small": restore},
        )
        _check_invariants(res, "flow", 1.0)
        return [d for d in shifts_u(res, "flow")[:JUMP_STEP] if 0 < abs(d) <= 0.02]

    assert small_shifts(0) == []
    assert len(small_shifts(1)) >= 1
