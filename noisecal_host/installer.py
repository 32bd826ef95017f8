"""The one way the pack's MODEL nodes patch a model.

A node (NoiseShift, Noise Level Correction, Apply, Noise Awareness Guidance)
states a policy (noisecal/plan.py) and hands it here. `install`:

- warns about a neighbour the node does not compose with (NoiseShift with
  Noise Level Correction, Apply with a single-method node);
- reads the records handed to the node and the store's files for the
  checkpoint, once (noisecal_host/calibrations.py), refuses a checkpoint with
  nothing calibrated when the node must not pass through, and runs the family
  and precision check (shifts lost to rounding) for every node;
- builds the one resolver from latent size to plan, and checks a connected
  latent's size now;
- installs only the parts the plans can use, on one clone with one copy of the
  sampling object (noisecal_host/conditioning_level.py): NoiseShift's level
  function, the correction's state function, and the guidance hooks
  (noisecal_host/guidance_patch.py) only when a plan uses guidance; a plan
  that is plain on every size installs nothing and returns the model itself
  (with if_missing = error and no latent connected, only the level function
  that raises the node's error on a size with no calibration);
- hangs the dropped-patch watcher (noisecal_host/dropped_patch.py) on what it
  installed. The copy keeps its schedule through ComfyUI's dynamic VRAM
  loading (conditioning_level's guard).
"""

from __future__ import annotations

import logging

from ..noisecal.calibration_record import recommendation
from ..noisecal.errors import CalibrationNotFound
from ..noisecal.plan import CorrectionPart, GuidancePart, PlanResolver, Policy, ShiftPart
from . import (
    conditioning_level,
    dropped_patch,
    family_support,
    guidance_patch,
    patched_weights,
    rounded_weights,
    user_messages,
)
from .calibrations import Calibrations, provided_records
from .fingerprint import checkpoint_key
from .model_info import max_level, parameterization_of

log = logging.getLogger("noise_calibration")

ON_MISSING = ("error", "pass through")  # what a resolver does without a calibration

PAIR_WARNING = (
    "NoiseShift and Noise Level Correction are both on this model. Each was "
    "calibrated without the other, and on the testbed the pair was often worse than "
    "either alone (docs/results-correction.md): use one of them."
)
APPLY_WARNING = (
    "a Noise Calibration: Apply node is already on this model and applies what the "
    "calibration verified; this node adds its method again. Use Apply alone."
)
MIXED_WARNING = (
    "Noise Calibration: Apply and a NoiseShift, Noise Level Correction or Noise Awareness "
    "Guidance node are both on this model: Apply already applies what the calibration "
    "verified, and the other node adds its method again. Use Apply alone (or the "
    "single-method nodes alone)."
)
# what a checkpoint without calibration lacks, per policy kind, and how to make it
MISSING = {
    "correction": (
        "correction table",
        " with 'correction' set to euler (or heun for second-order samplers)",
    )
}


def install(
    model,
    policy: Policy,
    *,
    if_missing: str = "pass through",
    label: str = "",
    records=None,
    inline_calibration: str = "",
    calibration_store=None,
    notes: list | None = None,
    latent=None,
    joint: bool = False,
    batched=None,
):
    """MODEL -> MODEL with the policy's plan per sampled size (the model itself
    where nothing is to be done). records: calibration records to use before the
    store's; notes: a list that receives the warnings the user must see (a
    user_messages.NodeText also receives the calibrated sizes); latent: a
    LATENT whose size must be calibrated (checked now); joint: the model carries
    the table calibrated with NoiseShift on (no pair warning: the pair is
    meant); batched: guidance's extra branch in the step's network call (None:
    where the host allows) or a separate call (False)."""
    if policy.off:
        return model
    parameterization = parameterization_of(model)  # clear error for unsupported types
    warn_neighbours(model, policy, notes, joint)
    if not policy.calibrated:  # guidance at fixed settings: reads no calibration
        family_support.check(model, policy.what, notes)
        resolver = PlanResolver(policy, parameterization=parameterization)
        return _patched(model, resolver, {"guidance"}, "pass through", batched)
    key = checkpoint_key(model, label)
    provided = provided_records(
        key, records, inline_calibration, policy.what, parameterization, notes
    )
    if not provided:  # the same weights at another precision use their calibrations
        key = rounded_weights.resolve(key, calibration_store, policy.what, notes)
    found = Calibrations(key, provided, calibration_store, parameterization)
    if isinstance(notes, user_messages.NodeText):
        notes.calibrated = found.status(tables_only=policy.kind == "correction")
    family_support.check(model, policy.what, notes, _rounding_records(policy, found))
    if not provided and calibration_store is not None:  # LoRA or fp8 without calibration
        on_missing = "pass through" if policy.kind == "guidance" else if_missing
        patched_weights.check(model, key, calibration_store, policy.what, on_missing, notes)
    if (
        not provided
        and calibration_store is not None
        and not _calibrated(policy, found, if_missing, notes)
    ):
        return model
    resolver = PlanResolver(
        policy,
        key,
        provided,
        calibration_store,
        on_missing=if_missing,
        max_level=max_level(model),
        warn=user_messages.warner(log, policy.resolver_what or policy.what),
        parameterization=parameterization,
    )
    check_latent(resolver, latent, if_missing)
    on_dropped = "pass through" if policy.kind == "guidance" else if_missing
    parts = found.parts(policy)
    if not parts and on_dropped == "error" and latent is None:
        # plain on every calibrated size, but a size sampled later may have no
        # calibration: a level function that resolves each size raises the node's
        # error there and leaves calibrated sizes unchanged
        parts = {"shift"}
    return _patched(model, resolver, parts, on_dropped, batched)


def kinds_on(model) -> set[str]:
    """The policy kinds of the pack's patches already on the model."""
    ms = model.get_model_object("model_sampling")
    fns = (*getattr(ms, "level_fns", ()), *getattr(ms, "state_fns", ()))
    return {fn.policy_kind for fn in fns if hasattr(fn, "policy_kind")}


def warn_neighbours(model, policy: Policy, notes, joint: bool = False) -> None:
    """The warnings for a node placed on a model that carries a patch it does not
    compose with."""
    on = kinds_on(model)
    if policy.kind == "recommended":
        if on & {"noiseshift", "correction", "guidance"}:
            user_messages.note(notes, user_messages.APPLY_AND_METHOD, MIXED_WARNING)
        return
    other = {"noiseshift": "correction", "correction": "noiseshift"}.get(policy.kind)
    if other in on and not joint:
        user_messages.note(notes, user_messages.PAIR, PAIR_WARNING)
    if "recommended" in on:
        user_messages.note(notes, user_messages.APPLY_AND_METHOD, f"{policy.what}: {APPLY_WARNING}")


def not_calibrated(what: str, key, missing: str = "calibration", hint: str = ""):
    """The error of a node whose checkpoint has no `missing` at any resolution."""
    return CalibrationNotFound(
        f"{what} node: {key.describe()} has no {missing} at any resolution. "
        f"Run 'Noise Calibration: Calibrate' on this model once per resolution"
        f"{hint}, connect a calibration to the node, or set if_missing "
        f"to 'pass through' to sample without it."
    )


def check_latent(resolver: PlanResolver, latent, if_missing: str) -> None:
    """With a LATENT connected to the node, resolve its size now: a missing
    calibration then fails at this node, not inside the sampler."""
    if latent is None or if_missing != "error":
        return
    h, w = (int(v) for v in latent["samples"].shape[-2:])
    try:
        resolver.plan_for((h, w))
    except CalibrationNotFound as exc:
        raise CalibrationNotFound(
            f"{exc} (checked for the latent connected to this node, {w}x{h} latent pixels; "
            f"or set if_missing to 'pass through' to sample it without)"
        ) from None


def _calibrated(policy: Policy, found: Calibrations, if_missing: str, notes) -> bool:
    """Whether the store calibrates the checkpoint for this policy (no records were
    handed to the node). Without: the node's error, or a warning (and, for
    guidance, False: nothing to install)."""
    what, key = policy.what, found.key
    if policy.kind == "guidance":
        if not found.files:
            text = f"{policy.resolver_what}: {key.describe()} has no calibration; guidance off"
            user_messages.note(notes, user_messages.NO_CALIBRATED_GUIDANCE, text)
            return False
        return True
    usable = found.with_tables() if policy.kind == "correction" else found.files
    if not usable and if_missing == "error":
        raise not_calibrated(what, key, *MISSING.get(policy.kind, ()))
    if not found.files:
        text = f"{what} passes through: {key.describe()} has no calibration"
        user_messages.note(notes, user_messages.PASS_THROUGH, text)
    elif policy.kind == "recommended" and notes is not None:
        notes.extend(found.lines())  # what is calibrated: shown on the node, not a warning
    return True


def _rounding_records(policy: Policy, found: Calibrations) -> list[tuple[str, dict]]:
    """The levels a policy changes, per record, for family_support's rounding check:
    Apply's are those its recommendation uses; guidance changes none."""
    if policy.kind == "guidance":
        return []
    if policy.kind != "recommended":
        return found.labelled()
    used = []
    for label, record in found.labelled():
        chosen = recommendation(record)
        view = {}
        if chosen["noiseshift"] > 0:
            view.update(sigmas=record["sigmas"], sigma_hat=record["sigma_hat"])
        if chosen["correction"] > 0:
            view["correction"] = record[chosen["table"]]
        used.append((label, view))
    return used


def _patched(model, resolver: PlanResolver, parts: set[str], on_dropped: str, batched):
    """One clone, one sampling-object copy, the parts the plans use (none: the model)."""
    if not parts:
        return model
    policy = resolver.policy
    level_fns = [ShiftPart(resolver)] if "shift" in parts else []
    state_fn = CorrectionPart(resolver) if "correction" in parts else None
    override = None
    if "guidance" in parts:
        override = conditioning_level.LevelOverride()
        override.policy_kind, override.what = policy.kind, policy.what  # as the plan parts
        level_fns.append(override)
    patched = conditioning_level.patch_model(model, *level_fns, state_fn=state_fn)
    if override is not None:
        guidance = GuidancePart(resolver)
        guidance_patch.install(patched, override, guidance, resolver.parameterization, batched)
    dropped_patch.watch(patched, (level_fns or [state_fn])[0], policy.what, on_dropped)
    return patched
