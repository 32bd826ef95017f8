"""The identity of a checkpoint a calibration belongs to, and the file-name stem
derived from it (no user text can leave the calibration folder)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .errors import CalibrationError
from .weight_sample import WeightSample

LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+()-]{0,63}")


@dataclass(frozen=True)
class CheckpointKey:
    """Identifies a checkpoint: weights fingerprint, model class, latent format.

    A user label, when given, replaces the fingerprint as the identity, so
    one calibration can serve e.g. a merged or re-saved copy of a checkpoint.
    `weights` (not part of the identity) lets the same weights stored at another
    precision find the calibration (noisecal/weight_sample.py).
    """

    fingerprint: str
    model_class: str
    latent_format: str
    label: str | None = None
    weights: WeightSample | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.label is not None and not LABEL_PATTERN.fullmatch(self.label):
            raise CalibrationError(
                f"label {self.label!r} is not allowed: use 1-64 letters, digits, spaces or "
                f"- _ . + ( ), starting with a letter or digit (no path separators)"
            )

    @property
    def identity(self) -> str:
        if self.label:
            return f"label:{self.label}"
        return f"{self.model_class}:{self.latent_format}:{self.fingerprint}"

    def file_stem(self) -> str:
        """A file-name-safe stem: no user text can leave the folder."""
        if self.label:
            slug = re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")[:40] or "label"
            digest = hashlib.sha256(self.label.encode()).hexdigest()[:8]
            return f"label-{slug}-{digest}"
        fp = re.sub(r"[^0-9a-f]", "", self.fingerprint.lower())[:16] or "nofingerprint"
        return f"{self.class_stem()}-{fp}"

    def class_stem(self) -> str:
        """The model-class part of an unlabelled key's file stem."""
        return re.sub(r"[^A-Za-z0-9]+", "", self.model_class)[:24] or "model"

    def to_json(self) -> dict:
        data = {
            "fingerprint": self.fingerprint,
            "model_class": self.model_class,
            "latent_format": self.latent_format,
            "label": self.label,
        }
        if self.weights is not None:
            data["weights"] = self.weights.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> CheckpointKey:
        weights = data.get("weights")
        return cls(
            data["fingerprint"],
            data["model_class"],
            data["latent_format"],
            data.get("label"),
            WeightSample.from_json(weights) if weights else None,
        )

    def describe(self) -> str:
        if self.label:
            return f"'{self.label}' ({self.model_class})"
        return f"{self.model_class} checkpoint {self.fingerprint[:16]}"
