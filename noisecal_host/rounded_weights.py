"""The same checkpoint at another precision: an fp16 file loaded as fp8 by
UNETLoader's weight_dtype, or a bf16 copy. Its stored values differ, so its
key does; the few values each calibration keeps (noisecal/weight_sample.py)
tell it is the same weights rounded, and its calibrations are used, with a note.

Why: on the pack's reference network an fp16 calibration serves the fp8
weights about as well as recalibrating them (bench/lora_fp8.py: curve gap
0.009 / 0.016 against 0.058 between two calibrations of one network).
"""

from __future__ import annotations

from ..noisecal.calibration_record import record_key
from ..noisecal.checkpoint_key import CheckpointKey
from ..noisecal.errors import CalibrationError
from ..noisecal.weight_sample import SAME_WEIGHTS, agreement
from . import store, user_messages


def same_checkpoint(key: CheckpointKey, calibration_store) -> tuple[CheckpointKey, float] | None:
    """(key, share of agreeing values) of the calibrated checkpoint whose weights
    these are at another precision; None when `key` has calibrations of its own
    (or a label, or no kept values) or no other one agrees."""
    if key.label or key.weights is None or calibration_store is None:
        return None
    if calibration_store.files_for(key):
        return None
    best = None
    for path in calibration_store.files_of_class(key):
        try:
            other = record_key(store.load(path))
        except CalibrationError:
            continue  # an unreadable file serves nobody; its own checkpoint's node says why
        same_type = (other.model_class, other.latent_format) == (key.model_class, key.latent_format)
        if other.label or other.weights is None or not same_type or other == key:
            continue
        share = agreement(key.weights, other.weights)
        if share >= SAME_WEIGHTS and (best is None or share > best[1]):
            best = (other, share)
    return best


def resolve(key: CheckpointKey, calibration_store, what=None, notes=None) -> CheckpointKey:
    """`key`, or the key whose calibrations serve it (same_checkpoint), noted
    to the user when `what` names the node using it."""
    found = same_checkpoint(key, calibration_store)
    if found is None or what is None:
        return key if found is None else found[0]
    other, share = found
    here = ", ".join(sorted(set(key.weights.dtypes)))
    there = ", ".join(sorted(set(other.weights.dtypes)))
    user_messages.note(
        notes,
        user_messages.OTHER_PRECISION,
        f"{what}: using the calibrations of {other.describe()} ({there} weights): this "
        f"model holds the same weights as {here} ({share:.0%} of the sampled values agree "
        f"once rounded). Measured on the pack's reference network, an fp16 calibration "
        f"serves fp8 weights about as well as recalibrating; calibrate this model as "
        f"loaded to use its own.",
        subject=other.identity,
    )
    return other
