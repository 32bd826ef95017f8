"""NoiseShift and Noise Level Correction on a MODEL: what their nodes do, as functions.

Both patches resolve a calibration at sampling time (by checkpoint and the
latent size being sampled) from records handed in (a connected calibration,
pasted JSON) and then the calibration store, and install the resolver on a
clone of the model through `conditioning_level`. The nodes and the command
line call these functions; the store is always passed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..noisecal import calibration_record, errors
from ..noisecal.apply import RecommendedLevel
from ..noisecal.correction import CorrectionResolver
from ..noisecal.noiseshift import ShiftResolver
from . import conditioning_level, dropped_patch, family_support, store, user_messages
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


def installed(model, kind: str, cls) -> bool:
    """Whether the model's sampling object already carries a `cls` level (kind
    "level_fns") or state (kind "state_fns") function."""
    ms = model.get_model_object("model_sampling")
    return any(isinstance(fn, cls) for fn in getattr(ms, kind, ()))


def provided_records(
    key, calibration, inline_calibration: str, what: str, parameterization=None, notes=None
) -> list[dict]:
    """Records handed to a patch (connected calibration, then pasted JSON). One made
    for another model type is refused; one made for another checkpoint of the
    same type is used but logged (and added to `notes`, a list the node shows)."""
    records = list(calibration or [])
    if inline_calibration.strip():
        records += calibration_record.loads_many(inline_calibration, "inline_calibration")
    for i, record in enumerate(records):
        source = "connected calibration" if i < len(calibration or []) else "inline_calibration"
        calibration_record.check_model_type(record, key, parameterization, f"{what}: {source}")
        if calibration_record.record_key(record).identity != key.identity:
            user_messages.note(
                notes,
                f"{what}: the {source} was made for {calibration_record.record_key(record).describe()}, "
                f"this model is {key.describe()}; using it anyway",
            )
    return records


def check_calibrated(patch: _Patch, key, calibration_store) -> None:
    """Refuse, at the node, a checkpoint that has no calibration for this patch at any
    resolution (which resolution is sampled is known only when sampling)."""
    files = calibration_store.files_for(key)
    if patch.resolver is CorrectionResolver:
        files = {size: path for size, path in files.items() if _has_table(path)}
    if not files:
        raise not_calibrated(patch.what, key, patch.missing, patch.calibrate_hint)


def not_calibrated(what: str, key, missing: str = "calibration", hint: str = ""):
    """The error of a node whose checkpoint has no `missing` at any resolution."""
    return errors.CalibrationNotFound(
        f"{what} node: {key.describe()} has no {missing} at any resolution. "
        f"Run 'Noise Calibration: Calibrate' on this model once per resolution"
        f"{hint}, connect a calibration to the node, or set if_missing "
        f"to 'pass through' to sample without it."
    )


def check_latent(resolver, latent, if_missing: str) -> None:
    """With a LATENT connected to the node, resolve its size now: a missing
    calibration then fails at this node, not inside the sampler."""
    if latent is None or if_missing != "error":
        return
    h, w = (int(v) for v in latent["samples"].shape[-2:])
    try:
        resolver.map_for((h, w))
    except errors.CalibrationNotFound as exc:
        raise errors.CalibrationNotFound(
            f"{exc} (checked for the latent connected to this node, {w}x{h} latent pixels; "
            f"or set if_missing to 'pass through' to sample it without)"
        ) from None


def _has_table(path) -> bool:
    try:
        return bool(store.load(path).get("correction"))
    except errors.CalibrationError:
        return False  # the sampler names the broken file if it needs this one


@dataclass(frozen=True)
class _Patch:
    """How one of the two patches is built and installed."""

    what: str  # its name in messages
    resolver: type  # CalibrationResolver subclass
    hook: str  # the conditioning_level.patch_model argument it is installed as
    other: tuple[str, type]  # where the other patch sits on model_sampling, and its class
    missing: str  # what a checkpoint without calibration lacks
    calibrate_hint: str = ""


_NOISESHIFT = _Patch(
    "NoiseShift", ShiftResolver, "level_fn", ("state_fns", CorrectionResolver), "calibration"
)
_CORRECTION = _Patch(
    "Noise Level Correction",
    CorrectionResolver,
    "state_fn",
    ("level_fns", ShiftResolver),
    "correction table",
    " with 'correction' set to euler (or heun for second-order samplers)",
)


def _apply(
    patch: _Patch,
    model,
    strength: float,
    if_missing: str,
    label: str,
    records,
    inline_calibration: str,
    calibration_store,
    notes=None,
    joint: bool = False,
    latent=None,
    **resolver_options: Any,
):
    if strength == 0:
        return model
    parameterization = parameterization_of(model)  # clear error for unsupported types
    if installed(model, *patch.other) and not joint:
        user_messages.note(notes, PAIR_WARNING)
    if installed(model, "level_fns", RecommendedLevel):
        user_messages.note(notes, f"{patch.what}: {APPLY_WARNING}")
    key = checkpoint_key(model, label)
    provided = provided_records(
        key, records, inline_calibration, patch.what, parameterization, notes
    )
    family_support.check(model, patch.what, notes, provided, calibration_store, key)
    if not provided and calibration_store is not None:
        if if_missing == "error":
            check_calibrated(patch, key, calibration_store)
        elif not calibration_store.files_for(key):
            user_messages.note(
                notes, f"{patch.what} passes through: {key.describe()} has no calibration"
            )
    resolver = patch.resolver(
        key,
        provided,
        calibration_store,
        strength=strength,
        on_missing=if_missing,
        max_level=max_level(model),
        warn=user_messages.warner(log, patch.what),
        parameterization=parameterization,
        **resolver_options,
    )
    check_latent(resolver, latent, if_missing)
    patched = conditioning_level.patch_model(model, **{patch.hook: resolver})
    dropped_patch.watch(patched, resolver, patch.what, if_missing)
    return patched


def apply_noiseshift(
    model,
    strength: float,
    if_missing: str,
    label: str,
    records,
    calibration_store,
    inline_calibration: str = "",
    notes: list | None = None,
    joint: bool = False,
    latent=None,
):
    """MODEL -> MODEL telling the network the calibrated noise level (strength 0:
    the model itself). records: calibration records to use before the store's;
    notes: a list that receives the warnings the user must see; joint: the model
    carries the table calibrated with NoiseShift on (no pair warning: the pair
    is meant); latent: a LATENT whose size must be calibrated (checked now)."""
    return _apply(
        _NOISESHIFT,
        model,
        strength,
        if_missing,
        label,
        records,
        inline_calibration,
        calibration_store,
        notes,
        joint=joint,
        latent=latent,
    )


def apply_correction(
    model,
    strength: float,
    sigma_range: tuple[float, float],
    if_missing: str,
    label: str,
    records,
    calibration_store,
    inline_calibration: str = "",
    notes: list | None = None,
    latent=None,
):
    """MODEL -> MODEL evaluated at the corrected level sigma_hat for sampler sigmas
    in sigma_range (strength 0: the model itself); notes, latent as apply_noiseshift."""
    return _apply(
        _CORRECTION,
        model,
        strength,
        if_missing,
        label,
        records,
        inline_calibration,
        calibration_store,
        notes,
        latent=latent,
        sigma_range=tuple(sigma_range),
    )
