"""The lookup policy for a latent size with no calibration of its own.

1. a calibration for exactly this latent size (h x w) wins;
2. otherwise the two calibrations of the same checkpoint whose token counts
   (latent h*w) bracket the requested one are used, interpolated in log token
   count; one of them alone if it is within 1% of the count;
3. otherwise (outside the calibrated range, or nothing for this checkpoint)
   `CalibrationNotFound`, naming the checkpoint, the resolution and what
   exists. We do not extrapolate: a schedule outside its range is a guess.
"""

from __future__ import annotations

import math

from .checkpoint_key import CheckpointKey
from .errors import CalibrationNotFound


def choose_sizes(sizes, latent_size) -> list[tuple[tuple[int, int], float]] | None:
    """The lookup policy on a list of calibrated latent sizes: [(size, weight)] or None."""
    latent_size = (int(latent_size[0]), int(latent_size[1]))
    if latent_size in sizes:
        return [(latent_size, 1.0)]
    tokens = latent_size[0] * latent_size[1]
    by_tokens = sorted(sizes, key=lambda size: size[0] * size[1])
    for size in by_tokens:
        if abs(size[0] * size[1] - tokens) <= 0.01 * tokens:
            return [(size, 1.0)]
    lower = [size for size in by_tokens if size[0] * size[1] < tokens]
    upper = [size for size in by_tokens if size[0] * size[1] > tokens]
    if not (lower and upper):
        return None
    s0, s1 = lower[-1], upper[0]
    t0, t1 = math.log(s0[0] * s0[1]), math.log(s1[0] * s1[1])
    w1 = (math.log(tokens) - t0) / (t1 - t0)
    return [(s0, 1.0 - w1), (s1, w1)]


def not_found(key: CheckpointKey, latent_size, sizes) -> CalibrationNotFound:
    have = ", ".join(f"{h}x{w}" for (h, w) in sorted(sizes)) or "none"
    h, w = int(latent_size[0]), int(latent_size[1])
    return CalibrationNotFound(
        f"no calibration for {key.describe()} at latent {h}x{w} (image about {w * 8}x{h * 8} "
        f"px); calibrated latent sizes: {have}. Run the 'Noise Calibration: Calibrate' node "
        f"(or the command python -m noisecal_host calibrate) for this checkpoint and resolution, or connect "
        f"a calibration to the node."
    )
