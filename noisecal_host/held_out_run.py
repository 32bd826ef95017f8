"""Run the held-out check (noisecal/held_out_check.py) on a ComfyUI MODEL.

Every candidate is the model patched by the pack's own NoiseShift and Noise
Level Correction patches with the new record connected, sampled with ComfyUI's
sampler over the calibration schedule from the same seeded noise: what the
user will get, not a model of it.
"""

from __future__ import annotations

import comfy.sample
import comfy.samplers
import torch

from ..noisecal import held_out_check
from . import level_patches
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
            patched, candidate.noiseshift, "error", None, [record], None
        )
    return patched


def _sample(model, noise, sigmas, sampler_name: str, positive, seed: int) -> torch.Tensor:
    sampler = comfy.samplers.sampler_object(sampler_name)
    empty = torch.zeros_like(noise)
    return comfy.sample.sample_custom(
        model, noise, 1.0, sampler, sigmas, positive, positive, empty, disable_pbar=True, seed=seed
    ).to(torch.float32)


def run_check(
    model,
    record: dict,
    held_out: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    sampler: str = "euler",
    positive=None,
    seed: int = 0,
    progress=None,
) -> dict:
    """The record's `check` section: every candidate's scores and the recommendation.
    held_out: latents (as a LATENT holds them) the calibration did not use."""
    with_tables = bool(record.get("correction")) and bool(record.get("correction_joint"))
    candidates = held_out_check.candidates(with_tables)
    positive = positive if positive is not None else zero_conditioning(model)
    noise = comfy.sample.prepare_noise(torch.zeros_like(held_out), seed)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    generated = {}
    for i, candidate in enumerate(candidates):
        patched = _patched(model, record, candidate)
        generated[candidate.name] = _sample(patched, noise, sigmas, sampler, positive, seed)
        if progress is not None:
            progress(i + 1, len(candidates))
    scores = held_out_check.score(generated, held_out.to(torch.float32), seed=seed)
    return {
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
        "recommendation": held_out_check.recommend(scores),
    }
