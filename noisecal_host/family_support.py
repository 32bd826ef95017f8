"""Can the pack's level patches reach this model family's conditioning? Checked
when a node is applied, so a family they cannot reach gets a clear error at the
node instead of a silent no-op, and a calibration whose shifts are lost to
rounding gets a warning.

The patches change what `model_sampling.timestep(sigma)` returns inside a model
call. ComfyUI's `BaseModel._apply_model` passes that value through the model's
`process_timestep` to the network (ComfyUI 2024-11 to 2026 sources; see
docs/compatibility.md). That path breaks in three ways:

- a model class overrides `_apply_model` without calling `model_sampling.timestep`
  (nor the base `_apply_model`): the network never sees the told level;
- a discrete (integer-step) sampling class whose `timestep()` is not the
  training-step index (Stable Cascade's cosine time in [0, 1], the EDM
  discrete variant's 0.25 log sigma): the pack adds the change of the level as
  a fractional step index, which would be in the wrong units there;
- `process_timestep` ignores its input, or rounds it (a cast to bf16, as
  ComfyUI 2026's MageFlow does): a shift smaller than the rounding step never
  reaches the network. The smallest change that survives is measured on the
  model itself, and calibrations whose shifts are smaller are named.

Per-token timesteps (LTXV, Wan 2.2, Cosmos Predict2 with a denoise mask) scale
the told value per token; the patch still reaches every token being denoised.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import comfy.model_base
import comfy.model_sampling
import torch

from ..noisecal.errors import ERROR_MODULE, CalibrationError
from . import user_messages

log = logging.getLogger("noise_calibration")

# relative changes of the told timestep probed for rounding, smallest first (1e-6 .. 1e-1)
_PROBE_EPS = tuple(10.0 ** (-k / 4) for k in range(24, 3, -1))
_PROBE_LEVELS = (0.05, 0.2, 0.5, 0.8, 0.95)  # fractions of the level range


class UnsupportedFamily(CalibrationError):
    """The level patches cannot reach this model family's conditioning."""

    __module__ = ERROR_MODULE


@dataclass(frozen=True)
class Support:
    """What the patches can do on one model."""

    family: str
    reachable: bool
    reason: str = ""
    # smallest relative change of the told timestep that survives process_timestep
    # at every probed level; None: no rounding found (float32 throughout)
    resolution: float | None = None

    def message(self, what: str) -> str:
        return f"{what} cannot be used with {self.family}: {self.reason}"


def assess(model) -> Support:
    """Support of `model` (a ModelPatcher), from its classes and a probe of
    its process_timestep; no network evaluation."""
    base = model.model
    family = type(base).__name__
    ms = model.get_model_object("model_sampling")
    if not _apply_model_uses_timestep(type(base)):
        return Support(
            family,
            False,
            f"{family}._apply_model computes the network's conditioning without "
            f"model_sampling.timestep(), which is where the pack tells the level",
        )
    own = _own_timestep(type(ms))
    if (
        isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
        and own is not comfy.model_sampling.ModelSamplingDiscrete.timestep
    ):
        return Support(
            family,
            False,
            f"its sampling class {_base_name(ms)} is discrete but its timestep() is not "
            f"the training-step index (it is {own.__qualname__}); the pack tells "
            f"discrete models a level as a fractional step index, which would be "
            f"wrong here",
        )
    return _probe_process_timestep(base, ms, family)


def check(model, what: str, notes: list | None = None, records=()) -> Support:
    """Raise UnsupportedFamily where `what` cannot reach the model's conditioning;
    warn (logged and added to `notes`) when the given records hold shifts the
    model rounds away. records: calibration records, or (label, record) pairs."""
    support = assess(model)
    if not support.reachable:
        raise UnsupportedFamily(support.message(what))
    if support.resolution is not None:
        for label, record in _labelled(records):
            lost = lost_shifts(model, record)
            if lost:
                user_messages.note(
                    notes,
                    user_messages.LOST_TO_ROUNDING,
                    _rounding_message(what, support, label, lost, record),
                    subject=label,
                )
    return support


def told_values(model, sigma: torch.Tensor) -> torch.Tensor:
    """What the network receives for the level `sigma` (continuous timestep
    families): model_sampling.timestep, then the model's process_timestep."""
    ms = model.get_model_object("model_sampling")
    t = ms.timestep(sigma).float()
    return _processed(model.model, t).reshape(t.shape[:1] + (-1,)).squeeze(-1)


def lost_shifts(model, record: dict) -> list[tuple[float, float]]:
    """The (sigma, sigma_hat) pairs of a record's shift and correction table whose
    told values the model cannot tell apart."""
    pairs = list(zip(record.get("sigmas", []), record.get("sigma_hat", []), strict=False))
    table = record.get("correction") or {}
    pairs += [
        (s, s * (1 + r)) for s, r in zip(table.get("sigmas", []), table.get("r", []), strict=False)
    ]
    pairs = [(float(s), float(h)) for s, h in pairs if float(s) > 0 and float(h) != float(s)]
    if not pairs:
        return []
    sig = torch.tensor([s for s, _ in pairs], dtype=torch.float32)
    hat = torch.tensor([h for _, h in pairs], dtype=torch.float32)
    same = torch.eq(told_values(model, sig), told_values(model, hat)).reshape(len(pairs), -1)
    return [pair for pair, lost in zip(pairs, same.all(dim=1).tolist(), strict=True) if lost]


def _probe_process_timestep(base, ms, family: str) -> Support:
    own = getattr(type(base), "process_timestep", None)  # hosts before 2025 have none
    if own is None or own is getattr(comfy.model_base.BaseModel, "process_timestep", None):
        return Support(family, True)
    if isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete):
        return Support(family, True)  # the pack's fractional steps; none round them
    lo, hi = float(ms.sigma_min), float(ms.sigma_max)
    sigmas = torch.tensor([lo + f * (hi - lo) for f in _PROBE_LEVELS])
    try:
        t = ms.timestep(sigmas).float()
        plain = _processed(base, t)
        if torch.equal(plain, _processed(base, t.flip(0)).flip(0)) and torch.equal(
            plain, _processed(base, t * 0.5)
        ):
            return Support(
                family, False, f"{family}.process_timestep ignores the timestep it is given"
            )
        resolution = 0.0
        for i in range(len(t)):
            resolution = max(resolution, _smallest_change(base, t[i : i + 1], plain[i]))
    except Exception as exc:  # noqa: BLE001 - a probe must never break applying a node
        log.debug("process_timestep probe of %s failed: %s", family, exc)
        return Support(family, True)
    return Support(family, True, resolution=resolution if resolution > 1e-6 else None)


def _processed(base, t: torch.Tensor) -> torch.Tensor:
    """process_timestep(t) as [len(t), n] (t itself on hosts without one)."""
    if not hasattr(base, "process_timestep"):
        return t.float().reshape(len(t), -1)
    out = base.process_timestep(t, x=torch.zeros((len(t), 1, 1, 1)))
    out = out[0] if isinstance(out, tuple) else out
    return out.float().reshape(len(t), -1)


def _smallest_change(base, t: torch.Tensor, plain: torch.Tensor) -> float:
    """Smallest probed relative change of t (up or down) that changes the output."""
    for eps in _PROBE_EPS:
        up = _processed(base, t * (1 + eps))[0]
        down = _processed(base, t * (1 - eps))[0]
        if not torch.equal(up, plain) and not torch.equal(down, plain):
            return eps
    return _PROBE_EPS[-1]


def _apply_model_uses_timestep(cls: type) -> bool:
    for klass in cls.__mro__:
        if "_apply_model" not in vars(klass):
            continue
        if klass is comfy.model_base.BaseModel:
            return True
        try:
            source = inspect.getsource(vars(klass)["_apply_model"])
        except (OSError, TypeError):
            return True  # cannot tell: assume ComfyUI's contract
        return "model_sampling.timestep" in source or "super()._apply_model" in source
    return True


def _own_timestep(cls: type):
    """The timestep() the host class defines (the pack's own subclass skipped)."""
    for klass in cls.__mro__:
        if "timestep" in vars(klass) and not klass.__module__.endswith("conditioning_level"):
            return vars(klass)["timestep"]
    return None


def _base_name(ms) -> str:
    for klass in type(ms).__mro__:
        if klass.__module__ == comfy.model_sampling.__name__:
            return klass.__name__
    return type(ms).__name__


def _labelled(records):
    for i, item in enumerate(records or ()):
        yield item if isinstance(item, tuple) else (f"calibration {i + 1}", item)


def _rounding_message(what, support: Support, label, lost, record) -> str:
    total = len(record.get("sigmas", [])) + len((record.get("correction") or {}).get("r", []))
    worst = max(abs(h - s) / s for s, h in lost)
    return (
        f"{what}: {len(lost)} of the {total} calibrated levels of {label} change the "
        f"level by less than {support.family} can tell apart (its process_timestep "
        f"rounds the timestep: the smallest change that survives is about "
        f"{support.resolution:.2%} of the level; these are at most {worst:.2%}); "
        f"those steps sample as if uncalibrated"
    )
