"""Calibration store: one JSON file per (checkpoint, resolution), schema version 1.

Files are read from several folders (the pack's shipped `calibration_data/`
and the user's folder) and written to one (the user's). Writes are atomic:
a temp file in the target folder, fsync, then rename, so a crash or a failed
write never leaves a partial file or destroys the previous one.

Lookup policy for a resolution with no file of its own (see `find`):
1. a file for exactly this latent size (h x w) wins;
2. otherwise the two files of the same checkpoint whose token counts
   (latent h*w) bracket the requested one are returned, for interpolation in
   log token count; one of them alone if it is within 1% of the count;
3. otherwise (outside the calibrated range, or nothing for this checkpoint)
   `CalibrationNotFound`, naming the checkpoint, the resolution and what
   exists. We do not extrapolate: a schedule outside its range is a guess.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema

from . import __version__
from .atomic_write import (  # noqa: F401  (re-exported: callers name them store.*)
    TEMP_PREFIX,
    TEMP_SUFFIX,
    check_writable,
    remove_stale_temp_files,
    write_atomically,
)
from .correction_table import CorrectionTable
from .errors import ERROR_MODULE, CalibrationError, CalibrationNotFound, InvalidInput  # noqa: F401
from .guidance import WEIGHT_SCHEDULES
from .held_out_check import guidance_name
from .levels import PARAMETERIZATIONS, check_descending
from .sigma_hat_curve import SigmaHatCurve
from .spectra import SpectrumStats

SCHEMA_VERSION = 2  # written; 2 adds correction_joint and check (docs/calibration-file.md)
READ_VERSIONS = (1, 2)  # version 1 files still load: no check means "NoiseShift"
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+()-]{0,63}")


@dataclass(frozen=True)
class CheckpointKey:
    """Identifies a checkpoint: weights fingerprint, model class, latent format.

    A user label, when given, replaces the fingerprint as the identity, so
    one calibration can serve e.g. a merged or re-saved copy of a checkpoint.
    """

    fingerprint: str
    model_class: str
    latent_format: str
    label: str | None = None

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
        cls = re.sub(r"[^A-Za-z0-9]+", "", self.model_class)[:24] or "model"
        fp = re.sub(r"[^0-9a-f]", "", self.fingerprint.lower())[:16] or "nofingerprint"
        return f"{cls}-{fp}"

    def to_json(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "model_class": self.model_class,
            "latent_format": self.latent_format,
            "label": self.label,
        }

    @classmethod
    def from_json(cls, data: dict) -> CheckpointKey:
        return cls(
            data["fingerprint"], data["model_class"], data["latent_format"], data.get("label")
        )

    def describe(self) -> str:
        if self.label:
            return f"'{self.label}' ({self.model_class})"
        return f"{self.model_class} checkpoint {self.fingerprint[:16]}"


_number = {"type": "number"}
_number_list = {"type": "array", "items": _number}
_optional_object = {"type": ["object", "null"]}

_CORRECTION_TABLE = {
    "type": ["object", "null"],
    "required": ["method", "sigmas", "r"],
    "properties": {
        "method": {"type": "string"},
        "sampler": {"type": "string"},
        "sigmas": {**_number_list, "minItems": 1},
        "r": {**_number_list, "minItems": 1},
        "error_before": _number_list,
        "error_after": _number_list,
        "network_evaluations": {"type": "integer", "minimum": 0},
        "params": {"type": "object"},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "schema_version",
        "pack_version",
        "checkpoint",
        "resolution",
        "parameterization",
        "method",
        "sigmas",
        "sigma_hat",
        "calibration_set",
        "metrics",
        "cost",
        "created_at",
    ],
    "properties": {
        "schema_version": {"enum": list(READ_VERSIONS)},
        "pack_version": {"type": "string"},
        "checkpoint": {
            "type": "object",
            "required": ["fingerprint", "model_class", "latent_format"],
            "properties": {
                "fingerprint": {"type": "string", "minLength": 1},
                "model_class": {"type": "string", "minLength": 1},
                "latent_format": {"type": "string", "minLength": 1},
                "label": {"type": ["string", "null"]},
            },
        },
        "resolution": {
            "type": "object",
            "required": ["image_width", "image_height", "latent_width", "latent_height"],
            "properties": {
                k: {"type": "integer", "minimum": 1}
                for k in ("image_width", "image_height", "latent_width", "latent_height")
            },
        },
        "parameterization": {"enum": list(PARAMETERIZATIONS)},
        "method": {
            "type": "object",
            "required": ["name", "params"],
            "properties": {"name": {"type": "string"}, "params": {"type": "object"}},
        },
        "sigmas": {**_number_list, "minItems": 1},
        "sigma_hat": {**_number_list, "minItems": 1},
        # Noise Level Correction table (noisecal/correction.py), or null
        "correction": _CORRECTION_TABLE,
        # the same, calibrated with NoiseShift applied (version 2)
        "correction_joint": _CORRECTION_TABLE,
        # the held-out check (noisecal/held_out_check.py) and its recommendation (version 2)
        "check": {
            "type": ["object", "null"],
            "required": ["method", "held_out", "candidates", "recommendation"],
            "properties": {
                "method": {"type": "string"},
                "held_out": {"type": "integer", "minimum": 1},
                "calibrated_on": {"type": "integer", "minimum": 1},
                "sampler": {"type": "string"},
                "seed": {"type": "integer"},
                "network_evaluations": {"type": "integer", "minimum": 0},
                "candidates": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": {
                        "type": "object",
                        "required": ["noiseshift", "correction", "score", "gain", "gain_noise"],
                        "properties": {
                            "noiseshift": {"type": "number", "minimum": 0, "maximum": 2},
                            "correction": {"type": "number", "minimum": 0, "maximum": 2},
                            "table": {"enum": ["correction", "correction_joint", None]},
                            "score": _number,
                            "gain": _number,
                            "gain_noise": {"type": "number", "minimum": 0},
                            # the edge veto (files before it have none)
                            "edge_score": {"type": "number", "minimum": 0},
                            "edge_loss": _number,
                            "edge_loss_noise": {"type": "number", "minimum": 0},
                        },
                    },
                },
                "recommendation": {"type": "string"},
                # guidance on top of the recommendation, its weight chosen by the check
                "guidance": {
                    "type": ["object", "null"],
                    "required": ["mode", "offset", "weight_schedule", "base", "weight"],
                    "properties": {
                        "mode": {"enum": ["offset"]},
                        "offset": {"type": "number", "minimum": 0, "maximum": 10},
                        "weight_schedule": {"enum": list(WEIGHT_SCHEDULES)},
                        "base": {"type": "string"},
                        "base_score": _number,
                        "weight": {"type": "number", "minimum": 0, "maximum": 100},
                        "candidates": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["weight", "score", "gain", "gain_noise"],
                                "properties": {
                                    "weight": {"type": "number", "minimum": 0, "maximum": 100},
                                    "score": _number,
                                    "gain": _number,
                                    "gain_noise": {"type": "number", "minimum": 0},
                                },
                            },
                        },
                    },
                },
            },
        },
        "spectrum": _optional_object,
        "calibration_set": {
            "type": "object",
            "required": ["count", "source", "seed"],
            "properties": {
                "count": {"type": "integer", "minimum": 1},
                "source": {"type": "string"},
                "seed": {"type": "integer"},
                # self-generated data: the settings it was generated with
                "generation": {"type": "object"},
            },
        },
        "metrics": {
            "type": "object",
            "properties": {"error_before": _number_list, "error_after": _number_list},
        },
        "cost": {
            "type": "object",
            "required": ["network_evaluations", "wall_time_s"],
            "properties": {
                "network_evaluations": {"type": "integer", "minimum": 0},
                "wall_time_s": {"type": "number", "minimum": 0},
                "phases": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["network_evaluations", "seconds"],
                        "properties": {
                            "network_evaluations": {"type": "integer", "minimum": 0},
                            "seconds": {"type": "number", "minimum": 0},
                        },
                    },
                },
            },
        },
        "created_at": {"type": "string"},
    },
}


def check_recommendation(record: dict) -> None:
    """The check's recommendation is one of its candidates, and the tables its
    candidates use are in the file."""
    check = record["check"]
    if check["recommendation"] not in check["candidates"]:
        raise ValueError(f"recommendation {check['recommendation']!r} is not a candidate")
    for name, candidate in check["candidates"].items():
        table = candidate.get("table")
        if candidate["correction"] > 0 and (table is None or not record.get(table)):
            raise ValueError(f"candidate {name!r} needs the file's {table} table")
    guidance = check.get("guidance")
    if guidance:
        if guidance["base"] != check["recommendation"]:
            raise ValueError("the guidance was chosen on top of another recommendation")
        tried = {c["weight"] for c in guidance.get("candidates", {}).values()}
        if guidance["weight"] != 0 and guidance["weight"] not in tried:
            raise ValueError(f"guidance weight {guidance['weight']} is not one the check tried")


def recommendation(record: dict) -> dict:
    """The recommended strengths: {"name", "base", "noiseshift", "correction", "table",
    "guidance"} (base: the check's recommendation; guidance: the weight of the
    check's guidance on top of it, 0 = none; name: both). A file
    without a check (version 1, or calibrated without one) recommends NoiseShift."""
    check = record.get("check")
    if not check:
        return {
            "name": "noiseshift@1",
            "base": "noiseshift@1",
            "noiseshift": 1.0,
            "correction": 0.0,
            "table": None,
            "guidance": 0.0,
        }
    chosen = check["candidates"][check["recommendation"]]
    guidance = float((check.get("guidance") or {}).get("weight", 0.0))
    return {
        "name": check["recommendation"] + (f"+{guidance_name(guidance)}" if guidance else ""),
        "base": check["recommendation"],
        "noiseshift": float(chosen["noiseshift"]),
        "correction": float(chosen["correction"]),
        "table": chosen.get("table"),
        "guidance": guidance,
    }


# built once: jsonschema.validate() re-checks the schema itself on every call
# (about 20 ms), which every load and save would pay
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def validate(record: dict, source: str = "calibration") -> dict:
    """Check a record against the schema and its own consistency."""
    if not isinstance(record, dict):
        raise CalibrationError(f"{source}: expected a JSON object, got {type(record).__name__}")
    version = record.get("schema_version")
    if isinstance(version, bool) or version not in READ_VERSIONS:
        raise CalibrationError(
            f"{source}: schema_version {version!r} is not supported "
            f"(this pack reads versions {', '.join(map(str, READ_VERSIONS))}); recalibrate"
        )
    try:
        error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(record))
        if error is not None:
            raise error
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise CalibrationError(f"{source}: invalid at {where}: {exc.message}") from None
    except RecursionError:
        raise CalibrationError(f"{source}: nested too deeply to be a calibration") from None
    sigmas, sigma_hat = record["sigmas"], record["sigma_hat"]
    if len(sigmas) != len(sigma_hat):
        raise CalibrationError(
            f"{source}: sigmas has {len(sigmas)} entries but sigma_hat has {len(sigma_hat)}"
        )
    if not all(math.isfinite(v) for v in sigmas + sigma_hat):
        raise CalibrationError(f"{source}: sigmas and sigma_hat must be finite numbers")
    # Every section is built here exactly as the sampler builds it (one definition
    # of each rule), so a file that loads cannot fail later inside a sampler.
    sections = [
        ("sigmas", lambda: check_descending(sigmas)),
        ("sigma_hat", lambda: SigmaHatCurve(sigmas, sigma_hat)),
    ]
    for name in ("correction", "correction_joint"):
        if record.get(name):
            table = record[name]
            sections.append((name, lambda t=table: CorrectionTable(t["sigmas"], t["r"])))
    if record.get("check"):
        sections.append(("check", lambda: check_recommendation(record)))
    if record.get("spectrum"):
        sections.append(("spectrum", lambda: SpectrumStats.from_json(record["spectrum"])))
    for section, build in sections:
        try:
            build()
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise CalibrationError(f"{source}: {section}: {exc}") from None
    return record


def make_record(
    *,
    key: CheckpointKey,
    image_size: tuple[int, int],
    latent_size: tuple[int, int],
    parameterization: str,
    method: str,
    method_params: dict,
    sigmas,
    sigma_hat,
    calibration_set: dict,
    error_before=None,
    error_after=None,
    network_evaluations: int = 0,
    wall_time_s: float = 0.0,
    correction: dict | None = None,
    spectrum: dict | None = None,
    correction_joint: dict | None = None,
    check: dict | None = None,
) -> dict:
    """Build a record of the current schema (image_size is (W, H), latent_size is (h, w))."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "pack_version": __version__,
        "checkpoint": key.to_json(),
        "resolution": {
            "image_width": int(image_size[0]),
            "image_height": int(image_size[1]),
            "latent_height": int(latent_size[0]),
            "latent_width": int(latent_size[1]),
        },
        "parameterization": parameterization,
        "method": {"name": method, "params": dict(method_params)},
        "sigmas": [float(v) for v in sigmas],
        "sigma_hat": [float(v) for v in sigma_hat],
        "correction": correction,
        "correction_joint": correction_joint,
        "check": check,
        "spectrum": spectrum,
        "calibration_set": dict(calibration_set),
        "metrics": {
            "error_before": [float(v) for v in (error_before or [])],
            "error_after": [float(v) for v in (error_after or [])],
        },
        "cost": {
            "network_evaluations": int(network_evaluations),
            "wall_time_s": float(wall_time_s),
        },
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return validate(record, "new calibration")


def file_name(key: CheckpointKey, latent_size: tuple[int, int]) -> str:
    h, w = (int(v) for v in latent_size)
    return f"{key.file_stem()}__{h}x{w}.json"


# Calibration files are tens of kilobytes; a larger one is not ours, and parsing
# it would stall the sampler that reads it.
MAX_FILE_BYTES = 4 * 1024 * 1024
# JSON integers longer than this are refused before Python converts them (its
# int conversion refuses 4,300 digits with a bare ValueError); seeds fit in 20
MAX_INTEGER_DIGITS = 40


def load(path: str | os.PathLike) -> dict:
    """Read and validate one calibration file; errors name the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CalibrationError(
                f"{path}: {size} bytes is larger than a calibration file can be "
                f"({MAX_FILE_BYTES} bytes at most)"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise CalibrationError(f"{path}: file not found") from None
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark some editors add is fine
    except UnicodeDecodeError as exc:
        raise CalibrationError(
            f"{path}: not UTF-8 text (byte {exc.start}); a calibration file is JSON "
            f"written by the Calibrate node"
        ) from None
    return loads(text, str(path))


def load_for(path: str | os.PathLike, key: CheckpointKey) -> dict:
    """load(path), refused when the file belongs to another checkpoint than `key`."""
    record = load(path)
    if record_key(record).identity != key.identity:
        raise CalibrationError(
            f"{path}: belongs to {record_key(record).describe()}, "
            f"not {key.describe()} (renamed file?)"
        )
    return record


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a calibration can hold")


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits is too long")
    return int(digits)


def _parse_json(text: str, source: str, hint: str):
    if len(text) > MAX_FILE_BYTES:
        raise CalibrationError(
            f"{source}: {len(text)} characters is larger than a calibration can be "
            f"({MAX_FILE_BYTES} at most)"
        )
    try:
        return json.loads(
            text.removeprefix("\ufeff"),
            parse_int=_parse_int,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as exc:
        raise CalibrationError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); {hint}"
        ) from None
    except ValueError as exc:
        raise CalibrationError(f"{source}: {exc}") from None
    except RecursionError:
        raise CalibrationError(f"{source}: JSON nested too deeply to be a calibration") from None


def loads(text: str, source: str = "inline calibration") -> dict:
    return validate(_parse_json(text, source, "the file may be truncated"), source)


def loads_many(text: str, source: str = "inline calibration") -> list[dict]:
    """One record or a JSON list of records (a workflow carrying several sizes)."""
    data = _parse_json(text, source, "was it pasted whole?")
    items = data if isinstance(data, list) else [data]
    return [
        validate(item, f"{source} [{i}]" if len(items) > 1 else source)
        for i, item in enumerate(items)
    ]


def check_model_type(record: dict, key: CheckpointKey, parameterization, source: str) -> None:
    """Refuse a record made for another kind of model: another model class, latent
    format or parameterization (a label or a pasted record does not make an SD3
    schedule fit Flux). ``parameterization`` None: not compared."""
    made = record_key(record)
    found = (made.model_class, made.latent_format, record["parameterization"])
    wanted = (key.model_class, key.latent_format, parameterization or record["parameterization"])
    differ = [
        f"{what} {a} (this model: {b})"
        for what, a, b in zip(
            ("model class", "latent format", "parameterization"), found, wanted, strict=True
        )
        if a != b
    ]
    if differ:
        raise CalibrationError(
            f"{source}: made for another kind of model: {', '.join(differ)}; a calibration "
            f"only fits the model type it was made on: calibrate this model"
        )


def record_key(record: dict) -> CheckpointKey:
    return CheckpointKey.from_json(record["checkpoint"])


def record_latent_size(record: dict) -> tuple[int, int]:
    res = record["resolution"]
    return res["latent_height"], res["latent_width"]


def save(record: dict, folder: str | os.PathLike) -> Path:
    """Atomically write a validated record into `folder`; returns its path."""
    validate(record, "calibration to save")
    target = Path(folder) / file_name(record_key(record), record_latent_size(record))

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1, allow_nan=False)

    write_atomically(target, write)
    return target


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


@dataclass(frozen=True)
class Match:
    """What `find` returns: one record, or two that bracket the token count."""

    records: tuple[dict, ...]
    weights: tuple[float, ...]  # interpolation weights in log token count, sum 1
    paths: tuple[str, ...]


class CalibrationStore:
    """Read from several folders (first wins on equal names), write to one."""

    def __init__(self, read_dirs, write_dir=None):
        self.read_dirs = [Path(d) for d in read_dirs]
        self.write_dir = Path(write_dir) if write_dir is not None else None

    def save(self, record: dict) -> Path:
        if self.write_dir is None:
            raise CalibrationError("this store has no folder to write to")
        return save(record, self.write_dir)

    def check_writable(self, key: CheckpointKey, latent_size) -> Path:
        """Refuse, before any network call, a calibration this store could not write."""
        if self.write_dir is None:
            raise CalibrationError("this store has no folder to write to")
        target = self.write_dir / file_name(key, latent_size)
        check_writable(target)
        return target

    def fingerprint_files(self) -> str:
        """Names, sizes and times of every calibration file: changes when any does."""
        parts = []
        for folder in self.read_dirs:
            if folder.is_dir():
                for path in sorted(folder.glob("*.json")):
                    if path.name.startswith(TEMP_PREFIX):
                        continue  # a write in progress, or one a killed writer left
                    stat = path.stat()
                    parts.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def files_for(self, key: CheckpointKey) -> dict[tuple[int, int], Path]:
        """Calibration files of one checkpoint, by latent (h, w)."""
        prefix = key.file_stem() + "__"
        found: dict[tuple[int, int], Path] = {}
        for folder in self.read_dirs:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(prefix + "*.json")):
                m = re.fullmatch(re.escape(prefix) + r"(\d+)x(\d+)\.json", path.name)
                if m:
                    found.setdefault((int(m.group(1)), int(m.group(2))), path)
        return found

    def find(
        self, key: CheckpointKey, latent_size: tuple[int, int], parameterization=None
    ) -> Match:
        """Apply the lookup policy in the module docstring; a file made for another
        model type (class, latent format, ``parameterization``) is refused."""
        files = self.files_for(key)
        chosen = choose_sizes(list(files), latent_size)
        if chosen is None:
            raise not_found(key, latent_size, list(files))
        paths = [files[size] for size, _ in chosen]
        return self._match(paths, [w for _, w in chosen], key, parameterization)

    def _match(self, paths, weights, key: CheckpointKey, parameterization=None) -> Match:
        records = []
        for path in paths:
            record = load_for(path, key)
            check_model_type(record, key, parameterization, str(path))
            records.append(record)
        return Match(tuple(records), tuple(weights), tuple(str(p) for p in paths))
