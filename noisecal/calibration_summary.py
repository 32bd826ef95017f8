"""The short text a Calibrate run shows in its node: what was done, and whether it helped."""

from __future__ import annotations

from .held_out_check import guidance_name


def one_step_error_change(record: dict) -> str | None:
    """'one-step error 0.123 -> 0.045 (-63%)' from the record's own check, summed over steps."""
    before = sum(record["metrics"].get("error_before") or [])
    after = sum(record["metrics"].get("error_after") or [])
    if not before:
        return None
    return f"one-step error {before:.4g} -> {after:.4g} ({(after - before) / before:+.0%})"


def summary(
    record: dict, path: str | None, *, reused: bool, data: str, evaluations: int, seconds: float
) -> str:
    """Lines for the node: file written or reused, resolution, data, cost, check."""
    res = record["resolution"]
    cost = record["cost"]
    lines = [
        f"{'reused' if reused else 'wrote'} {path or '(not saved)'}",
        f"{res['image_width']}x{res['image_height']} px (latent {res['latent_height']}x"
        f"{res['latent_width']}), {len(record['sigmas'])} steps, "
        f"{record['calibration_set']['count']} latents: {data}",
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
        lines.append(
            f"held-out check ({check['held_out']} latents, spectral FD): plain {plain:.4g}, "
            f"{chosen} {best:.4g}; Apply uses {chosen_text}"
        )
    return "\n".join(lines)
