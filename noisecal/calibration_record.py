"""A calibration record: building one of the current schema, validating one
(the schema and its own consistency), reading one from JSON text with limits a
hostile file cannot pass, and what it recommends.

A record is a plain dict as the file holds it (docs/calibration-file.md); the
files themselves are read and written by noisecal_host.store.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import jsonschema

from . import __version__
from .checkpoint_key import CheckpointKey
from .correction_table import CorrectionTable
from .errors import CalibrationError
from .held_out_check import guidance_name
from .levels import check_descending
from .record_schema import READ_VERSIONS, SCHEMA, SCHEMA_VERSION
from .sigma_hat_curve import SigmaHatCurve
from .spectra import SpectrumStats
from .weight_sample import WeightSample

# Calibration files are tens of kilobytes; a larger one is not ours, and parsing
# it would stall the sampler that reads it.
MAX_FILE_BYTES = 4 * 1024 * 1024
# JSON integers longer than this are refused before Python converts them (its
# int conversion refuses 4,300 digits with a bare ValueError); seeds fit in 20
MAX_INTEGER_DIGITS = 40


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
    if record["checkpoint"].get("weights"):
        weights = record["checkpoint"]["weights"]
        sections.append(("checkpoint weights", lambda: WeightSample.from_json(weights)))
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
