"""Notice, at sampling time, that a later node dropped one of the pack's level patches.

The patches live on the model's sampling object, which ComfyUI holds in one
object-patch slot: a ModelSampling* node (or any node that sets
`model_sampling`) placed after NoiseShift, Noise Level Correction or Noise
Awareness Guidance replaces the whole object, and the patch is gone without
a trace; the output equals the unpatched model's. The model options survive
that node's clone, so a pre-CFG function (a list in ComfyUI: every pack's
function runs) looks, at each step, at the sampling object the sampler
really uses and reports a missing patch.

The same per-step function also reports a step cache (EasyCache, LazyCache)
on the model: see step_cache.

A patch is recognised by a mark on its level function, not by identity: a
node that copies the sampling object (as our own patches do) keeps it.
"""

from __future__ import annotations

import logging
import uuid

from ..noisecal.errors import ERROR_MODULE, CalibrationError
from . import step_cache, user_messages

log = logging.getLogger("noise_calibration")

MARK = "noise_calibration_patch_id"


class PatchDropped(CalibrationError):
    """A level patch was replaced by a node placed after it."""

    __module__ = ERROR_MODULE


def _marks(model_sampling) -> set[str]:
    fns = (*getattr(model_sampling, "level_fns", ()), *getattr(model_sampling, "state_fns", ()))
    return {getattr(fn, MARK) for fn in fns if hasattr(fn, MARK)}


def dropped_message(what: str, model_sampling) -> str:
    return (
        f"{what} is not in effect: a node placed after the {what} node replaced the "
        f"model's sampling object (now {type(model_sampling).__name__}), which drops "
        f"{what}. ModelSamplingSD3, ModelSamplingFlux, ModelSamplingAuraFlow, "
        f"ModelSamplingDiscrete and similar nodes do this. Move the {what} node after "
        f"that node: loader -> ModelSampling... -> {what} -> sampler."
    )


def watch(patched_model, level_fn, what: str, on_dropped: str = "error") -> None:
    """Make `patched_model` (a clone carrying level_fn on its sampling object)
    report at sampling time when level_fn is no longer there. on_dropped:
    "error" raises PatchDropped; "pass through" logs once per sampling object."""
    mark = uuid.uuid4().hex
    setattr(level_fn, MARK, mark)
    reported: set[int] = set()
    warn = user_messages.warner(log, what)  # names the node that built the patch

    def check(args):
        # the one per-step hook every pack patch has: it also looks for step caches
        step_cache.check(args.get("model_options") or {}, what, warn)
        model_sampling = args["model"].model_sampling
        if mark not in _marks(model_sampling):
            message = dropped_message(what, model_sampling)
            if on_dropped == "error":
                raise PatchDropped(message)
            if id(model_sampling) not in reported:
                reported.add(id(model_sampling))
                warn(f"{message}; sampling without it")
        return args["conds_out"]

    patched_model.set_model_sampler_pre_cfg_function(check)
