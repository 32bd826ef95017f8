"""What the patch nodes do, as functions: each states its policy (noisecal/plan.py)
and hands it to the one installer (noisecal_host/installer.py).

The nodes, the command line, the held-out check and the benchmarks call these;
a calibration store is always passed in (None: only the records handed over).
"""

from __future__ import annotations

from ..noisecal.guidance import GuidanceSettings
from ..noisecal.plan import Policy
from . import installer

NOISESHIFT = "NoiseShift"
CORRECTION = "Noise Level Correction"
APPLY = "Noise Calibration: Apply"
GUIDANCE = "Noise Awareness Guidance"


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
    policy = Policy("noiseshift", NOISESHIFT, strength)
    return installer.install(
        model,
        policy,
        **_calibration(if_missing, label, records, calibration_store, inline_calibration),
        notes=notes,
        latent=latent,
        joint=joint,
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
    policy = Policy("correction", CORRECTION, strength, sigma_range=tuple(sigma_range))
    return installer.install(
        model,
        policy,
        **_calibration(if_missing, label, records, calibration_store, inline_calibration),
        notes=notes,
        latent=latent,
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
    strengths and guidance weight scaled by `strength` (0: the model itself;
    plain on every calibrated size: the model itself); notes, latent as
    apply_noiseshift."""
    return installer.install(
        model,
        Policy("recommended", APPLY, strength),
        **_calibration(if_missing, label, records, calibration_store, inline_calibration),
        notes=notes,
        latent=latent,
    )


def apply_guidance(model, settings: GuidanceSettings, notes=None, batched=None):
    """MODEL -> MODEL with Noise Awareness Guidance at `settings` (weight 0: the
    model itself). batched: None = the extra branch in the step's network call
    where the host allows, False = a separate call."""
    policy = Policy("guidance", GUIDANCE, guidance=settings)
    return installer.install(model, policy, notes=notes, batched=batched)


def calibrated_guidance(model, scale: float, label: str, calibration_store, notes=None):
    """MODEL -> MODEL with, per sampled size, the guidance weight the calibration's
    check chose (times `scale`), with its mode, offset and schedule. No
    calibration, or none with guidance: the model unchanged (with a warning)."""
    policy = Policy("guidance", GUIDANCE, scale, resolver_what=f"{GUIDANCE} (calibrated weight)")
    return installer.install(
        model, policy, label=label, calibration_store=calibration_store, notes=notes
    )


def _calibration(if_missing, label, records, calibration_store, inline_calibration) -> dict:
    return {
        "if_missing": if_missing,
        "label": label,
        "records": records,
        "calibration_store": calibration_store,
        "inline_calibration": inline_calibration,
    }
