"""Notice, at sampling time, that a later node dropped one of the pack's level patches.

The patches live on the model's sampling object, which ComfyUI holds in one
object-patch slot: a ModelSampling* node (or any node that sets
`model_sampling`) placed after NoiseShift, Noise Level Correction or Noise
Awareness Guidance replaces the whole object, and the patch is gone without
a trace; the output equals the unpatched model's. The model options survive
that node's clone, so a pre-CFG function (a list in ComfyUI: every pack's
function runs) looks, at each step, at the sampling object the sampler
really uses and reports a missing patch.

The same per-step function also reports a step cache (core EasyCache or
LazyCache) on the model. A step cache skips network calls and adds, instead, the output change it saw
at an earlier step. At a skipped step the level the pack tells the network
has no effect, and guidance's extra branch (the conditional entry at another
level) shares the conditional entry's cache slot, so the cache can hand a
later step the output of that other level. Both run without an error; the
result is neither the pack's nor the cache's, so the user is told.

Both core caches keep their state in model_options["transformer_options"]
["easycache"] (LazyCache too) and register wrappers under "easycache" or
"lazycache"; either mark is enough.

A patch is recognised by a mark on its level function, not by identity: a
node that copies the sampling object (as our own patches do) keeps it.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict

from ..noisecal.errors import ERROR_MODULE, CalibrationError
from . import user_messages

log = logging.getLogger("noise_calibration")

MARK = "noise_calibration_patch_id"

HOLDER_KEY = "easycache"
WRAPPER_KEYS = {"easycache": "EasyCache", "lazycache": "LazyCache"}
MAX_REMEMBERED = 64  # sampling runs whose warning is remembered

_warned: OrderedDict[tuple[int, str], object] = OrderedDict()


def _wrapper_cache(options: dict) -> tuple[str, object] | None:
    for by_key in (options.get("wrappers") or {}).values():
        for key, name in WRAPPER_KEYS.items():
            if key in by_key:
                return name, by_key
    return None


def find(model_options: dict) -> tuple[str, object] | None:
    """(name, object that identifies this sampling run's cache) or None."""
    options = model_options.get("transformer_options") or {}
    holder = options.get(HOLDER_KEY)
    if holder is not None:
        # the cache clones its holder per run: one warning per run
        return getattr(holder, "name", "EasyCache"), holder
    return _wrapper_cache(options)


def message(what: str, name: str) -> str:
    return (
        f"{what} does not compose with {name}: at the steps {name} skips it reuses "
        f"the network's output from an earlier step, so the noise level this node tells "
        f"the network has no effect there (and guidance's extra branch can end up in the "
        f"cache). Sampling goes on with both; remove {name} for this node's result, or "
        f"bypass this node for {name}'s speed-up."
    )


def first_time(token: object, what: str) -> bool:
    """True once per (cache run, pack node); the token is kept so its id stays unique."""
    key = (id(token), what)
    if key in _warned:
        return False
    _warned[key] = token
    while len(_warned) > MAX_REMEMBERED:
        _warned.popitem(last=False)
    return True


def check_step_cache(model_options: dict, what: str, warn) -> None:
    """Warn (once per sampling run and pack node) when a step cache is on the model.
    EasyCache skips inside the network call, before this step's check, and counts
    it: none counted, nothing reused yet (on a network that does not run its
    wrapper, e.g. SD3 on ComfyUI 0.3.64, never). LazyCache skips the whole step,
    this check included, so it is reported as soon as it is seen."""
    found = find(model_options)
    if found is None:
        return
    if found[0] == "EasyCache" and getattr(found[1], "total_steps_skipped", None) == 0:
        return
    if first_time(found[1], what):
        warn(user_messages.STEP_CACHE, message(what, found[0]))


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
    """Make `patched_model` (a clone carrying level_fn, a level or state function,
    on its sampling object) report at sampling time when level_fn is no longer
    there. on_dropped:
    "error" raises PatchDropped; "pass through" logs once per sampling object."""
    mark = uuid.uuid4().hex
    setattr(level_fn, MARK, mark)
    reported: set[int] = set()
    warn = user_messages.warner(log, what)  # names the node that built the patch

    def check(args):
        # the one per-step hook every pack patch has: it also looks for step caches
        check_step_cache(args.get("model_options") or {}, what, warn)
        model_sampling = args["model"].model_sampling
        if mark not in _marks(model_sampling):
            message = dropped_message(what, model_sampling)
            if on_dropped == "error":
                raise PatchDropped(message)
            if id(model_sampling) not in reported:
                reported.add(id(model_sampling))
                warn(user_messages.PATCH_DROPPED, f"{message}; sampling without it")
        return args["conds_out"]

    patched_model.set_model_sampler_pre_cfg_function(check)
