"""The held-out check: which combination of methods to recommend, judged on data the
calibration did not use.

Split: the last 3/8 of the calibration set (at least MIN_HELD_OUT latents,
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

Edge veto: the spectrum is not the whole of an image (docs/results-dead-leaves.md:
a table that brought the spectrum closer made edges 1.5-2x worse). So each
candidate is also scored by the distribution of neighbour differences, per
channel: the Wasserstein-1 distance between its quantiles and the held-back
latents', in units of the held-back differences' spread, averaged over channels
and both directions. A candidate whose edge score is worse than plain's by more
than EDGE_TOLERANCE of plain's and by more than Z_GAIN times the bootstrap
spread of that difference is never recommended.

Recommendation: the best-scoring candidate, only where its gain over plain
exceeds Z_GAIN times the bootstrap spread of that gain and the edge veto does
not apply; otherwise plain.

Guidance: then Noise Awareness Guidance (training-free, offset mode) at each of
GUIDANCE_WEIGHTS on top of the recommendation samples from the same noise, and
the same rule, with the recommendation in the place of plain, picks a weight
or keeps it at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spectra import per_sample_rapsd

MIN_HELD_OUT = 4
# 3/8 held back (6 of the node's 16): with 4 of 16 the check agreed with the true
# winner in 27 of 30 testbed cells, with 6 in 29 (docs/results-apply.md)
HELD_OUT_FRACTION = 0.375
BOOTSTRAP = 200
Z_GAIN = 2.0
QUANTILES = 64
# how much worse than plain's the edge score may get: on the Gaussian testbed a table
# that cut the true FD 5x made it 9% worse (docs/results-apply.md), on dead-leaves
# images tables made edges 1.5-2x worse (docs/results-dead-leaves.md)
EDGE_TOLERANCE = 0.25
# neighbour differences kept per sample and channel (a fixed random subset): bounds
# the bootstrap's memory at 1 MP latents
EDGE_POSITIONS = 256
PLAIN = "plain"
STRENGTHS = (0.5, 1.0)
# the guidance the check tries: offset 2 with the weight per step size helped most at
# the training resolution (docs/results-guidance.md); the check guards the rest
GUIDANCE_MODE = "offset"
GUIDANCE_OFFSET = 2.0
GUIDANCE_SCHEDULE = "per step size"
# 2 was the weight the check chose most often (4 of 7 measured cells; 1 twice, 4 once);
# each weight costs two rows a step on every held-back latent
GUIDANCE_WEIGHTS = (2.0,)


@dataclass(frozen=True)
class Candidate:
    """A combination the check compares: strengths of NoiseShift and of a table."""

    name: str
    noiseshift: float = 0.0
    correction: float = 0.0
    table: str | None = None  # "correction" (calibrated alone) or "correction_joint"


def curve_shifts(sigmas, sigma_hat) -> bool:
    """Whether a NoiseShift curve tells any level other than the true one (else
    NoiseShift is plain, and a table calibrated with it on is the table alone)."""
    return any(a != b for a, b in zip(sigmas, sigma_hat, strict=True))


def candidates(noiseshift: bool = True, table: str | None = None) -> list[Candidate]:
    """plain; NoiseShift where its curve shifts at all (else it is plain); with
    `table` that correction table: "correction" (calibrated alone) on its own,
    "correction_joint" (calibrated with NoiseShift on) with NoiseShift."""
    out = [Candidate(PLAIN)]
    if noiseshift:
        # beside the joint table NoiseShift runs at full strength only: at 0.5 it won no
        # measured cell, and each candidate costs a trajectory per held-back latent
        alone = STRENGTHS if table != "correction_joint" else (1.0,)
        out += [Candidate(f"noiseshift@{s:g}", noiseshift=s) for s in alone]
    if table == "correction":
        out += [Candidate(f"nlc@{s:g}", correction=s, table=table) for s in STRENGTHS]
    elif table == "correction_joint":
        out += [
            Candidate(f"noiseshift+nlc@{s:g}", noiseshift=s, correction=s, table=table)
            for s in STRENGTHS
        ]
    return out


def guidance_name(weight: float) -> str:
    return f"guidance@{weight:g}"


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


def _differences(latents: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical neighbour differences per sample and channel, at the
    positions `keep`: [n, C, len(keep)]."""
    x = latents.to(torch.float64)
    h = (x[..., :, 1:] - x[..., :, :-1]).flatten(-2)
    v = (x[..., 1:, :] - x[..., :-1, :]).flatten(-2)
    return torch.cat([h, v], dim=-1)[..., keep]


def _quantiles(diffs: torch.Tensor, resample: torch.Tensor | None = None) -> torch.Tensor:
    """Quantiles per channel of the differences pooled over samples: [n, C, K] ->
    [C, QUANTILES]; with `resample` ([B, n] sample indices) one row per bootstrap
    resample, [B, C, QUANTILES], from one sort (a resample only reweighs samples)."""
    n, c, k = diffs.shape
    values, order = diffs.transpose(0, 1).reshape(c, n * k).sort(dim=-1)
    owner = order // k  # the sample each sorted value came from
    levels = (torch.arange(QUANTILES, dtype=torch.float64) + 0.5) / QUANTILES
    if resample is None:
        weights = torch.ones(1, n, dtype=torch.float64)
    else:
        weights = torch.zeros(resample.shape[0], n, dtype=torch.float64)
        weights.scatter_add_(1, resample, torch.ones_like(resample, dtype=torch.float64))
    cdf = weights[:, owner].cumsum(dim=-1)  # [B, C, n * k]
    cdf = cdf / cdf[..., -1:]
    at = torch.searchsorted(cdf, levels.expand(*cdf.shape[:-1], QUANTILES).contiguous())
    out = values.expand_as(cdf).gather(-1, at.clamp(max=n * k - 1))
    return out if resample is not None else out[0]


def _edge_distance(gen_q: torch.Tensor, ref_q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """W1 between the difference distributions, in units of the reference's spread."""
    return ((gen_q - ref_q).abs().mean(dim=-1) / scale).mean(dim=-1)


def _edge_positions(shape, seed: int) -> torch.Tensor:
    h, w = shape[-2:]
    total = h * (w - 1) + (h - 1) * w
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randperm(total, generator=gen)[: min(total, EDGE_POSITIONS)]


def score(
    generated: dict[str, torch.Tensor],
    held_out: torch.Tensor,
    seed: int = 0,
    baseline: str = PLAIN,
) -> dict:
    """Per candidate: score, gain over the baseline (plain) and its bootstrap spread,
    edge score, edge loss against the baseline and its spread.

    generated: candidate name -> [n, C, h, w] samples from the same noise."""
    ref, counts = _spectra(held_out)
    powers = {name: _spectra(x)[0] for name, x in generated.items()}
    n, m = next(iter(powers.values())).shape[0], ref.shape[0]
    gen = torch.Generator().manual_seed(seed)
    gen_idx = torch.randint(0, n, (BOOTSTRAP, n), generator=gen)
    ref_idx = torch.randint(0, m, (BOOTSTRAP, m), generator=gen)
    ref_boot = ref[ref_idx]
    boot = {name: _distance(p[gen_idx], ref_boot, counts) for name, p in powers.items()}
    keep = _edge_positions(held_out.shape, seed)
    ref_diffs = _differences(held_out, keep)
    ref_q, ref_q_boot = _quantiles(ref_diffs), _quantiles(ref_diffs, ref_idx)
    scale = ref_diffs.transpose(0, 1).flatten(1).std(dim=-1).clamp_min(1e-12)
    edges, edges_boot = {}, {}
    for name, x in generated.items():
        diffs = _differences(x, keep)
        edges[name] = _edge_distance(_quantiles(diffs), ref_q, scale)
        edges_boot[name] = _edge_distance(_quantiles(diffs, gen_idx), ref_q_boot, scale)
    results = {}
    for name, p in powers.items():
        gain = boot[baseline] - boot[name]
        results[name] = {
            "score": float(_distance(p, ref, counts)),
            "gain": float(_distance(powers[baseline], ref, counts) - _distance(p, ref, counts)),
            "gain_noise": float(gain.std()),
            "edge_score": float(edges[name]),
            "edge_loss": float(edges[name] - edges[baseline]),
            "edge_loss_noise": float((edges_boot[name] - edges_boot[baseline]).std()),
        }
    return results


def vetoed(result: dict) -> bool:
    """Its edges are worse than the baseline's by more than EDGE_TOLERANCE of the
    baseline's edge score and beyond Z_GAIN times the noise of that difference."""
    loss = result.get("edge_loss")
    if loss is None:
        return False
    baseline_edges = result["edge_score"] - loss
    return (
        loss > Z_GAIN * result.get("edge_loss_noise", 0.0)
        and loss > EDGE_TOLERANCE * baseline_edges
        and loss > 0
    )


def recommend(results: dict, baseline: str = PLAIN) -> str:
    """The best candidate whose gain over the baseline (plain) clears Z_GAIN times its
    noise and whose edges are not worse than the baseline's (the veto), else the
    baseline."""
    cleared = [
        (r["score"], name)
        for name, r in results.items()
        if name != baseline
        and r["gain"] > Z_GAIN * r["gain_noise"]
        and r["gain"] > 0
        and not vetoed(r)
    ]
    return min(cleared)[1] if cleared else baseline
