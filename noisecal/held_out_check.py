"""The held-out check: which combination of methods to recommend, judged on data the
calibration did not use.

Split: the last quarter of the calibration set (at least MIN_HELD_OUT latents,
when the set has at least twice that many) is held back; the calibration uses
the rest. Every candidate (plain, NoiseShift, NLC alone, NoiseShift + the NLC
table calibrated with NoiseShift on, each at strengths 0.5 and 1) samples
whole trajectories from the same noise, as many as are held back.

Score: the distance of the generated batch's per-channel power spectrum to the
held-back data's, as the Frechet distance between two zero-mean Gaussians
with those spectra: the sum over Fourier coefficients of (sqrt(P_generated) -
sqrt(P_held_out))^2, per channel, radially averaged (DC included: a wrong mean
is an error too), divided by the number of coefficients. It weighs each
frequency by its power and its number of coefficients, as an image-level
distance does; a mean squared log ratio per bin weighed the few, faint
high-frequency bins like the strong ones and disagreed with the true FD
(docs/results-apply.md). It needs no ground truth beyond the calibration data. Its sampling noise is estimated by a
paired bootstrap: resampling the generated samples (the same indices for
every candidate: they share their noise) and the held-back ones.

Recommendation: the best-scoring candidate, only where its gain over plain
exceeds Z_GAIN times the bootstrap spread of that gain; otherwise plain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spectra import per_sample_rapsd

MIN_HELD_OUT = 4
HELD_OUT_FRACTION = 0.25
BOOTSTRAP = 200
Z_GAIN = 2.0
PLAIN = "plain"
STRENGTHS = (0.5, 1.0)


@dataclass(frozen=True)
class Candidate:
    """A combination the check compares: strengths of NoiseShift and of a table."""

    name: str
    noiseshift: float = 0.0
    correction: float = 0.0
    table: str | None = None  # "correction" (calibrated alone) or "correction_joint"


def candidates(with_tables: bool) -> list[Candidate]:
    """plain; NoiseShift; with tables also NLC alone and NoiseShift + joint NLC."""
    out = [Candidate(PLAIN)]
    for s in STRENGTHS:
        out.append(Candidate(f"noiseshift@{s:g}", noiseshift=s))
    if with_tables:
        for s in STRENGTHS:
            out.append(Candidate(f"nlc@{s:g}", correction=s, table="correction"))
        for s in STRENGTHS:
            out.append(
                Candidate(
                    f"noiseshift+nlc@{s:g}", noiseshift=s, correction=s, table="correction_joint"
                )
            )
    return out


def split(count: int) -> tuple[int, int]:
    """(latents calibrated on, latents held back) for a set of `count`; (count, 0)
    when the set is too small to spare any."""
    held = max(MIN_HELD_OUT, int(count * HELD_OUT_FRACTION))
    if count < 2 * MIN_HELD_OUT:
        return count, 0
    return count - held, held


def _spectra(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    power, _, counts = per_sample_rapsd(latents)
    return power, counts  # [n, C, F], [F]


def _distance(gen_power: torch.Tensor, ref_power: torch.Tensor, counts) -> torch.Tensor:
    """Frechet distance of the batch-mean spectra per coefficient; batched over a
    leading dim."""
    gen = gen_power.mean(dim=-3).clamp_min(0).sqrt()
    ref = ref_power.mean(dim=-3).clamp_min(0).sqrt()
    weights = counts.to(gen.dtype) / counts.sum()
    return ((gen - ref).square() * weights).sum(dim=-1).mean(dim=-1)


def score(generated: dict[str, torch.Tensor], held_out: torch.Tensor, seed: int = 0) -> dict:
    """Per candidate: score, gain over plain and its bootstrap spread.

    generated: candidate name -> [n, C, h, w] samples from the same noise."""
    ref, counts = _spectra(held_out)
    powers = {name: _spectra(x)[0] for name, x in generated.items()}
    n, m = next(iter(powers.values())).shape[0], ref.shape[0]
    gen = torch.Generator().manual_seed(seed)
    gen_idx = torch.randint(0, n, (BOOTSTRAP, n), generator=gen)
    ref_idx = torch.randint(0, m, (BOOTSTRAP, m), generator=gen)
    ref_boot = ref[ref_idx]
    boot = {name: _distance(p[gen_idx], ref_boot, counts) for name, p in powers.items()}
    results = {}
    for name, p in powers.items():
        gain = boot[PLAIN] - boot[name]
        results[name] = {
            "score": float(_distance(p, ref, counts)),
            "gain": float(_distance(powers[PLAIN], ref, counts) - _distance(p, ref, counts)),
            "gain_noise": float(gain.std()),
        }
    return results


def recommend(results: dict) -> str:
    """The best candidate whose gain over plain clears Z_GAIN times its noise, else plain."""
    cleared = [
        (r["score"], name)
        for name, r in results.items()
        if name != PLAIN and r["gain"] > Z_GAIN * r["gain_noise"] and r["gain"] > 0
    ]
    return min(cleared)[1] if cleared else PLAIN
