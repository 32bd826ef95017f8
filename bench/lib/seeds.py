"""Fixed seeds. Calibration data, search noise and sampling noise use
different seeds (the same seed would make x0 and eps the same white noise)."""

CAL_DATA_SEED = 1001  # generator of the calibration latents (sample_field)
SEARCH_SEED = 2002  # eps of the calibration search
SAMPLE_SEED = 3003  # KSampler noise seed for the FD samples
TIMING_SEED = 4004  # noise for the overhead timing

ALL = {
    "calibration_data": CAL_DATA_SEED,
    "search": SEARCH_SEED,
    "sampling": SAMPLE_SEED,
    "timing": TIMING_SEED,
}
