"""Rows through the network of one Calibrate node run at its defaults, by phase.

Run by ``bench/calibration_cost.py`` (section 7) on this tree and on an earlier
commit's, so both are counted the same way in one run::

    python bench/node_cost_probe.py ROOT reference|testbed off|euler

ROOT: the repository tree whose pack is measured. Prints one JSON object: rows
per phase (a forward pre-hook on the diffusion network adds each call's rows to
the phase running: self-generation, the NoiseShift search, the correction tables,
the check's candidates, the guidance stage), seconds and the node's defaults.
Only node and module names both versions have are used.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import tempfile
import time

ROOT, KIND, CORRECTION = sys.argv[1:4]
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from bench.lib import host  # noqa: E402  (bootstraps ROOT's pack)

pack = host.PACK


def module(name: str):
    return importlib.import_module(f"{pack.__name__}.{name}")


calibrate_mod = module("noisecal_host.calibrate")
held_out_run = module("noisecal_host.held_out_run")
self_calibration = module("noisecal_host.self_calibration")
try:  # the calibration files moved to the host layer when the store was split
    store = module("noisecal_host.store")
except ModuleNotFoundError:
    store = module("noisecal.store")

REFERENCE_SIDE = 128  # pixels: a 16x16 latent, below the reference's 32x32
TESTBED_M, TESTBED_N = 32, 16
rows: dict[str, int] = {}
active = ["other"]


def phase_of(name):
    """Wrap a function so the rows the network sees while it runs count for `name`."""

    def wrap(fn):
        def wrapped(*args, **kwargs):
            active.append(name)
            try:
                return fn(*args, **kwargs)
            finally:
                active.pop()

        return wrapped

    return wrap


def instrument():
    self_calibration.generated_set = phase_of("self-generation")(self_calibration.generated_set)
    calibrate_mod.run_search = phase_of("noiseshift")(calibrate_mod.run_search)
    calibrate_mod._correction = phase_of("correction")(calibrate_mod._correction)
    calibrate_mod.run_check = phase_of("check")(calibrate_mod.run_check)
    held_out_run._guidance = phase_of("guidance")(held_out_run._guidance)


def count_rows(model):
    def seen(_module, args):
        rows[active[-1]] = rows.get(active[-1], 0) + int(args[0].shape[0])

    return model.model.diffusion_model.register_forward_pre_hook(seen)


def defaults(node_cls) -> dict:
    spec = node_cls.INPUT_TYPES()["required"]
    return {k: v[1]["default"] for k, v in spec.items() if len(v) > 1 and "default" in v[1]}


def main() -> None:
    instrument()
    node_cls = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"]
    d = defaults(node_cls)
    options = {"correction": CORRECTION}
    if KIND == "reference":
        from bench.lib import reference

        model, side = reference.load().model, REFERENCE_SIDE
        options.update(native_width=256, native_height=256)  # its training resolution
    else:
        tb = module("noisecal.testing.testbed")
        model_mod = module("noisecal_host.testing.testbed_model")
        spectrum = tb.FieldSpectrum(3.0, 2.5)
        model = model_mod.make_testbed_model(spectrum, TESTBED_M, "image")
        data = tb.sample_field(spectrum, TESTBED_N, 64, torch.Generator().manual_seed(1001))
        side = TESTBED_N * 8
        options["latent"] = {"samples": data}
    count_rows(model)
    with tempfile.TemporaryDirectory() as folder:
        node = node_cls(calibration_store=store.CalibrationStore([folder], folder))
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            out = node.calibrate(
                model,
                d["steps"],
                d["scheduler"],
                d["search_mode"],
                d["sample_count"],
                d["seed"],
                side,
                side,
                "",
                d["max_batch"],
                **options,
            )
        seconds = time.perf_counter() - started
    (record,), _, _ = out["result"]
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "sample_count": d["sample_count"],
                "steps": d["steps"],
                "record_evaluations": record["cost"]["network_evaluations"],
                "recommendation": (record.get("check") or {}).get("recommendation"),
            }
        )
    )


if __name__ == "__main__":
    main()
