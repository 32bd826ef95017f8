"""The short text a Calibrate run shows in its node: what was done, and whether it helped.

The numbers it shows come from the functions here, which the calibrations list
(noisecal_host/routes.py) uses too, so the node and the sidebar tab agree."""

from __future__ import annotations

import math
import re

from .held_out_check import PLAIN, guidance_name

# how a run names self-generated data it made now or read from its cache
# (noisecal_host/calibration_job.py): true of that run only, not of a later reuse
_ORIGIN = re.compile(r"^(self-generated) \((?:new|cached)\)")


def one_step_error(record: dict) -> dict | None:
    """{"before", "after", "ratio"}: the one-step error summed over steps, without
    and with NoiseShift (None: the record has none)."""

    def total(name):
        values = record["metrics"].get(name) or []
        if not values or not all(isinstance(v, (int, float)) for v in values):
            return None
        value = float(sum(values))
        return value if math.isfinite(value) else None

    before, after = total("error_before"), total("error_after")
    if before is None:
        return None
    return {
        "before": before,
        "after": after,
        "ratio": after / before if before and after is not None else None,
    }


def one_step_error_change(record: dict) -> str | None:
    """'one-step error 0.123 -> 0.045 (-63%)' from the record's own check, summed over steps."""
    error = one_step_error(record)
    if error is None or not error["before"] or error["after"] is None:
        return None
    return (
        f"one-step error {error['before']:.4g} -> {error['after']:.4g} ({error['ratio'] - 1:+.0%})"
    )


def recommendation_gain(record: dict) -> dict | None:
    """What Apply uses on this record, scored by its held-out check: {"gain", "gain_noise",
    "score", "plain"}. gain: the spectral-FD gain over plain of the recommendation with
    its guidance (what Apply uses); gain_noise: its bootstrap spread, None where guidance
    is on (the check measured the guidance's spread against the recommendation, not
    against plain). None without a check."""
    check = record.get("check")
    if not check:
        return None
    chosen = check["candidates"][check["recommendation"]]
    plain = check["candidates"].get(PLAIN, {}).get("score")
    guidance = check.get("guidance") or {}
    weight = guidance.get("weight", 0.0)
    guided = (guidance.get("candidates") or {}).get(guidance_name(weight)) if weight else None
    if guided is None:
        return {
            "gain": chosen["gain"],
            "gain_noise": chosen["gain_noise"],
            "score": chosen["score"],
            "plain": plain,
        }
    # gains are differences of one distance: over plain = the recommendation's gain over
    # plain + the guidance's gain over the recommendation
    return {
        "gain": chosen["gain"] + guided["gain"],
        "gain_noise": None,
        "score": guided["score"],
        "plain": plain,
    }


def stored_source(source: str) -> str:
    """The data a stored calibration was made from, without the "(new)"/"(cached)"
    that told the run which made it whether it generated its set or read it."""
    return _ORIGIN.sub(r"\1", source)


def summary(
    record: dict, path: str | None, *, reused: bool, data: str, evaluations: int, seconds: float
) -> str:
    """Lines for the node: file written or reused, resolution, data, cost, check."""
    res = record["resolution"]
    cost = record["cost"]
    if reused:
        head = f"reused the stored calibration {path or '(not saved)'}"
        data = f"the stored calibration was made from {stored_source(data)}"
    else:
        head = f"wrote {path or '(not saved)'}"
    lines = [
        head,
        f"{res['image_width']}x{res['image_height']} px (latent {res['latent_height']}x"
        f"{res['latent_width']}), {len(record['sigmas'])} steps, "
        f"{record['calibration_set']['count']} latents{'; ' if reused else ': '}{data}",
    ]
    if reused:
        lines.append(
            f"this run: no network evaluation ({seconds:.1f} s); the file took "
            f"{cost['network_evaluations']} evaluations, {cost['wall_time_s']:.0f} s "
            f"(set mode to recalibrate to redo it)"
        )
    else:
        lines.append(f"this run: {evaluations} network evaluations, {seconds:.1f} s")
    phases = cost.get("phases") or {}
    if phases:
        lines.append(
            "by phase: "
            + ", ".join(
                f"{name} {p['network_evaluations']} ({p['seconds']:.1f} s)"
                for name, p in phases.items()
            )
        )
    change = one_step_error_change(record)
    if change:
        lines.append(change)
    for name in ("correction", "correction_joint"):
        if not record.get(name):
            continue
        table = record[name]
        before, after = sum(table.get("error_before") or []), sum(table.get("error_after") or [])
        if before:
            how = "with NoiseShift on" if name == "correction_joint" else "alone"
            lines.append(
                f"correction table ({table.get('sampler')}, {how}): spectrum error "
                f"{before:.4g} -> {after:.4g}"
            )
    check = record.get("check")
    if check:
        chosen = check["recommendation"]
        plain = check["candidates"]["plain"]["score"]
        best = check["candidates"][chosen]["score"]
        guidance = check.get("guidance") or {}
        weight = guidance.get("weight", 0.0)
        if weight:
            guided = guidance["candidates"][guidance_name(weight)]["score"]
            chosen_text = f"{chosen} + guidance at weight {weight:g} ({guided:.4g})"
        elif guidance:
            chosen_text = f"{chosen} (guidance tried, none cleared the noise)"
        else:
            chosen_text = chosen
        scores = (
            f"plain {plain:.4g}" if chosen == PLAIN else f"plain {plain:.4g}, {chosen} {best:.4g}"
        )
        lines.append(
            f"held-out check ({check['held_out']} latents, spectral FD): {scores}; "
            f"Apply uses {chosen_text}"
        )
    return "\n".join(lines)
