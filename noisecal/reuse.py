"""When an existing calibration file stands for a requested calibration run.

The Calibrate node reuses a file by default instead of spending minutes of
network evaluations again. A file is reused when it was made for the same
schedule, search, correction sampler, sample count and kind of data. The
calibration seed is deliberately not compared: ComfyUI's frontend gives every
`seed` widget a "randomize after each run" control, and that alone must not
trigger a recalibration.
"""

from __future__ import annotations

import math

SELF_GENERATED = "self-generated"
# generation settings that do not make another calibration set
IGNORED_GENERATION_FIELDS = ("seed",)


def _same_levels(a, b) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a, b, strict=True)
    )


def mismatch(
    record: dict,
    *,
    sigmas,
    method: str,
    correction: str | None,
    count: int,
    generation: dict | None,
    check: bool = False,
) -> str | None:
    """Why `record` cannot be reused for this request (None: it can).
    generation: the self-generation settings, or None for connected data."""
    if not _same_levels(record["sigmas"], [float(s) for s in sigmas if float(s) > 0]):
        return "it was calibrated at other sigmas (steps or scheduler differ)"
    if record["method"]["name"] != method:
        return f"it used the search {record['method']['name']!r}, not {method!r}"
    table = record.get("correction_joint") or record.get("correction")
    if correction is not None and (table is None or table.get("sampler") != correction):
        return f"it has no correction table for {correction}"
    if check and not record.get("check"):
        return "it has no held-out check"
    calibration_set = record["calibration_set"]
    if calibration_set["count"] != count:
        return f"it used {calibration_set['count']} latents, not {count}"
    recorded = calibration_set.get("generation")
    if (recorded is None) != (generation is None):
        kind = "self-generated" if recorded is not None else "connected"
        return f"it was calibrated from {kind} data"
    if generation is not None:
        for field, value in generation.items():
            if field not in IGNORED_GENERATION_FIELDS and recorded.get(field) != value:
                return f"its data was generated with another {field}"
    return None
