"""What the Apply node is measured against: calibration with the held-out check (as
the Calibrate node runs it with check = held-out) and NoiseShift alone, every
candidate the check compares through the pack's nodes, the old independent pair,
the Apply node, the calibration's cost by phase, and the outcome of a cell."""

from __future__ import annotations

import copy

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
from bench.lib.calibration import Nodes, calibrate_as_node
from bench.lib.report import ratio
from noise_calibration.noisecal import held_out_check

# every method the benchmark measures: plain, NoiseShift, NLC with the table calibrated
# alone, NoiseShift + the joint table, each at 0.5 and 1 (the check compares the ones its
# record's curve and table allow: bench_tables supplies the other table)
CANDIDATES = (
    held_out_check.candidates(table="correction")
    + held_out_check.candidates(noiseshift=False, table="correction_joint")[1:]
)
NAMES = [c.name for c in CANDIDATES]
NOISESHIFT = ("noiseshift@0.5", "noiseshift@1")
NLC = ("nlc@0.5", "nlc@1")
SINGLE = NOISESHIFT + NLC
JOINT = "noiseshift+nlc@1"  # NoiseShift 1 + the table calibrated with NoiseShift on
INDEPENDENT = "independent pair"  # NoiseShift 1 + the table calibrated alone (the old pair)


def calibrate_joint(model, latents, sigmas, sampler: str, *, positive=None, max_batch=None):
    """calibrate() with the correction for `sampler` and the held-out check:
    (record, wall seconds)."""
    return calibrate_as_node(
        model,
        latents,
        sigmas,
        source="testbed",
        positive=positive,
        max_batch=max_batch,
        correction=sampler,
        check=True,
    )


def calibrate_noiseshift(model, latents, sigmas, *, positive=None, max_batch=None):
    """calibrate() as NoiseShift alone (no table, no check, every latent): (record, s)."""
    return calibrate_as_node(
        model, latents, sigmas, source="testbed", positive=positive, max_batch=max_batch
    )


def candidate_model(nodes: Nodes, model, record: dict, cand):
    """A check candidate through the pack's nodes: the table first, then NoiseShift
    (the order the check patches in)."""
    patched = model
    if cand.correction > 0:
        table_record = {**record, "correction": record[cand.table]}
        patched = nodes.nlc(patched, table_record, cand.correction)
    if cand.noiseshift > 0:
        patched = nodes.noiseshift(patched, record, cand.noiseshift)
    return patched


def independent_pair(nodes: Nodes, model, record: dict):
    """NoiseShift 1 and NLC 1 with the table calibrated without NoiseShift."""
    return nodes.noiseshift(nodes.nlc(model, record, 1.0), record, 1.0)


def apply_model(nodes: Nodes, model, record: dict):
    """The Apply node at strength 1 with the record connected."""
    (patched,) = nodes.node("Apply").apply(model, 1.0, "error", "", calibration=[record])
    return patched


def without_guidance(record: dict) -> dict:
    """The record with the check's guidance weight at 0 (Apply = the recommendation)."""
    changed = copy.deepcopy(record)
    if changed["check"].get("guidance"):
        changed["check"]["guidance"]["weight"] = 0.0
    return changed


def guidance_weight(record: dict) -> float:
    return float((record["check"].get("guidance") or {}).get("weight", 0.0))


def cost_of(record: dict, wall: float, ns_record: dict, ns_wall: float) -> dict:
    """Network evaluations of the calibration by phase, and NoiseShift alone's."""
    total = record["cost"]["network_evaluations"]
    phases = {k: v["network_evaluations"] for k, v in record["cost"]["phases"].items()}
    ns_nfe = ns_record["cost"]["network_evaluations"]
    return {
        "nfe": total,
        "nfe_search": phases.get("noiseshift", 0),
        "nfe_table": phases.get("correction", 0),
        "table": "joint" if record.get("correction_joint") else "alone",
        "nfe_check": phases.get("check", 0),
        "nfe_guidance": phases.get("guidance", 0),
        "wall_s": wall,
        "noiseshift_nfe": ns_nfe,
        "noiseshift_wall_s": ns_wall,
        "nfe_ratio": total / ns_nfe,
        "wall_ratio": wall / ns_wall,
        "calibrated_on": record["check"]["calibrated_on"],
        "held_out": record["check"]["held_out"],
    }


def outcome(fd: dict, floor: float, record: dict) -> dict:
    """From the true FD of every model of a cell (`fd`: plain, the candidates, the
    independent pair, apply, apply_base) and the FD floor: ratios to plain, the
    recommendation against the true winner, Apply against plain and the best single
    method, the pairs against the better single method."""
    rec = record["check"]["recommendation"]
    winner = min(NAMES, key=lambda k: fd[k])
    best_single = min(SINGLE, key=lambda k: fd[k])
    best_ns, best_nlc = min(fd[k] for k in NOISESHIFT), min(fd[k] for k in NLC)
    better_single_1 = min(fd["noiseshift@1"], fd["nlc@1"])
    return {
        "ratio": {k: ratio(v, fd["plain"]) for k, v in fd.items()},
        "recommendation": rec,
        "winner": winner,
        "agree": fd[rec] <= fd[winner] + floor,
        "best_single": best_single,
        "apply_plain": ratio(fd["apply"], fd["plain"]),
        "apply_best_single": ratio(fd["apply"], fd[best_single]),
        "apply_minus_recommended": fd["apply_base"] - fd[rec],
        "guidance": guidance_weight(record),
        "guidance_ratio": ratio(fd["apply"], fd["apply_base"]),
        "guidance_worse": fd["apply"] > fd["apply_base"] + floor,
        "both_help": best_ns < fd["plain"] - floor and best_nlc < fd["plain"] - floor,
        "apply_beats_singles": fd["apply"] < fd[best_single] - floor,
        "apply_beats_singles_raw": fd["apply"] < fd[best_single],
        "apply_worse_than_plain": fd["apply"] > fd["plain"] + floor,
        "joint_vs_better_single": ratio(fd[JOINT], better_single_1),
        "independent_vs_better_single": ratio(fd[INDEPENDENT], better_single_1),
        "joint_worse": fd[JOINT] > better_single_1 + floor,
        "independent_worse": fd[INDEPENDENT] > better_single_1 + floor,
    }


def z_of(cand: dict) -> str:
    """A check candidate's gain over plain in units of its bootstrap noise."""
    if cand["gain_noise"] > 0:
        return f"{cand['gain'] / cand['gain_noise']:.1f}"
    return "n/a" if cand["gain"] == 0 else "inf"
