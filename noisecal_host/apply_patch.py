"""The Apply node on a MODEL: the calibration's recommended combination of NoiseShift,
Noise Level Correction and guidance, resolved at sampling time for the latent size.

The level parts are installed at once, through `conditioning_level` (NoiseShift's
part as a level function, the correction's as a state function), and the
guidance as a post-CFG function that does nothing at a size whose
recommendation has none, so a recommendation of "plain" leaves every call
unchanged, bit for bit.
"""

from __future__ import annotations

import logging

from ..noisecal.apply import (
    RecommendedGuidance,
    RecommendedLevel,
    RecommendedResolver,
    RecommendedState,
)
from ..noisecal.correction import CorrectionResolver
from ..noisecal.guidance import GuidanceSettings
from ..noisecal.noiseshift import ShiftResolver
from . import conditioning_level, dropped_patch, level_patches, node_status, user_messages
from .fingerprint import checkpoint_key
from .guidance_patch import apply_guidance, guidance_node_installed
from .level_patches import provided_records
from .model_info import max_level, parameterization_of

log = logging.getLogger("noise_calibration")

WHAT = RecommendedResolver.what


def calibrated_sizes(key, calibration_store) -> list[str]:
    """'latent h x w: recommendation' for every file of this checkpoint (the node's text)."""
    lines = []
    for size in node_status.sizes(key, calibration_store):
        (h, w) = size["latent"]
        chosen = size.get("recommendation") or f"unreadable ({size['detail']})"
        lines.append(f"latent {h}x{w} (about {w * 8}x{h * 8} px): {chosen}")
    return lines


MIXED_WARNING = (
    "Noise Calibration: Apply and a NoiseShift, Noise Level Correction or Noise Awareness "
    "Guidance node are both on this model: Apply already applies what the calibration "
    "verified, and the other node adds its method again. Use Apply alone (or the "
    "single-method nodes alone)."
)


def single_method_installed(model) -> bool:
    return (
        level_patches.installed(model, "level_fns", ShiftResolver)
        or level_patches.installed(model, "state_fns", CorrectionResolver)
        or guidance_node_installed(model)
    )


def apply_recommended(
    model,
    strength: float,
    if_missing: str,
    label: str,
    records,
    calibration_store,
    inline_calibration: str = "",
    notes: list | None = None,
    latent=None,
):
    """MODEL -> MODEL with, per sampled size, the recommended combination, its
    strengths scaled by `strength` (0: the model itself); latent: a LATENT whose
    size must be calibrated (checked now)."""
    if strength == 0:
        return model
    if single_method_installed(model):
        user_messages.note(notes, MIXED_WARNING)
    parameterization = parameterization_of(model)
    key = checkpoint_key(model, label)
    provided = provided_records(key, records, inline_calibration, WHAT, parameterization, notes)
    if not provided and calibration_store is not None:
        sizes = calibrated_sizes(key, calibration_store)
        if not sizes and if_missing == "error":
            raise level_patches.not_calibrated(WHAT, key)
        if not sizes:
            user_messages.note(notes, f"{WHAT} passes through: {key.describe()} has no calibration")
        elif notes is not None:
            notes.extend(sizes)  # what is calibrated: shown on the node, not a warning
    resolver = RecommendedResolver(
        key,
        provided,
        calibration_store,
        strength=strength,
        on_missing=if_missing,
        max_level=max_level(model),
        warn=user_messages.warner(log, WHAT),
        parameterization=parameterization,
    )
    level_patches.check_latent(resolver, latent, if_missing)
    level = RecommendedLevel(resolver)
    patched = conditioning_level.patch_model(model, level, state_fn=RecommendedState(resolver))
    dropped_patch.watch(patched, level, WHAT, if_missing)
    # the check's guidance where a record recommends it: a no-op at sizes without
    return apply_guidance(
        patched, GuidanceSettings(), settings_for=RecommendedGuidance(resolver), what=WHAT
    )


def calibrated_guidance(model, scale: float, label: str, calibration_store, notes=None):
    """MODEL -> MODEL with, per sampled size, the guidance weight the calibration's
    check chose (times `scale`), for the guidance node's `weight_source` =
    calibrated. No calibration: the model unchanged, with a warning."""
    what = "Noise Awareness Guidance (calibrated weight)"
    key = checkpoint_key(model, label)
    if not calibrated_sizes(key, calibration_store):
        user_messages.note(notes, f"{what}: {key.describe()} has no calibration; guidance off")
        return model
    resolver = RecommendedResolver(
        key,
        [],
        calibration_store,
        strength=scale,
        on_missing="pass through",
        max_level=max_level(model),
        warn=user_messages.warner(log, what),
        parameterization=parameterization_of(model),
    )
    return apply_guidance(model, GuidanceSettings(), settings_for=RecommendedGuidance(resolver))
