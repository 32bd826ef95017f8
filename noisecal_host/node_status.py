"""What NoiseShift, Noise Level Correction and Apply show on the node after a run:
the resolutions calibrated for the connected checkpoint (and, per size, the
calibration's recommendation). Sent in the node's `ui` output under UI_KEY, so
the web extension shows it without a request of its own (the Calibrate node's
plot goes the same way, under PLOT_KEY)."""

from __future__ import annotations

from ..noisecal import calibration_record, errors
from . import store

UI_KEY = "noise_calibration"
# the Calibrate node's plot in its `ui` output: [{"filename", "subfolder", "type",
# "width", "height"}] of a temp image, shown in the node's panel by the web extension
PLOT_KEY = "noise_calibration_plot"


def calibrated(model, label: str, calibration_store, tables_only: bool = False) -> dict:
    """{"checkpoint", "identity", "sizes"} for the model's checkpoint (see `sizes`)."""
    from .fingerprint import checkpoint_key

    key = checkpoint_key(model, label)
    found = sizes(key, calibration_store, tables_only) if calibration_store is not None else []
    return {"checkpoint": key.describe(), "identity": key.identity, "sizes": found}


def sizes(key, calibration_store, tables_only: bool = False) -> list[dict]:
    """[{"latent", "image", "recommendation", "correction"}] of the checkpoint's files,
    smallest size first (an unreadable one: {"latent", "image", "error", "detail"});
    tables_only: only the sizes with a Noise Level Correction table."""
    found = []
    files = calibration_store.files_for(key)
    for (h, w), path in sorted(files.items(), key=lambda item: item[0][0] * item[0][1]):
        try:
            record = store.load(path)
        except errors.CalibrationError as exc:
            found.append(
                {
                    "latent": [h, w],
                    "image": [w * 8, h * 8],
                    "error": "unreadable",
                    "detail": str(exc),
                }
            )
            continue
        if tables_only and not record.get("correction"):
            continue
        res = record["resolution"]
        found.append(
            {
                "latent": [h, w],
                "image": [res["image_width"], res["image_height"]],
                "recommendation": calibration_record.recommendation(record)["name"],
                "correction": bool(record.get("correction")),
            }
        )
    return found
