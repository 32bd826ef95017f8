"""What a user reads on each input of the Calibrate node (nodes/widgets.py puts
them into its INPUT_TYPES)."""

CALIBRATE = {
    "model": "The model to calibrate (after any ModelSampling node you sample with).",
    "steps": (
        "Steps of the schedule to calibrate at; the result is a curve over sigma that serves "
        "other step counts too."
    ),
    "scheduler": (
        "Scheduler giving the calibration sigmas (from this model's own sampling, so a shift is "
        "respected)."
    ),
    "search_mode": (
        "lean (default): Gauss-Newton steps on the one-step residuals, about 3 evaluations per "
        "latent and step; a small shift is kept only where its gain clears twice its standard "
        "error, so the training resolution gets none. fast: bracketing + parabolic refinement "
        "(about twice the evaluations). grid: the paper's coarse-to-fine grid (slowest)."
    ),
    "sample_count": (
        "How many calibration latents to use (the first N of the batch). With check = held-out "
        "3/8 (at least 4) are held back: 16 = 10 calibrated on + 6 held back, about 2,200 "
        "network evaluations at 20 steps with correction and 1,300 without."
    ),
    "seed": "Seed of the calibration noise.",
    "width": "Target width in pixels when calibrating from IMAGE (a LATENT input sets it itself).",
    "height": "Target height in pixels when calibrating from IMAGE.",
    "label": "Optional name to store the calibration under instead of the weights fingerprint.",
    "max_batch": (
        "Most latents per forward pass. Each call takes as many as fit in the free memory by "
        "ComfyUI's own estimate, up to this; results do not depend on it."
    ),
    "latent": "Calibration latents (VAE-encoded real images at the target resolution).",
    "image": "Calibration images; needs the VAE input.",
    "vae": "VAE to encode the calibration images.",
    "positive": "Conditioning during calibration; default: the model's empty (zero) conditioning.",
    "sigmas": "Calibrate at these sigmas instead of steps + scheduler.",
    "correction": (
        "Also calibrate a Noise Level Correction table in the same run, for this sampler family: "
        "euler (euler, euler_ancestral, ddim) or heun (second-order samplers). About 4 extra "
        "network calls per latent per step (twice that for heun). With check = held-out the "
        "table is made for Apply (with NoiseShift on where its curve shifts); with check = off, "
        "alone, for the Noise Level Correction node. It fits the steps and scheduler set here "
        "best: calibrate at the step count you sample with."
    ),
    "mode": (
        "reuse: when a calibration for this checkpoint, resolution and settings exists, show it "
        "instead of calibrating again (a changed seed alone never recalibrates). recalibrate: "
        "always run and replace it."
    ),
    "data": (
        "auto: the connected latent or image if any, else self-generate. self-generate: the "
        "model samples sample_count images at its native resolution (from positive/negative), "
        "which are brought to width x height (through the VAE when connected); no dataset needed."
    ),
    "negative": "Negative conditioning for self-generation (default: empty).",
    "generation_steps": "Sampler steps for each self-generated image.",
    "generation_cfg": (
        "CFG for self-generation (1: positive only, e.g. Flux or an empty conditioning; about "
        "4-5 for SD3.5 with a prompt)."
    ),
    "generation_sampler": (
        "Sampler for self-generation. dpmpp_2m (one evaluation per step, second order): on the "
        "testbed its 20-step samples have the data's spread and the calibration from them "
        "matches one from real data; euler's 20-step samples are about 7% too smooth."
    ),
    "generation_scheduler": "Scheduler for self-generation.",
    "native_width": (
        "Width the model generates well at, in pixels (0: the model's own: a reference network's "
        "trained size, else its family's, 1024 for SD3/SD3.5/Flux/SDXL, 512 for SD1.5, at most "
        "what the network takes)."
    ),
    "native_height": "Height the model generates well at (0: its family's).",
    "check": (
        "held-out: hold back 3/8 of the latents (at least 4), sample them with plain, NoiseShift "
        "and (with correction) NLC and both, and record which one the Apply node should use "
        "(plain unless a gain clears the check's noise and edges do not get worse), then the "
        "Noise Awareness Guidance weight on top of it (0 unless one clears the noise). off: "
        "calibrate on all latents, no recommendation."
    ),
}
