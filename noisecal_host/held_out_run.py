"""Run the held-out check (noisecal/held_out_check.py) on a ComfyUI MODEL.

Every candidate is the model patched by the pack's own NoiseShift and Noise
Level Correction patches with the new record connected, sampled with ComfyUI's
sampler over the calibration schedule from the same seeded noise: what the
user will get, not a model of it.
"""

from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.samplers
import torch

from ..noisecal import held_out_check
from ..noisecal.guidance import GuidanceSettings
from . import level_patches
from .calibration_phases import CHECK, GUIDANCE, Phases
from .model_info import zero_conditioning

METHOD = "held-out-spectral-fd-edges-v2"


def _patched(model, record: dict, candidate: held_out_check.Candidate):
    patched = model
    if candidate.correction > 0:
        table_record = {**record, "correction": record[candidate.table]}
        patched = level_patches.apply_correction(
            patched, candidate.correction, (0.0, float("inf")), "error", None, [table_record], None
        )
    if candidate.noiseshift > 0:
        patched = level_patches.apply_noiseshift(
            patched,
            candidate.noiseshift,
            "error",
            None,
            [record],
            None,
            joint=candidate.table == "correction_joint",
        )
    return patched


def guidance_settings(weight: float) -> GuidanceSettings:
    """The guidance the check tries (and Apply applies) at `weight`."""
    return GuidanceSettings(
        weight=weight,
        mode=held_out_check.GUIDANCE_MODE,
        offset=held_out_check.GUIDANCE_OFFSET,
        weight_schedule=held_out_check.GUIDANCE_SCHEDULE,
    )


def _sample(model, noise, sigmas, sampler_name: str, positive, seed: int, batch: int):
    """Deterministic samples from `noise`, `batch` latents a sampler call (Cancel is
    honoured between calls; each latent's trajectory does not depend on the split)."""
    sampler = comfy.samplers.sampler_object(sampler_name)
    out = []
    for chunk in noise.split(max(1, int(batch))):
        comfy.model_management.throw_exception_if_processing_interrupted()
        empty = torch.zeros_like(chunk)
        out.append(
            comfy.sample.sample_custom(
                model,
                chunk,
                1.0,
                sampler,
                sigmas,
                positive,
                positive,
                empty,
                disable_pbar=True,
                seed=seed,
            ).to(torch.float32)
        )
    return torch.cat(out)


def check_candidates(record: dict) -> list[held_out_check.Candidate]:
    """What the check compares for this record: NoiseShift where its curve shifts,
    the record's table (the joint one where there is one)."""
    shifts = held_out_check.curve_shifts(record["sigmas"], record["sigma_hat"])
    table = next((t for t in ("correction_joint", "correction") if record.get(t)), None)
    return held_out_check.candidates(noiseshift=shifts, table=table)


def run_check(
    model,
    record: dict,
    held_out: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    sampler: str = "euler",
    positive=None,
    seed: int = 0,
    phases: Phases | None = None,
    batch: int = 32,
) -> dict:
    """The record's `check` section: every candidate's scores and the recommendation,
    then the guidance weight on top of it.
    held_out: latents (as a LATENT holds them) the calibration did not use.
    phases: progress and cost of the check and guidance phases; batch: latents a
    sampler call takes (guidance adds a row to each)."""
    phases = phases if phases is not None else Phases({})
    candidates = check_candidates(record)
    positive = positive if positive is not None else zero_conditioning(model)
    noise = comfy.sample.prepare_noise(torch.zeros_like(held_out), seed)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    generated = {}
    with phases.phase(CHECK, model) as progress:
        for i, candidate in enumerate(candidates):
            patched = _patched(model, record, candidate)
            generated[candidate.name] = _sample(
                patched, noise, sigmas, sampler, positive, seed, batch
            )
            progress(i + 1, len(candidates))
    scores = held_out_check.score(generated, held_out.to(torch.float32), seed=seed)
    recommendation = held_out_check.recommend(scores)
    section = {
        "method": METHOD,
        "held_out": int(held_out.shape[0]),
        "sampler": sampler,
        "seed": int(seed),
        "candidates": {
            c.name: {
                "noiseshift": c.noiseshift,
                "correction": c.correction,
                "table": c.table,
                **scores[c.name],
            }
            for c in candidates
        },
        "recommendation": recommendation,
    }
    base = next(c for c in candidates if c.name == recommendation)
    with phases.phase(GUIDANCE, model) as progress:
        section["guidance"] = _guidance(
            _patched(model, record, base),
            recommendation,
            generated[recommendation],
            held_out,
            lambda m: _sample(m, noise, sigmas, sampler, positive, seed, batch),
            seed,
            progress,
        )
    return section


def _guidance(base_model, base: str, base_samples, held_out, sample, seed, progress) -> dict:
    """Guidance at each weight on top of the recommendation, scored against it."""
    generated = {base: base_samples}
    for i, weight in enumerate(held_out_check.GUIDANCE_WEIGHTS):
        guided = level_patches.apply_guidance(base_model, guidance_settings(weight))
        generated[held_out_check.guidance_name(weight)] = sample(guided)
        progress(i + 1, len(held_out_check.GUIDANCE_WEIGHTS))
    scores = held_out_check.score(generated, held_out.to(torch.float32), seed, baseline=base)
    chosen = held_out_check.recommend(scores, baseline=base)
    weights = {held_out_check.guidance_name(w): w for w in held_out_check.GUIDANCE_WEIGHTS}
    return {
        "mode": held_out_check.GUIDANCE_MODE,
        "offset": held_out_check.GUIDANCE_OFFSET,
        "weight_schedule": held_out_check.GUIDANCE_SCHEDULE,
        "base": base,
        "base_score": scores[base]["score"],
        "candidates": {name: {"weight": w, **scores[name]} for name, w in weights.items()},
        "weight": weights.get(chosen, 0.0),
    }
