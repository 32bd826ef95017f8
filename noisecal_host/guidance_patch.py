"""Noise Awareness Guidance's hooks on a MODEL, chaining with other packs (the
installer, noisecal_host/installer.py, clones the model and calls `install`).

A post-CFG function (a list in ComfyUI: every pack's function runs, in the
order the nodes were applied) adds the guidance term to what the earlier
functions returned. Its extra branch is the conditional one with the network
told another noise level, set through the conditioning-level patch (which
also chains with NoiseShift: the offset is applied to the level NoiseShift
chose), so input scaling and the denoised estimate keep the trajectory's sigma.

Where the host has chaining patcher wrappers (ComfyUI 2025+), the extra branch
rides in the step's own network call: a CALC_COND_BATCH wrapper appends the
conditional entry once more to `conds` and keeps its output for the post-CFG
function, and an APPLY_MODEL wrapper sets the other level on that entry's rows
only (`cond_or_uncond` names them) and shows them to later wrappers and
patches as conditional rows. Older hosts (and `batched=False`) get the extra
branch from a separate `calc_cond_batch` call, as core PAG does. Never the
single-slot `model_function_wrapper`: it would replace another pack's.
"""

from __future__ import annotations

import threading
import weakref

import comfy.samplers
import torch

from ..noisecal.guidance import combine, from_u, to_u

WRAPPER_KEY = "noise_calibration.guidance"


def next_level(sigma: torch.Tensor, model_options: dict, state: dict) -> torch.Tensor | None:
    """The next sigma of the schedule: from ComfyUI's sample_sigmas when the host
    provides them, else estimated from the previous step (same step size)."""
    sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
    current = float(sigma.max())
    if sigmas is not None:
        later = [float(s) for s in sigmas if float(s) < current - 1e-9]
        return torch.full_like(sigma, later[0] if later else 0.0)
    previous = state.get("previous")
    state["previous"] = current
    if previous is None or previous <= current:
        return None  # first step of a run: no step size known yet
    return (sigma - (previous - current)).clamp(min=0)


def wrappers_available(model) -> bool:
    """Whether the host chains CALC_COND_BATCH and APPLY_MODEL wrappers."""
    try:
        from comfy.patcher_extension import WrappersMP
    except ImportError:  # November 2024 hosts
        return False
    kinds = ("CALC_COND_BATCH", "APPLY_MODEL")
    return hasattr(model, "add_wrapper_with_key") and all(hasattr(WrappersMP, k) for k in kinds)


class Step:
    """One sampling step as ComfyUI passes it to calc_cond_batch and the post-CFG
    functions (the same x, sigma and cond objects), what it decided (`guide`:
    (settings, weight), or None) and the batched extra branch's output.
    Weak references: a finished run's tensors are not kept alive."""

    def __init__(self, x, sigma, cond, guide):
        self.x, self.sigma = weakref.ref(x), weakref.ref(sigma)
        self.cond_id = id(cond)
        self.guide = guide
        self.extra = None

    def is_for(self, x, sigma, cond) -> bool:
        return self.x() is x and self.sigma() is sigma and self.cond_id == id(cond)

    def take_extra(self):
        extra, self.extra = self.extra, None
        return extra


def on_chunks(fn, chunks: list[int], rows: int, total: int):
    """A level function that applies fn to the rows of the given batch chunks only
    (of a batch of `total` rows; a level of another shape passes through)."""

    def level_fn(level):
        if level.dim() != 1 or level.shape[0] != total:
            return level
        out = level.clone()
        for i in chunks:
            out[i * rows : (i + 1) * rows] = fn(level[i * rows : (i + 1) * rows])
        return out

    return level_fn


class Hooks:
    """The guidance of one installed patch: its post-CFG function and its two
    wrappers, sharing the step in progress (per thread) and the level override.
    settings_for: latent (h, w) -> GuidanceSettings or None (no guidance there)."""

    def __init__(self, override, settings_for, parameterization: str):
        self.override = override
        self.settings_for = settings_for
        self.parameterization = parameterization
        self.state: dict = {}
        self.local = threading.local()  # per thread: the step in progress, the batch being run

    def __deepcopy__(self, memo):
        # a patcher's clone deep-copies its model options, and with them these bound
        # methods: every copy must keep this one object (its override is on the model)
        return self

    def decide(self, x, sigma, model_options):
        current = self.settings_for(tuple(x.shape[-2:]))
        if current is None or current.weight == 0:
            return None
        p = self.parameterization
        u = to_u(sigma, p)
        u_next = next_level(sigma, model_options, self.state)
        weight = current.weight_at(u, None if u_next is None else to_u(u_next, p))
        return (current, weight) if bool((weight != 0).any()) else None

    def step_for(self, x, sigma, cond, model_options) -> tuple[Step, bool]:
        """This step's record (decided once per step) and whether it is new."""
        step = getattr(self.local, "step", None)
        if step is not None and step.is_for(x, sigma, cond):
            return step, False
        self.local.step = Step(x, sigma, cond, self.decide(x, sigma, model_options))
        return self.local.step, True

    def other_level(self, current, x):
        p = self.parameterization

        def fn(level):
            return from_u(current.other_level(to_u(level, p), x, p), p).to(level)

        return fn

    def calc_cond_batch_wrapper(self, executor, model_, conds, x, sigma, model_options):
        # sampling_function's call is [cond, uncond or None], the first of its step;
        # others (PAG's [cond], our own fallback, dual-CFG's three) run as they are,
        # as do context windows and multi-GPU (its pool threads would not see
        # this thread's batch: the post-CFG function makes the separate call)
        own = len(conds) == 2 and conds[0] is not None
        split = (
            model_options.get("context_handler") is not None or "multigpu_clones" in model_options
        )
        if not own or split:
            return executor(model_, conds, x, sigma, model_options)
        step, new = self.step_for(x, sigma, conds[0], model_options)
        if not new or step.guide is None:
            return executor(model_, conds, x, sigma, model_options)
        self.local.batch = (len(conds), self.other_level(step.guide[0], x))
        try:
            out = executor(model_, [*conds, conds[0]], x, sigma, model_options)
        finally:
            self.local.batch = None
        step.extra = out[-1]
        return out[:-1]

    def apply_model_wrapper(
        self, executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs
    ):
        options = transformer_options
        batch = getattr(self.local, "batch", None)
        labels = options.get("cond_or_uncond", [])
        if batch is None or batch[0] not in labels:
            return executor(x, t, c_concat, c_crossattn, control, options, **kwargs)
        index, fn = batch
        chunks = [i for i, label in enumerate(labels) if label == index]
        # later wrappers and attention patches see our rows as what they are: cond rows
        shown = {**options, "cond_or_uncond": [0 if label == index else label for label in labels]}
        with self.override.active(on_chunks(fn, chunks, x.shape[0] // len(labels), x.shape[0])):
            return executor(x, t, c_concat, c_crossattn, control, shown, **kwargs)

    def post_cfg(self, args):
        denoised, x, sigma = args["denoised"], args["input"], args["sigma"]
        step, _ = self.step_for(x, sigma, args["cond"], args["model_options"])
        if step.guide is None:
            return denoised
        current, weight = step.guide
        other = step.take_extra()
        if other is None:  # no wrappers on this host, or the step's call was not ours
            with self.override.active(self.other_level(current, x)):
                (other,) = comfy.samplers.calc_cond_batch(
                    args["model"], [args["cond"]], x, sigma, args["model_options"]
                )
        return combine(denoised, args["cond_denoised"], other, x, weight, current.guard)


def install(patched, override, settings_for, parameterization: str, batched=None) -> None:
    """Add guidance to `patched` (a clone whose sampling object carries `override`,
    a conditioning_level.LevelOverride, as its last level function). batched:
    None = in the step's network call where the host allows, False = a separate call."""
    hooks = Hooks(override, settings_for, parameterization)
    patched.set_model_sampler_post_cfg_function(hooks.post_cfg)
    if batched is not False and wrappers_available(patched):
        from comfy.patcher_extension import WrappersMP

        patched.add_wrapper_with_key(
            WrappersMP.CALC_COND_BATCH, WRAPPER_KEY, hooks.calc_cond_batch_wrapper
        )
        patched.add_wrapper_with_key(WrappersMP.APPLY_MODEL, WRAPPER_KEY, hooks.apply_model_wrapper)
