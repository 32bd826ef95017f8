"""Measurements in a process of their own: the peak memory of one calibration, and
the rows per phase of one Calibrate node run (``bench/node_cost_probe.py``) on this
tree or on an earlier commit's (a git worktree sharing this tree's host snapshot)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.lib import reference, testbed
from bench.lib.run import ROOT
from bench.lib.testbed import CAL_STEPS, M
from noise_calibration.noisecal_host import calibrate


def memory_probe(max_batch: int, search: tuple[str, int]) -> None:
    """In a fresh process: peak RSS of one calibration of the reference network at N = M
    (`search`: mode, latents), printed as JSON."""
    torch.set_num_threads(1)
    ref = reference.load()
    latents = ref.model.model.process_latent_out(testbed.cal_latents(ref.ref.spectrum, M, 64))
    sigmas = testbed.sigmas(ref.model, CAL_STEPS)
    calibrate.run_search(
        ref.model, latents[:1], sigmas[-3:], positive=ref.positive, mode="fast", max_batch=1
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    mode, k = search
    res, _ = calibrate.run_search(
        ref.model, latents[:k], sigmas, positive=ref.positive, mode=mode, max_batch=max_batch
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"max_batch": max_batch, "before_kib": before, "peak_kib": peak, "nfe": res.nfe}
    print(json.dumps({**out, "wall_s": time.perf_counter() - t0}))


# SD3.5 medium: MMDiT-X, hidden 1536 (24 blocks, 24 heads), 2.5B parameters in bf16.
SD35M = {"hidden": 1536, "params": 2.5e9, "bytes": 2, "text_tokens": 154}
LIVE_WIDTHS = 9  # residual + q, k, v + attention out + 4x MLP hidden, per token, one block


def activation_estimate(side_px: int, rows: int) -> float:
    """GB for `rows` latents at `side_px` square: weights + rows x tokens x hidden x 9 x 2 B
    (one block's live activations; attention by SDPA, no tokens x tokens matrix)."""
    tokens = (side_px // 16) ** 2 + SD35M["text_tokens"]
    per_row = tokens * SD35M["hidden"] * LIVE_WIDTHS * SD35M["bytes"]
    return (SD35M["params"] * SD35M["bytes"] + rows * per_row) / 1e9


def probe(root: Path, kind: str, correction: str) -> dict:
    """bench/node_cost_probe.py on the tree at `root`: rows per phase of one node run."""
    script = ROOT / "bench" / "node_cost_probe.py"
    out = subprocess.run(
        [sys.executable, str(script), str(root), kind, correction],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def before_tree(folder: Path, before: str) -> Path | None:
    """A worktree of commit `before` sharing this tree's host snapshot, or None without git."""
    root = ROOT
    tree = folder / "before"
    try:
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "-q", "--detach", str(tree), before],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"(no 'before' column: cannot check out {before}: {exc})")
        return None
    (tree / ".cache").symlink_to(root / ".cache", target_is_directory=True)
    return tree


def remove_tree(tree: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
        check=False,
        capture_output=True,
    )
