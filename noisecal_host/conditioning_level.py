"""Change the noise level the network is conditioned on, or the whole denoiser's level.

ComfyUI derives the network's conditioning from `model_sampling.timestep(sigma)`
and nothing else; input scaling (`calculate_input`), the denoised estimate
(`calculate_denoised`), noise scaling and the sampler keep the true sigma. So
we object-patch `model_sampling` with a copy whose class subclasses the current
one (an earlier ModelSamplingSD3/Flux shift is kept, and isinstance checks such
as k-diffusion's `CONST` still hold) and overrides `timestep()` only.

The level function also gets the latent's spatial size, recorded from
`calculate_input`, which ComfyUI calls right before `timestep` in every
`apply_model`; NoiseShift uses it to pick the calibration for the resolution
being sampled. Patching again (two nodes) chains the level functions in order.

Discrete (eps/v) models round `timestep()` to an integer training step, which
would swallow small shifts: there the result is ComfyUI's own rounded step plus
the continuous (log-sigma interpolated) difference between the two levels, so
an unchanged level gives exactly ComfyUI's value and small shifts still count.
A ModelSampling* node placed AFTER ours replaces the whole object and drops
our patch: put NoiseShift after any ModelSampling node.

Noise Level Correction changes more than the conditioning: its state
functions map the sampler's sigma to the level the whole denoiser is
evaluated at (input scaling, conditioning and denoised estimate alike). They
always run first, whatever the node order: the conditioning functions
(NoiseShift, guidance) then start from the corrected level. Only calls inside
a model evaluation are changed; a scheduler asking for `timestep(sigma_max)`
gets the plain value, so patched models keep their schedules.

The copy also keeps the schedule it was built with, outside its buffers.
ComfyUI's dynamic VRAM loading (ModelPatcherDynamic, 2026 hosts) backs buffers
up by attribute path and, at the next load, restores them into whatever object then
sits at `model_sampling` (ComfyUI #16490): our copy can be handed the `sigmas`
and `log_sigmas` of the object used before it (the checkpoint's own, or a
ModelSampling node's), which would silently change its conditioning steps and
its scheduler's sigmas. So every read of those two (ours, `timestep()`,
`sigma_max`, the schedulers') gets the built schedule. The buffers are left to
ComfyUI: what its restore put there, its next load backs up and gives back to
the object it came from, unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable

import comfy.model_sampling
import torch

# level_fn(sigma [B], latent (h, w) or None) -> conditioning level [B]
LevelFn = Callable[[torch.Tensor, tuple | None], torch.Tensor]

# The schedule buffers of ComfyUI's ModelSampling classes (flow ones have sigmas only).
SCHEDULE_BUFFERS = ("sigmas", "log_sigmas")


# The apply_model call in progress, per thread and sampling object: (sigma
# object, state level, latent (h, w)). ComfyUI passes the same sigma tensor to
# calculate_input, timestep and calculate_denoised, so other callers (a
# scheduler asking timestep(sigma_max)) are told apart and get the plain value.
# Kept off the shared object: one patched model may sample in several threads.
_calls = threading.local()


def _calls_in_this_thread() -> dict:
    calls = getattr(_calls, "by_object", None)
    if calls is None:
        calls = _calls.by_object = {}
    return calls


class ConditioningLevelMixin:
    level_fns: tuple = ()
    state_fns: tuple = ()

    def __getattr__(self, name):
        # nn.Module serves buffers from __getattr__: every read of the schedule comes here
        value = super().__getattr__(name)
        return _as_built(self, name, value) if name in SCHEDULE_BUFFERS else value

    def _current(self, sigma):
        call = _calls_in_this_thread().get(id(self))
        return call if call is not None and call[0] is sigma else None

    def calculate_input(self, sigma, noise):
        latent_hw = tuple(noise.shape[-2:])
        level = sigma
        for fn in self.state_fns:
            level = fn(level, latent_hw)
        _calls_in_this_thread()[id(self)] = (sigma, level, latent_hw)
        return super().calculate_input(level, noise)

    def timestep(self, sigma):
        call = self._current(sigma)
        if call is None:
            return super().timestep(sigma)
        _, level, latent_hw = call
        for fn in self.level_fns:
            level = fn(level, latent_hw)
        if level is sigma or torch.equal(level, sigma):
            return super().timestep(sigma)
        if isinstance(self, comfy.model_sampling.ModelSamplingDiscrete):
            offset = _continuous_step(self, level) - _continuous_step(self, sigma)
            return super().timestep(sigma).to(offset.dtype) + offset
        return super().timestep(level)

    def calculate_denoised(self, sigma, model_output, model_input):
        call = self._current(sigma)
        level = sigma if call is None else call[1]
        return super().calculate_denoised(level, model_output, model_input)


_classes: dict[type, type] = {}


def _level_class(base: type) -> type:
    if base not in _classes:
        _classes[base] = type(f"NoiseCalibrated{base.__name__}", (ConditioningLevelMixin, base), {})
    return _classes[base]


def with_conditioning_level(model_sampling, *level_fns: LevelFn | None, state_fn=None):
    """A copy of `model_sampling` whose network conditioning goes through the
    level_fns (in order, after those already on it) and, with state_fn, whose
    whole evaluation (input scaling, conditioning, denoised estimate) uses
    state_fn(sigma) instead of the sampler's sigma."""
    # copy the object (a few schedule buffers) but share the functions already
    # installed: they may hold state their owner updates (LevelOverride)
    installed = (
        *getattr(model_sampling, "level_fns", ()),
        *getattr(model_sampling, "state_fns", ()),
    )
    patched = copy.deepcopy(model_sampling, {id(fn): fn for fn in installed})
    if not isinstance(patched, ConditioningLevelMixin):
        patched.__class__ = _level_class(type(model_sampling))
        patched.level_fns, patched.state_fns = (), ()
        # a plain attribute, not buffers: a restore by path cannot reach it
        patched.built_schedule = {
            name: buf.detach().clone()
            for name in SCHEDULE_BUFFERS
            if (buf := patched._buffers.get(name)) is not None
        }
    patched.served_schedule = {}
    patched.level_fns = tuple(patched.level_fns) + tuple(fn for fn in level_fns if fn is not None)
    if state_fn is not None:
        patched.state_fns = tuple(patched.state_fns) + (state_fn,)
    return patched


class LevelOverride:
    """A level function that passes levels through, except inside `active(fn)`:
    for one network call the told level becomes fn(level)."""

    def __init__(self):
        self.fn = None

    def __call__(self, level, latent_hw):
        return level if self.fn is None else self.fn(level)

    @contextlib.contextmanager
    def active(self, fn):
        self.fn = fn
        try:
            yield
        finally:
            self.fn = None


def patch_model(model, *level_fns: LevelFn | None, state_fn=None):
    """model.clone() with the conditioning level (and, with state_fn, the level the
    whole denoiser is evaluated at) patched; the sampler's sigmas are untouched."""
    patched = model.clone()
    current = patched.get_model_object("model_sampling")
    patched.add_object_patch(
        "model_sampling", with_conditioning_level(current, *level_fns, state_fn=state_fn)
    )
    return patched


def _as_built(ms, name: str, live):
    """The schedule buffer `name` as `ms` was built: `live` itself while it holds
    that schedule, else the built one on live's device and dtype (the loader's
    choice); compared once per tensor. The buffer is left as it is: after a
    restore it holds the previous object's tensor, which ComfyUI's next load
    backs up and gives back to that object; putting ours in its place would
    hand that object our schedule."""
    built = ms.__dict__.get("built_schedule", {}).get(name)
    served = ms.__dict__.get("served_schedule")
    if built is None or served is None or not isinstance(live, torch.Tensor):
        return live
    last = served.get(name)
    if last is not None and last[0] is live:
        return last[1]
    want = built.to(live.device, live.dtype)
    value = live if live.shape == want.shape and torch.equal(live, want) else want
    served[name] = (live, value)
    return value


def _continuous_step(ms, sigma: torch.Tensor) -> torch.Tensor:
    """Fractional training step of `sigma`, linear in log sigma between steps."""
    log_sigmas = ms.log_sigmas.to(torch.float64)
    log_sigma = (
        sigma.to(log_sigmas.device, torch.float64).log().clamp(log_sigmas[0], log_sigmas[-1])
    )
    hi = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)
    lo = hi - 1
    frac = (log_sigma - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])
    return (lo.to(torch.float64) + frac).to(sigma.device, torch.float32)
