"""What a patch node knows, when it runs, of its checkpoint's calibrations: the
records handed to it and the store's files, each file read once.

The same reading serves the checks at the node (is anything calibrated, do
the records hold shifts the model rounds away, which parts the plans can
use) and what the node shows: the resolutions calibrated for the connected
checkpoint and, per size, the calibration's recommendation, sent in the
node's `ui` output under UI_KEY so the web extension shows it without a
request of its own (the Calibrate node's plot goes the same way, under
PLOT_KEY).
"""

from __future__ import annotations

from ..noisecal import calibration_record
from ..noisecal.errors import CalibrationError
from ..noisecal.plan import Policy
from . import rounded_weights, store, user_messages
from .fingerprint import checkpoint_key

UI_KEY = "noise_calibration"
# the Calibrate node's plot in its `ui` output: [{"filename", "subfolder", "type",
# "width", "height"}] of a temp image, shown in the node's panel by the web extension
PLOT_KEY = "noise_calibration_plot"


def provided_records(
    key, calibration, inline_calibration: str, what: str, parameterization=None, notes=None
) -> list[dict]:
    """Records handed to a patch (connected calibration, then pasted JSON). One made
    for another model type is refused; one made for another checkpoint of the
    same type is used but logged (and added to `notes`, a list the node shows)."""
    records = list(calibration or [])
    if inline_calibration.strip():
        records += calibration_record.loads_many(inline_calibration, "inline_calibration")
    for i, record in enumerate(records):
        source = "connected calibration" if i < len(calibration or []) else "inline_calibration"
        calibration_record.check_model_type(record, key, parameterization, f"{what}: {source}")
        if calibration_record.record_key(record).identity != key.identity:
            user_messages.note(
                notes,
                user_messages.OTHER_CHECKPOINT,
                f"{what}: the {source} was made for {calibration_record.record_key(record).describe()}, "
                f"this model is {key.describe()}; using it anyway",
            )
    return records


class Calibrations:
    """The records handed to a node and the store's files for `key`, by latent
    (h, w): a record, or the CalibrationError that reading it raised."""

    def __init__(self, key, provided=(), calibration_store=None, parameterization=None):
        self.key = key
        self.provided = list(provided)
        self.parameterization = parameterization
        self.files: dict[tuple[int, int], dict | CalibrationError] = {}
        if calibration_store is not None:
            for size, path in calibration_store.files_for(key).items():
                try:
                    self.files[size] = store.load(path)
                except CalibrationError as exc:
                    self.files[size] = exc

    def sizes(self, tables_only: bool = False) -> list[dict]:
        """[{"latent", "image", "recommendation", "correction"}] of the store's files,
        smallest size first (an unreadable one: {"latent", "image", "error", "detail"});
        tables_only: only the sizes with a Noise Level Correction table."""
        found = []
        for (h, w), record in sorted(self.files.items(), key=lambda item: item[0][0] * item[0][1]):
            if isinstance(record, CalibrationError):
                unreadable = {"error": "unreadable", "detail": str(record)}
                found.append({"latent": [h, w], "image": [w * 8, h * 8], **unreadable})
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

    def status(self, tables_only: bool = False) -> dict:
        """{"checkpoint", "identity", "sizes"}: what the node shows (see `sizes`)."""
        return {
            "checkpoint": self.key.describe(),
            "identity": self.key.identity,
            "sizes": self.sizes(tables_only),
        }

    def lines(self) -> list[str]:
        """'latent h x w: recommendation' for every file (Apply's text on the node)."""
        lines = []
        for size in self.sizes():
            (h, w) = size["latent"]
            chosen = size.get("recommendation") or f"unreadable ({size['detail']})"
            lines.append(f"latent {h}x{w} (about {w * 8}x{h * 8} px): {chosen}")
        return lines

    def with_tables(self) -> list[tuple[int, int]]:
        """The file sizes a Noise Level Correction node can use alone."""
        return [s for s, r in self.files.items() if isinstance(r, dict) and r.get("correction")]

    def labelled(self) -> list[tuple[str, dict]]:
        """(label, record) of what the patch uses: the records handed to it, else
        the store's readable files (for family_support's rounding check)."""
        if self.provided:
            return [(f"calibration {i + 1}", r) for i, r in enumerate(self.provided)]
        return [
            (f"the calibration for latent {h}x{w}", r)
            for (h, w), r in sorted(self.files.items())
            if isinstance(r, dict)
        ]

    def parts(self, policy: Policy) -> set[str]:
        """The parts the policy's plans can use on any size these records and files
        resolve (every part it may use where a file cannot be read or used here)."""
        used: set[str] = set()
        for record in self.provided:
            used |= policy.parts(record)
        for record in self.files.values():
            if not self._usable(record):
                return policy.parts()
            used |= policy.parts(record)
        return used

    def _usable(self, record) -> bool:
        """Whether the store's lookup would use this file (as load_for and find do)."""
        if isinstance(record, CalibrationError):
            return False
        if calibration_record.record_key(record).identity != self.key.identity:
            return False
        try:
            calibration_record.check_model_type(
                record, self.key, self.parameterization, "calibration"
            )
        except CalibrationError:
            return False
        return True


def calibrated(model, label: str, calibration_store, tables_only: bool = False) -> dict:
    """{"checkpoint", "identity", "sizes"} for the model's checkpoint (Calibrations.sizes)."""
    key = rounded_weights.resolve(checkpoint_key(model, label), calibration_store)
    return Calibrations(key, (), calibration_store).status(tables_only)
