"""The JSON schema of a calibration record (docs/calibration-file.md): what a
file must hold to load. Rules the schema cannot state (equal lengths, a
descending sigma list, a valid recommendation) are in calibration_record.validate."""

from __future__ import annotations

from typing import Any

from .guidance import WEIGHT_SCHEDULES
from .levels import PARAMETERIZATIONS

SCHEMA_VERSION = 2  # written; 2 adds correction_joint and check (docs/calibration-file.md)
READ_VERSIONS = (1, 2)  # version 1 files still load: no check means "NoiseShift"

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
                # a few weight values (noisecal/weight_sample.py); files before it have none
                "weights": {
                    "type": ["object", "null"],
                    "required": ["layout", "dtypes", "values"],
                    "properties": {
                        "layout": {"type": "string", "minLength": 1},
                        "dtypes": {"type": "array", "items": {"type": "string"}},
                        "values": {"type": "array", "items": _number_list},
                    },
                },
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
