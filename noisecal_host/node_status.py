"""What NoiseShift, Noise Level Correction and Apply show on the node after a run:
the resolutions calibrated for the connected checkpoint (and, per size, the
calibration's recommendation). Sent in the node's `ui` output under UI_KEY, so
the web extension shows it without a request of its own."""

from __future__ import annotations

from ..noisecal import store

UI_KEY = "noise_calibration"


def calibrated(model, label: str, calibration_store, tables_only: bool = False) -> dict:
    """{"checkpoint", "identity", "sizes": [{"latent", "image", "recommendation",
    "correction"}]} for the model's checkpoint, smallest size first; tables_only:
    only the sizes with a Noise Level Correction table."""
    from .fingerprint import checkpoint_key

    key = checkpoint_key(model, label)
    sizes = []
    files = calibration_store.files_for(key) if calibration_store is not None else {}
    for (h, w), path in sorted(files.items(), key=lambda item: item[0][0] * item[0][1]):
        try:
            record = store.load(path)
        except store.CalibrationError:
            sizes.append({"latent": [h, w], "image": [w * 8, h * 8], "error": "unreadable"})
            continue
        if tables_only and not record.get("correction"):
            continue
        res = record["resolution"]
        sizes.append(
            {
                "latent": [h, w],
                "image": [res["image_width"], res["image_height"]],
                "recommendation": store.recommendation(record)["name"],
                "correction": bool(record.get("correction")),
            }
        )
    return {"checkpoint": key.describe(), "identity": key.identity, "sizes": sizes}
