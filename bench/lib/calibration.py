"""Calibration as the Calibrate node runs it (``run_search``, or the whole
``calibrate`` with the node's default search: ``calibrate_as_node``), its
calibration record, a private calibration store and the patch nodes that use them."""

from __future__ import annotations

import copy
import time

from bench.lib.host import node_class
from bench.lib.seeds import CAL_DATA_SEED, SEARCH_SEED
from noise_calibration.noisecal import calibration_record
from noise_calibration.noisecal_host import calibrate
from noise_calibration.noisecal_host import store as store_mod
from noise_calibration.noisecal_host.fingerprint import checkpoint_key
from noise_calibration.noisecal_host.model_info import parameterization_of

# rows x pixels per forward in the testbed search (memory-bound FFTs)
CAL_ROWS_PIXELS = 64 * 32 * 32


def private_store(folder) -> store_mod.CalibrationStore:
    """A store that reads and writes only `folder` (keeps the user's files out)."""
    return store_mod.CalibrationStore([folder], folder)


def default_max_batch(latents) -> int:
    return max(1, CAL_ROWS_PIXELS // (latents.shape[-1] * latents.shape[-2]))


def node_search_mode() -> str:
    """The Calibrate node's default search_mode."""
    return node_class("Calibrate").INPUT_TYPES()["required"]["search_mode"][1]["default"]


def calibrate_as_node(
    model, latents, sigmas, *, source: str, positive=None, max_batch=None, **options
):
    """``noisecal_host.calibrate.calibrate`` with the Calibrate node's default search,
    the search seed and batches sized to the latents; options: correction, check.
    Returns (record, wall seconds)."""
    n = latents.shape[-1]
    t0 = time.perf_counter()
    record, _ = calibrate.calibrate(
        model,
        latents,
        sigmas,
        image_size=(8 * n, 8 * n),
        source=source,
        positive=positive,
        mode=node_search_mode(),
        seed=SEARCH_SEED,
        max_batch=max_batch or default_max_batch(latents),
        **options,
    )
    return record, time.perf_counter() - t0


def make_record(model, latents, res, wall, **fields) -> dict:
    """The calibration record of a NoiseShift search result `res` on `latents`."""
    h, w = latents.shape[-2:]
    fields.setdefault("network_evaluations", res.nfe)
    return calibration_record.make_record(
        key=checkpoint_key(model),
        image_size=(8 * w, 8 * h),
        latent_size=(h, w),
        parameterization=parameterization_of(model),
        method=fields.pop("method"),
        method_params=res.params,
        sigmas=res.sigmas,
        sigma_hat=res.sigma_hat,
        calibration_set={"count": int(latents.shape[0]), "source": "bench", "seed": CAL_DATA_SEED},
        error_before=res.error_before,
        error_after=res.error_after,
        wall_time_s=wall,
        **fields,
    )


def synthetic_record(model, size: int, sigmas, sigma_hat, source: str, **fields) -> dict:
    """A flow record for `size` x `size` latents made without a search (for timings):
    the curve given, and `fields` (a correction table)."""
    return calibration_record.make_record(
        key=checkpoint_key(model),
        image_size=(8 * size, 8 * size),
        latent_size=(size, size),
        parameterization="flow",
        method="noiseshift-fast",
        method_params={},
        sigmas=sigmas,
        sigma_hat=sigma_hat,
        calibration_set={"count": 1, "source": source, "seed": 0},
        **fields,
    )


def noiseshift_calibration(model, latents, sigmas, mode: str, max_batch=None, positive=None):
    """run_search (NoiseShift only) plus its record: (result, record, wall seconds)."""
    if max_batch is None:
        max_batch = default_max_batch(latents)
    t0 = time.perf_counter()
    res, _ = calibrate.run_search(
        model, latents, sigmas, positive=positive, mode=mode, seed=SEARCH_SEED, max_batch=max_batch
    )
    wall = time.perf_counter() - t0
    return res, make_record(model, latents, res, wall, method=f"noiseshift-{mode}"), wall


def correction_calibration(model, latents, sigmas, sampler: str, positive=None, max_batch=None):
    """run_search fast with the correction table for `sampler`, and one record
    holding both: (NoiseShift result, correction result, record, wall seconds)."""
    t0 = time.perf_counter()
    res, corr = calibrate.run_search(
        model,
        latents,
        sigmas,
        positive=positive,
        mode="fast",
        seed=SEARCH_SEED,
        max_batch=max_batch or default_max_batch(latents),
        correction=sampler,
    )
    wall = time.perf_counter() - t0
    record = make_record(
        model,
        latents,
        res,
        wall,
        method="noiseshift-fast",
        network_evaluations=res.nfe + corr.nfe,
        correction=corr.to_record(),
    )
    return res, corr, record, wall


class Nodes:
    """The pack's patch nodes, all on one calibration store."""

    def __init__(self, store):
        self.store = store

    def noiseshift(self, model, record, strength: float = 1.0):
        node = node_class("NoiseShift")(calibration_store=self.store)
        (patched,) = node.apply(model, strength, "error", "", calibration=[record])
        return patched

    def nlc(self, model, record, strength: float = 1.0):
        node = node_class("NoiseLevelCorrection")(calibration_store=self.store)
        (patched,) = node.apply(model, strength, 0.0, 1000.0, "error", "", calibration=[record])
        return patched

    def node(self, name: str):
        """Any other node of the pack, on this store."""
        return node_class(name)(calibration_store=self.store)


def guidance(model, weight: float, mode: str, offset=1.0, pseudo_level=1.0, schedule="constant"):
    """`model` through the pack's Noise Awareness Guidance node over the whole level
    range, weight set by hand."""
    node = node_class("NoiseAwarenessGuidance")()
    (patched,) = node.apply(model, weight, mode, offset, pseudo_level, schedule, 1.0, 0.0)
    return patched


def with_both_tables(model, latents, sigmas, sampler: str, record: dict, positive=None) -> dict:
    """The record with both tables, for the benchmark's columns: the check calibrates
    one (with NoiseShift on where the curve shifts, else alone); the other is
    calibrated here on the same latents, as a user gets it for each node (the table
    alone as Calibrate writes it with check = off, strength verified), not counted in
    the calibration's cost."""
    full = copy.deepcopy(record)
    fit = latents[: record["check"]["calibrated_on"]]
    if not full.get("correction"):
        full["correction"] = calibrate.run_correction(
            model, fit, sigmas, None, sampler, positive=positive, seed=SEARCH_SEED
        ).to_record()
    if not full.get("correction_joint"):  # the curve is the identity: the same table
        full["correction_joint"] = full["correction"]
    return full
