"""What a patch node does to one sampled latent size: its plan, and the one
resolver that finds it.

Every MODEL node of the pack reduces, per latent size, to a `Plan`: a
NoiseShift map, a correction map (its strength and sigma range inside), and
guidance settings, each None where unused; all None is "plain", the model as
it is. A node states a `Policy` (a fixed method, the calibration's
recommendation, or guidance only) and the `PlanResolver` turns it into the
plan of each size at sampling time, once per size.

The resolver looks in the records connected to the node first, then the
store (the store's lookup policy: exact size, near size, or two sizes
bracketing the token count). Between two calibrated sizes the NoiseShift
curves and correction tables are blended. The recommendation of a record
(noisecal/held_out_check.py) gives NoiseShift's strength, a correction table
(calibrated alone or with NoiseShift on) with its strength, and the guidance
weight the check chose; a record without a check recommends NoiseShift. Two
sizes that recommend different combinations give plain (never worse than
plain) and a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .calibration_record import recommendation, record_key, record_latent_size
from .correction import CorrectionMap
from .correction_table import CorrectionTable
from .errors import CalibrationNotFound
from .guidance import GuidanceSettings
from .noiseshift import ShiftMap
from .size_lookup import choose_sizes, not_found

# message ids the resolver warns with (noisecal_host/user_messages.py lists them all)
PASS_THROUGH = "pass-through"
SIZES_DISAGREE = "sizes-disagree"

PARTS = ("shift", "correction", "guidance")


@dataclass(frozen=True)
class Plan:
    """What one latent size gets: each part None where unused."""

    shift: ShiftMap | None = None
    correction: CorrectionMap | None = None
    guidance: GuidanceSettings | None = None

    @property
    def plain(self) -> bool:
        return self.shift is None and self.correction is None and self.guidance is None


PLAIN = Plan()


@dataclass(frozen=True)
class Policy:
    """What a node asks for. kind: "noiseshift" or "correction" (that method at
    `strength`), "recommended" (the calibration's recommendation, its strengths
    and guidance weight scaled by `strength`), "guidance" (`guidance` settings
    everywhere, or with guidance None the calibrated weight times `strength`).
    what: the node's name in messages."""

    kind: str
    what: str
    strength: float = 1.0
    sigma_range: tuple[float, float] = (0.0, math.inf)
    guidance: GuidanceSettings | None = None
    resolver_what: str = ""  # the resolver's name in messages, when not `what`

    @property
    def off(self) -> bool:
        """Nothing to do on any size (strength or weight 0)."""
        if self.guidance is not None:
            return self.guidance.weight == 0
        return self.strength == 0

    @property
    def calibrated(self) -> bool:
        return self.guidance is None

    def parts(self, record: dict | None = None) -> set[str]:
        """The parts this policy's plan may use; with `record`, those of its plan
        for that record's size (a recommendation may use none)."""
        if self.kind == "noiseshift":
            return {"shift"}
        if self.kind == "correction":
            return {"correction"}
        if not self.calibrated:
            return {"guidance"}
        if record is None:
            return {"guidance"} if self.kind == "guidance" else set(PARTS)
        chosen = recommendation(record)
        used = {"guidance"} if self.strength * chosen["guidance"] > 0 else set()
        if self.kind == "recommended":
            used |= {"shift"} if self.strength * chosen["noiseshift"] > 0 else set()
            used |= {"correction"} if self.strength * chosen["correction"] > 0 else set()
        return used

    def plan(self, records, weights, max_level=None, warn=None) -> Plan:
        """The plan for one size from its record(s) and their blend weights."""
        if self.kind == "noiseshift":
            return Plan(shift=ShiftMap.from_records(records, weights, self.strength, max_level))
        if self.kind == "correction":
            tables = [CorrectionTable.from_json(_table(r)) for r in records]
            return Plan(
                correction=CorrectionMap(
                    tables, weights, self.strength, self.sigma_range, max_level
                )
            )
        return self._recommended(records, weights, max_level, warn or _silent)

    def _recommended(self, records, weights, max_level, warn) -> Plan:
        chosen = [recommendation(r) for r in records]
        names = sorted({c["base"] for c in chosen})
        if len(names) > 1:
            warn(
                SIZES_DISAGREE,
                f"{self.resolver_what or self.what}: the two calibrations around this size "
                f"recommend different methods ({', '.join(names)}): sampling plain here; "
                f"calibrate this size",
            )
            return PLAIN
        guidance = _guidance(records, weights, chosen, self.strength)
        if self.kind == "guidance":
            return Plan(guidance=guidance)
        pick = chosen[0]
        # the node's strength scales what was verified (1: as recommended, 0: off)
        shift_strength = self.strength * pick["noiseshift"]
        correction_strength = self.strength * pick["correction"]
        shift = correction = None
        if shift_strength > 0:
            shift = ShiftMap.from_records(records, weights, shift_strength, max_level)
        if correction_strength > 0:
            tables = [CorrectionTable.from_json(r[pick["table"]]) for r in records]
            correction = CorrectionMap(
                tables, weights, correction_strength, (0.0, math.inf), max_level
            )
        return Plan(shift, correction, guidance)


def _silent(message_id: str, text: str) -> None:
    return None


def _table(record: dict) -> dict:
    """The correction table the Noise Level Correction node uses alone."""
    if record.get("correction"):
        return record["correction"]
    h, w = record_latent_size(record)
    if record.get("correction_joint"):
        raise CalibrationNotFound(
            f"the calibration of {record_key(record).describe()} at latent {h}x{w} "
            f"has its correction table calibrated with NoiseShift on (the held-out "
            f"check's table): use 'Noise Calibration: Apply', or calibrate with "
            f"check = off for a table this node uses alone"
        )
    raise CalibrationNotFound(
        f"the calibration of {record_key(record).describe()} at latent {h}x{w} "
        f"has no correction table: run 'Noise Calibration: Calibrate' again with "
        f"'correction' set to euler (or heun, for second-order samplers)"
    )


def _guidance(records, weights, chosen, strength) -> GuidanceSettings | None:
    """The check's guidance, its weight blended like the strengths (None: none)."""
    weight = strength * sum(w * c["guidance"] for w, c in zip(weights, chosen, strict=True))
    if weight <= 0:
        return None
    section = next(
        r["check"]["guidance"] for r, c in zip(records, chosen, strict=True) if c["guidance"]
    )
    return GuidanceSettings(
        weight=weight,
        mode=section["mode"],
        offset=section["offset"],
        weight_schedule=section["weight_schedule"],
    )


class PlanResolver:
    """Latent (h, w) -> the policy's Plan, resolved once per size.

    on_missing is "error" (raise CalibrationNotFound naming the node) or
    "pass through" (plain, one warning per size through `warn(id, text)`)."""

    def __init__(
        self,
        policy: Policy,
        key=None,
        provided=(),
        calibration_store=None,
        *,
        on_missing="error",
        max_level=None,
        warn=None,
        parameterization=None,
    ):
        self.policy = policy
        self.what = policy.resolver_what or policy.what
        self.key = key
        self.parameterization = parameterization  # files of another one are refused
        self.provided = {record_latent_size(r): r for r in provided}
        self.store = calibration_store
        self.on_missing = on_missing
        self.max_level = max_level
        self.warn = warn or _silent
        self.plans: dict[tuple, Plan] = {}
        self.sources: dict[tuple, tuple[str, ...]] = {}
        # a policy that reads no calibration has one plan for every size
        self.fixed = None if policy.calibrated else Plan(guidance=policy.guidance)

    def plan_for(self, latent_hw) -> Plan:
        if self.fixed is not None:
            return self.fixed
        if latent_hw is None:
            return PLAIN
        latent_hw = tuple(int(v) for v in latent_hw)
        if latent_hw not in self.plans:
            self.plans[latent_hw] = self._resolve(latent_hw)
        return self.plans[latent_hw]

    def _resolve(self, latent_hw) -> Plan:
        try:
            chosen = choose_sizes(list(self.provided), latent_hw)
            if chosen is not None:
                records = [self.provided[size] for size, _ in chosen]
                weights = [w for _, w in chosen]
                sources = tuple("connected calibration" for _ in records)
            else:
                if self.store is None:
                    raise not_found(self.key, latent_hw, list(self.provided))
                match = self.store.find(self.key, latent_hw, self.parameterization)
                records, weights, sources = match.records, match.weights, match.paths
            plan = self.policy.plan(records, weights, self.max_level, self.warn)
        except CalibrationNotFound as exc:
            if self.on_missing == "error":  # raised inside the sampler: name our node
                raise CalibrationNotFound(f"{self.what} node: {exc}") from None
            self.warn(PASS_THROUGH, f"{self.what} passes through: {exc}")
            return PLAIN
        self.sources[latent_hw] = sources
        return plan


class PlanPart:
    """One part of a resolver's plan as the model's sampling object calls it:
    level (sigma [B], latent (h, w)) -> level. `policy_kind` and `what` tell the
    nodes placed after it whose patch it is."""

    part = ""

    def __init__(self, resolver: PlanResolver):
        self.resolver = resolver
        self.policy_kind = resolver.policy.kind
        self.what = resolver.policy.what

    def __call__(self, sigma: torch.Tensor, latent_hw) -> torch.Tensor:
        level_map = getattr(self.resolver.plan_for(latent_hw), self.part)
        return sigma if level_map is None else level_map(sigma)


class ShiftPart(PlanPart):
    """NoiseShift's part: a conditioning-level function."""

    part = "shift"


class CorrectionPart(PlanPart):
    """Noise Level Correction's part: an evaluation-level (state) function."""

    part = "correction"


class GuidancePart:
    """Guidance's part: latent (h, w) -> the plan's guidance settings (None: none
    at that size), for noisecal_host/guidance_patch.py."""

    def __init__(self, resolver: PlanResolver):
        self.resolver = resolver

    def __call__(self, latent_hw) -> GuidanceSettings | None:
        return self.resolver.plan_for(latent_hw).guidance
