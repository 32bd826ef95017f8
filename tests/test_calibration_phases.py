"""One progress bar over every phase of a self-generated calibration with a table and
the held-out check, Cancel honoured in each phase (no file, no temp file), and each
phase's cost in the record, counted against the rows the network really saw."""

import comfy.model_management
import pytest
import torch

NATIVE = 64  # pixels: latent 8x8
COUNT = 8  # 4 calibrated on, 4 held back
PHASES = ["self-generation", "noiseshift", "correction", "check", "guidance"]


@pytest.fixture
def calibrate_node(pack, tmp_path):
    store = pack.noisecal_host.folders.user_store(tmp_path)
    return pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](calibration_store=store)


def self_calibrate(node, model):
    widgets = (model, 3, "simple", "lean", COUNT, 0, 32, 32, "", COUNT)
    return node.calibrate(
        *widgets,
        data="self-generate",
        generation_steps=2,
        native_width=NATIVE,
        native_height=NATIVE,
        correction="euler",
        mode="recalibrate",
    )


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and ".tmp-" in p.name)


@pytest.mark.parametrize("phase", PHASES)
def test_cancel_in_each_phase_writes_nothing(pack, calibrate_node, tiny_sd3, tmp_path, phase):
    phases = pack.noisecal_host.calibration_phases
    seen = []
    original = phases.Phases._update

    def cancelling(self, name, done, total):
        seen.append(name)
        if name == phase and done > 0:  # inside the phase, after its first unit of work
            comfy.model_management.interrupt_current_processing(True)
        return original(self, name, done, total)

    phases.Phases._update = cancelling
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            self_calibrate(calibrate_node, tiny_sd3.patcher)
    finally:
        phases.Phases._update = original
        comfy.model_management.interrupt_current_processing(False)
    assert phase in seen and seen[-1] == phase
    assert not list(tmp_path.glob("*.json")) and leftovers(tmp_path) == []
    cached = list((tmp_path / "generated").glob("*.safetensors"))
    assert len(cached) == (0 if phase == "self-generation" else 1)


def test_one_bar_and_the_phase_names_in_order(pack, calibrate_node, tiny_sd3, monkeypatch):
    phases = pack.noisecal_host.calibration_phases
    bar, said = [], []
    real_progress = pack.noisecal_host.calibrate.comfy_progress

    def recording(total, also=None):
        return real_progress(total, lambda done, t: bar.append((done, t)))

    monkeypatch.setattr(pack.noisecal_host.calibrate, "comfy_progress", recording)
    monkeypatch.setattr(pack.noisecal_host.calibration_job, "progress_text", lambda: said.append)
    out = self_calibrate(calibrate_node, tiny_sd3.patcher)
    # each phase's label as it starts, then what the run cost (the last label must not stay)
    assert said[:-1] == [f"{phases.LABELS[p]}..." for p in PHASES]
    assert said[-1].startswith("done: ") and "network evaluations" in said[-1]
    values = [done for done, _ in bar]
    assert {t for _, t in bar} == {phases.BAR_UNITS}
    assert values == sorted(values) and values[0] == 0 and values[-1] == phases.BAR_UNITS
    (record,), _, _ = out["result"]
    assert list(record["cost"]["phases"]) == PHASES


def test_the_record_counts_each_phase_as_the_network_saw_it(pack, calibrate_node, tiny_sd3):
    model = tiny_sd3.patcher
    with pack.noisecal_host.network_calls.network_calls(model) as calls:
        out = self_calibrate(calibrate_node, model)
    (record,), _, _ = out["result"]
    cost = record["cost"]
    total = sum(p["network_evaluations"] for p in cost["phases"].values())
    assert total == calls[0]  # every row the network saw, in exactly one phase
    generation = cost["phases"]["self-generation"]["network_evaluations"]
    assert generation == COUNT * 2  # two steps, cfg 1
    assert cost["network_evaluations"] == calls[0] - generation  # at the target size
    assert record["check"]["network_evaluations"] == (
        cost["phases"]["check"]["network_evaluations"]
        + cost["phases"]["guidance"]["network_evaluations"]
    )
    assert "by phase: self-generation" in out["ui"]["text"][0]
    assert all(torch.isfinite(torch.tensor(record["sigma_hat"])))


def flatten(value, where=""):
    """{path: leaf} of nested dicts and lists."""
    if isinstance(value, dict):
        return {k: v for key in value for k, v in flatten(value[key], f"{where}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, x in enumerate(value) for k, v in flatten(x, f"{where}/{i}").items()}
    return {where: value}


def comparable(record):
    """The record without what moves from run to run (times, dates)."""
    out = {k: v for k, v in record.items() if k not in ("created_at", "cost")}
    out["cost"] = {
        "network_evaluations": record["cost"]["network_evaluations"],
        "phases": {k: v["network_evaluations"] for k, v in record["cost"]["phases"].items()},
    }
    return out


def test_a_small_free_memory_splits_every_call_and_gives_the_same_record(
    pack, tiny_sd3, tmp_path, monkeypatch
):
    model = tiny_sd3.patcher
    memory = pack.noisecal_host.memory
    calls = []
    model.model.diffusion_model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))

    def run(folder):
        store = pack.noisecal_host.folders.user_store(folder)
        node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](calibration_store=store)
        calls.clear()
        (record,), _, _ = self_calibrate(node, model)["result"]
        return record, max(calls)

    roomy, widest = run(tmp_path / "roomy")
    channels = model.model.latent_format.latent_channels
    target_row = memory.row_bytes(model, (1, channels, 4, 4))
    # ComfyUI's own attention asks get_free_memory too: the pack's view of it is simulated
    monkeypatch.setattr(memory, "free_bytes", lambda model: 6 * target_row)
    assert memory.batch_size(model, (1, channels, 4, 4), COUNT) == 6
    tight, narrowest = run(tmp_path / "tight")
    assert widest > 6 >= narrowest  # the calls were split ...
    # ... and nothing else changed: every choice and count the same, every number the same
    # but for float rounding (a batch of another size sums in another order)
    flat_tight, flat_roomy = flatten(comparable(tight)), flatten(comparable(roomy))
    assert flat_tight.keys() == flat_roomy.keys()
    for where, value in flat_roomy.items():
        if isinstance(value, float):
            assert flat_tight[where] == pytest.approx(value, rel=1e-4, abs=1e-7), where
        else:
            assert flat_tight[where] == value, where
