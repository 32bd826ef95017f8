"""What a user reads on each input, by node and input name (nodes/widgets.py
puts them into INPUT_TYPES); the Calibrate node's are in calibrate_tooltips.py."""

from __future__ import annotations


def if_missing(what: str) -> str:
    return (
        f"No {what} for this checkpoint and resolution: stop with instructions, or sample "
        "unchanged with a warning."
    )


# the inputs NoiseShift, Noise Level Correction and Apply share
PATCH = {
    "model": "The diffusion model to patch.",
    "label": (
        "Optional name used instead of the weights fingerprint to find calibrations (must match "
        "the label used when calibrating). Leave empty normally."
    ),
    "calibration": "A calibration straight from the Calibrate node; used before any file.",
    "inline_calibration": (
        "Paste a calibration file's JSON (one record or a list) so a shared workflow carries its "
        "own schedule."
    ),
    "latent": (
        "Optional: the latent you sample (e.g. Empty Latent Image). With if_missing = error, a "
        "missing calibration for its size stops the run at this node, before sampling."
    ),
}

NOISESHIFT = {
    **PATCH,
    "strength": (
        "0 = off (plain noise levels), 1 = the calibrated levels; values in between scale "
        "the shift."
    ),
    "if_missing": if_missing("calibration"),
}

CORRECTION = {
    **PATCH,
    "strength": (
        "Scales the calibrated correction r: 0 = off (the model is unchanged), 1 = as calibrated."
    ),
    "sigma_min": "Correct only steps whose sampler sigma is at least this.",
    "sigma_max": (
        "Correct only steps whose sampler sigma is at most this "
        "(flow models such as SD3/Flux go from 1 to 0)."
    ),
    "if_missing": if_missing("correction table"),
}

APPLY = {
    **PATCH,
    "strength": (
        "1 = the recommended combination at its verified strengths and guidance weight; "
        "other values scale them (0 = off)."
    ),
    "if_missing": if_missing("calibration"),
}

SPECTRAL = {
    "model": "The model the schedule is for (its sigma range, shift and calibration).",
    "steps": "Number of sampling steps.",
    "source": (
        "Where the data spectrum comes from: this checkpoint's calibration file at this "
        "resolution, or the 'latent' input."
    ),
    "variant": "How steps are spaced between the spectral bounds (the first is the measured default).",
    "seed": (
        "Draws the spectral parameters from the spread measured at calibration: a per-seed "
        "schedule. Use the sampler's seed."
    ),
    "denoise": "Below 1: only the last part of the schedule, for img2img.",
    "width": "Image width, used when no latent is connected.",
    "height": "Image height, used when no latent is connected.",
    "label": "Calibration label, if you calibrated with one.",
    "latent": (
        "Sets the resolution; with source 'reference latent' its content is the reference spectrum."
    ),
    "start": (
        "model maximum: the first step is the model's largest sigma (pure noise), as ComfyUI's "
        "schedulers start. spectral bound: start lower, where the strongest frequency is just "
        "drowned; on the dead-leaves network up to 4x worse in patch SWD at 8 steps."
    ),
}

GUIDANCE = {
    "model": "The diffusion model to patch.",
    "weight": (
        "Guidance weight; 0 = off. With 'per step size' it is per unit of noise level travelled "
        "(try 2-4)."
    ),
    "mode": (
        "Which other level: offset = a fixed log-SNR offset from the level the network is told; "
        "estimated = the level measured from the latent's high frequencies; pseudo-level = a "
        "fixed level, for models trained with noise-condition dropout."
    ),
    "offset": "offset mode: log-SNR offset of the other level (positive = noisier).",
    "pseudo_level": (
        "pseudo-level mode: the fixed level (flow-equivalent, 0-1) the model was trained to "
        "treat as 'unknown noise'."
    ),
    "weight_schedule": (
        "per step size: weight times the step's change of noise level (shrinks with more steps); "
        "constant: the same weight every step (the paper's form)."
    ),
    "level_start": (
        "Guidance only at or below this noise level (flow-equivalent 0-1; 1 = from the first step)."
    ),
    "level_end": "Guidance only at or above this noise level (0 = to the end).",
    "weight_source": (
        "manual: the settings above. calibrated: the weight the Calibrate node's held-out check "
        "chose for this checkpoint and the sampled size (0 where no weight cleared its noise), "
        "times `weight` (1 = as chosen), with the mode, offset and schedule it was chosen with; "
        "the widgets from mode on are then not used."
    ),
    "label": (
        "Optional name used instead of the weights fingerprint to find calibrations (must match "
        "the label used when calibrating). Leave empty normally."
    ),
}

IMAGE_FOLDER = {
    "folder": (
        "A folder in ComfyUI's input directory ('.' is the input directory itself). Refresh (R) "
        "after creating one."
    ),
    "width": "Width of every image in pixels (the Calibrate node's width).",
    "height": "Height of every image in pixels (the Calibrate node's height).",
    "limit": "At most this many images, the first by name (0: all).",
}

LOAD_REFERENCE = {
    "model_name": (
        "sd3_dead_leaves_m32: dead-leaves images, trained at 32x32 latents (256 px); m16 at "
        "16x16; sd3_gaussian_field_m32: a Gaussian field (no picture to decode)."
    ),
}

REFERENCE_DECODE = {
    "samples": "Latents sampled from a dead-leaves network.",
}

EMPTY_CONDITIONING = {
    "model": "The model the conditioning is shaped for.",
}
