"""A calibration case of the cost benchmark: a model, its calibration set at N and
the FD of plain and native samples there; NoiseShift calibrated on any part of the
set (``run_search``) or into a store as the Calibrate node does (with or without a
warm start), and the gap a calibration closes through the pack's node."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.lib import testbed
from bench.lib.calibration import Nodes, make_record, private_store
from bench.lib.seeds import SEARCH_SEED
from noise_calibration.noisecal.testing.testbed import sample_field
from noise_calibration.noisecal_host import calibrate


class Case:
    """One calibration case: a model, its calibration set at N, FD plain/native."""

    def __init__(self, name, model, latents, sigmas, fd, native_fd, positive=None, other=None):
        self.name, self.model, self.latents, self.sigmas = name, model, latents, sigmas
        self.partner = None  # (name, model, latents) of the other resolution for reuse
        self.other = other  # data seed -> another calibration set of 64
        self.fd, self.positive = fd, positive
        self.fd_plain = fd(model)
        self.fd_native = native_fd

    def calibrate(self, mode: str, count: int, offset: int = 0, max_batch: int = 64, x0=None):
        """run_search on latents [offset, offset + count): (result, record, wall s)."""
        x0 = self.latents[offset : offset + count] if x0 is None else x0
        t0 = time.perf_counter()
        res, _ = calibrate.run_search(
            self.model,
            x0,
            self.sigmas,
            positive=self.positive,
            mode=mode,
            seed=SEARCH_SEED,
            max_batch=max_batch,
        )
        wall = time.perf_counter() - t0
        return res, make_record(self.model, x0, res, wall, method=f"noiseshift-{mode}"), wall

    def calibrate_stored(self, folder, mode: str, count: int, warm_start: bool, latents=None):
        """calibrate.calibrate (the Calibrate node's path) into the store in `folder`:
        the record; with warm_start the search starts from the store's nearest other
        resolution."""
        latents = self.latents[:count] if latents is None else latents[:count]
        h, w = latents.shape[-2:]
        record, _ = calibrate.calibrate(
            self.model,
            latents,
            self.sigmas,
            image_size=(8 * w, 8 * h),
            source="bench",
            positive=self.positive,
            mode=mode,
            seed=SEARCH_SEED,
            max_batch=64,
            calibration_store=private_store(Path(folder)),
            warm_start=warm_start,
        )
        return record

    def gap(self, nodes: Nodes, record) -> float | None:
        return testbed.gap(
            self.fd_plain, self.fd(nodes.noiseshift(self.model, record)), self.fd_native
        )


def field_set(sp, n: int, seed: int):
    """64 true field samples at N = n from data seed `seed`."""
    return sample_field(sp, n, 64, torch.Generator().manual_seed(seed))
