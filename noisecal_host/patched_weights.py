"""A MODEL with weight patches (a LoRA, a merge) whose checkpoint is calibrated only
without them, or with fp8 weights and no calibration: tell the user why.

The checkpoint key follows the weight patches (fingerprint.checkpoint_key): a
LoRA changes the denoiser the calibration measured, and on the dead-leaves
reference network the base calibration serves it worse than recalibrating
(docs/compatibility.md, bench/lora_fp8.py). So the patched MODEL looks up its own
calibrations; when there are none but the base checkpoint has some, the node's
error or pass-through note says so instead of only "no calibration".

fp8 weights (UNETLoader's weight_dtype) are other stored values, so their key
differs from the fp16 file's; the fp16 file's calibration is found through the
weight values it keeps (rounded_weights.py). An fp8 MODEL for which neither is
calibrated is told how to get one.
"""

from __future__ import annotations

from ..noisecal.errors import CalibrationNotFound
from . import user_messages
from .fingerprint import checkpoint_key, weight_patches


def base_only(model, key, calibration_store) -> str:
    """'' unless the model has weight patches, no calibration under its key and some
    under its checkpoint's key without them; else the sentence that explains."""
    if key.label or calibration_store is None or not weight_patches(model):
        return ""
    if calibration_store.files_for(key):
        return ""
    base = checkpoint_key(model, with_patches=False)
    sizes = sorted(calibration_store.files_for(base))
    if not sizes:
        return ""
    listed = ", ".join(f"{h}x{w}" for h, w in sizes)
    return (
        f"this model has weight patches (a LoRA or a merge, on "
        f"{len(weight_patches(model))} weights), and {base.describe()} is calibrated only "
        f"without them (latent {listed}). A LoRA changes what the calibration measured, so "
        f"those are not used: run 'Noise Calibration: Calibrate' on this model with the "
        f"LoRA on, or give both the same label to share one calibration."
    )


FP8 = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")


def fp8_uncalibrated(model, key, calibration_store) -> str:
    """'' unless the diffusion weights are mostly fp8 and nothing is calibrated under
    the key (nor at another precision); else the sentence saying how to get one."""
    if key.label or calibration_store is None or calibration_store.files_for(key):
        return ""
    dtypes = [str(p.dtype) for p in model.model.diffusion_model.parameters()]
    fp8 = [d for d in dtypes if d.removeprefix("torch.") in FP8]
    if not dtypes or len(fp8) * 2 < len(dtypes):
        return ""
    return (
        f"this model's weights are {fp8[0].removeprefix('torch.')}, and neither they nor "
        f"the same checkpoint at another precision are calibrated: calibrate it as "
        f"loaded, or calibrate the fp16 or bf16 file it was loaded from, whose "
        f"calibration these weights then use (measured on the pack's reference network, "
        f"it serves fp8 weights about as well as recalibrating; a file from an earlier "
        f"version of the pack keeps no weight values: recalibrate, or give both the same "
        f"label)."
    )


def check(model, key, calibration_store, what: str, if_missing: str, notes) -> None:
    """At the node: raise (if_missing = error) or note the base-only / fp8 case."""
    text = base_only(model, key, calibration_store) or fp8_uncalibrated(
        model, key, calibration_store
    )
    if not text:
        return
    if if_missing == "error":
        raise CalibrationNotFound(f"{what} node: {text}")
    user_messages.note(notes, user_messages.PASS_THROUGH, f"{what} passes through: {text}")
