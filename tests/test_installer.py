"""Every MODEL node of the pack patches through the one installer
(noisecal_host/installer.py), on ComfyUI's real ModelPatcher: one clone, one
copy of the sampling object carrying only the parts the plans use, one
dropped-patch watcher, guidance hooks only where a plan guides, and nothing at
all where the plan is plain."""

from __future__ import annotations

import copy

import pytest
import torch
from test_correction_host import with_table
from test_noiseshift_host import LATENT, run

CANDIDATES = {  # name: (noiseshift, correction, table)
    "plain": (0, 0, None),
    "noiseshift@1": (1, 0, None),
    "noiseshift+nlc@1": (1, 1, "correction_joint"),
}
GUIDANCE = dict(mode="offset", offset=2.0, weight_schedule="per step size")


def calibrated(pack_module, patcher, name: str, guidance: float = 0.0) -> dict:
    """A record of the tiny model whose check recommends `name` (+ guidance)."""
    record = with_table(pack_module, patcher, lambda s: -0.1, lambda s: 0.8 * s)
    record["correction_joint"] = {**record["correction"], "r": [0.05] * len(record["sigmas"])}
    score = {"score": 0.0, "gain": 0.0, "gain_noise": 0.0}
    record["check"] = {
        "method": "test",
        "held_out": 4,
        "candidates": {
            n: {"noiseshift": ns, "correction": c, "table": t, **score}
            for n, (ns, c, t) in CANDIDATES.items()
        },
        "recommendation": name,
        "guidance": {
            **GUIDANCE,
            "base": name,
            "base_score": 0.0,
            "candidates": {"guidance@2": {"weight": 2.0, **score}},
            "weight": guidance,
        },
    }
    return pack_module("noisecal.calibration_record").validate(record)


@pytest.fixture
def installs(pack_module, monkeypatch):
    """The policy kinds the installer was called with (the real installer runs)."""
    installer = pack_module("noisecal_host.installer")
    real, kinds = installer.install, []

    def recording(model, policy, **kwargs):
        kinds.append(policy.kind)
        return real(model, policy, **kwargs)

    monkeypatch.setattr(installer, "install", recording)
    return kinds


def patches_of(model) -> tuple:
    """Everything a node can add to a ModelPatcher, as comparable values."""
    return (
        copy.deepcopy(model.model_options),
        dict(model.object_patches),
        {k: list(v) for k, v in model.patches.items()},
        copy.deepcopy(getattr(model, "wrappers", {})),  # patcher wrappers (2025+ hosts)
    )


def parts_on(pack_module, model) -> tuple[list, list]:
    """(level functions, state functions) on the model's sampling object, by type
    name and the policy kind they carry."""
    ms = model.get_model_object("model_sampling")

    def named(fns):
        return [(type(fn).__name__, getattr(fn, "policy_kind", None)) for fn in fns]

    return named(getattr(ms, "level_fns", ())), named(getattr(ms, "state_fns", ()))


def hooks_of(model) -> tuple[int, int, bool]:
    """(pre-CFG functions, post-CFG functions, guidance wrappers present)."""
    options = model.model_options
    # 2025+ hosts keep patcher wrappers on the patcher, by type and then key
    wrappers = {
        **options.get("transformer_options", {}).get("wrappers", {}),
        **getattr(model, "wrappers", {}),
    }
    guided = any("noise_calibration.guidance" in by_key for by_key in wrappers.values())
    return (
        len(options.get("sampler_pre_cfg_function", [])),
        len(options.get("sampler_post_cfg_function", [])),
        guided,
    )


def guidance_node(pack, model, weight=2.0, **extra):
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"](
        calibration_store=extra.pop("store", None)
    )
    settings = dict(GUIDANCE, pseudo_level=1.0, level_start=1.0, level_end=0.0)
    return node.apply(model, weight, **{**settings, **extra})[0]


def test_every_model_node_installs_through_the_one_installer(pack, pack_module, tiny_sd3, installs):
    m = pack.NODE_CLASS_MAPPINGS
    base = tiny_sd3.patcher
    wrappers = pack_module("noisecal_host.guidance_patch").wrappers_available(base)
    record = calibrated(pack_module, base, "noiseshift+nlc@1", guidance=2.0)
    joint_table = {**record, "correction": record["correction_joint"]}
    cases = {
        "noiseshift": (
            m["NoiseCalibrationNoiseShift"]().apply(base, 1.0, "error", calibration=[record])[0],
            ([("ShiftPart", "noiseshift")], []),
        ),
        "correction": (
            m["NoiseCalibrationNoiseLevelCorrection"]().apply(
                base, 1.0, 0.0, 1000.0, "error", calibration=[joint_table]
            )[0],
            ([], [("CorrectionPart", "correction")]),
        ),
        "recommended": (
            m["NoiseCalibrationApply"]().apply(base, 1.0, "error", calibration=[record])[0],
            (
                [("ShiftPart", "recommended"), ("LevelOverride", "recommended")],
                [("CorrectionPart", "recommended")],
            ),
        ),
        "guidance": (guidance_node(pack, base), ([("LevelOverride", "guidance")], [])),
    }
    assert installs == list(cases)
    for kind, (patched, parts) in cases.items():
        assert patched is not base and parts_on(pack_module, patched) == parts, kind
        guides = kind in ("recommended", "guidance")
        # one clone: one watcher, and the guidance hooks only where a plan guides
        assert hooks_of(patched) == (1, int(guides), guides and wrappers), kind
    assert parts_on(pack_module, base) == ([], [])  # the input model is untouched
    assert hooks_of(base) == (0, 0, False)


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_a_plain_plan_leaves_the_model_as_it_was(pack, pack_module, tiny_sd3, installs, guidance):
    """Apply on a plain recommendation installs nothing (no clone, no hook); with
    guidance on top, only the guidance parts."""
    base = tiny_sd3.patcher
    before = patches_of(base)
    record = calibrated(pack_module, base, "plain", guidance=guidance)
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationApply"]()
    (applied,) = node.apply(base, 1.0, "pass through", calibration=[record])
    assert installs == ["recommended"]
    if not guidance:
        assert applied is base and patches_of(base) == before
        assert torch.equal(run(pack_module, applied, tiny_sd3), run(pack_module, base, tiny_sd3))
        return
    assert parts_on(pack_module, applied) == ([("LevelOverride", "recommended")], [])
    assert hooks_of(applied)[:2] == (1, 1)
    assert patches_of(base) == before


def test_a_plain_plan_still_refuses_a_size_without_calibration(pack, pack_module, tiny_sd3):
    """With if_missing = error, a plain plan keeps one level function: calibrated
    sizes sample as the model itself does, a size with no calibration fails with
    Apply's error; with the latent connected the node checks the size itself and
    installs nothing."""
    base = tiny_sd3.patcher
    before = patches_of(base)
    record = calibrated(pack_module, base, "plain")
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationApply"]()
    (applied,) = node.apply(base, 1.0, "error", calibration=[record])
    assert parts_on(pack_module, applied) == ([("ShiftPart", "recommended")], [])
    assert patches_of(base) == before
    assert torch.equal(run(pack_module, applied, tiny_sd3), run(pack_module, base, tiny_sd3))
    sampling = pack_module("noisecal_host.testing.sampling")
    other = sampling.empty_latent(base, 2 * LATENT, 2 * LATENT, batch=1)
    errors = pack_module("noisecal.errors")
    with pytest.raises(errors.CalibrationNotFound, match="^Noise Calibration: Apply node"):
        sampling.ksample(applied, other, tiny_sd3.conditioning(1), steps=2, cfg=1.0, seed=0)
    latent = sampling.empty_latent(base, LATENT, LATENT, batch=1)
    (checked,) = node.apply(base, 1.0, "error", calibration=[record], latent={"samples": latent})
    assert checked is base and patches_of(base) == before


def test_calibrated_guidance_without_a_guided_size_installs_nothing(
    pack, pack_module, tiny_sd3, tmp_path
):
    store = pack_module("noisecal_host.folders").user_store(tmp_path)
    base = tiny_sd3.patcher
    before = patches_of(base)
    store.save(calibrated(pack_module, base, "noiseshift@1", guidance=0.0))
    plain = guidance_node(pack, base, 1.0, weight_source="calibrated", store=store)
    assert plain is base and patches_of(base) == before
    store.save(calibrated(pack_module, base, "noiseshift@1", guidance=2.0))
    guided = guidance_node(pack, base, 1.0, weight_source="calibrated", store=store)
    assert parts_on(pack_module, guided) == ([("LevelOverride", "guidance")], [])


def test_one_apply_run_reads_each_calibration_file_once(
    pack, pack_module, tiny_sd3, tmp_path, monkeypatch
):
    """The node's text, its calibrated sizes and the checks share one reading."""
    store_module = pack_module("noisecal_host.store")
    record_module = pack_module("noisecal.calibration_record")
    user_store = pack_module("noisecal_host.folders").user_store(tmp_path)
    for latent in ((8, 8), (16, 16)):
        record = calibrated(pack_module, tiny_sd3.patcher, "noiseshift@1")
        record["resolution"].update(
            latent_height=latent[0],
            latent_width=latent[1],
            image_height=8 * latent[0],
            image_width=8 * latent[1],
        )
        user_store.save(record_module.validate(record))
    real, read = store_module.load, []
    monkeypatch.setattr(store_module, "load", lambda path: read.append(path) or real(path))
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationApply"](calibration_store=user_store)
    out = node.run(model=tiny_sd3.patcher, strength=1.0, if_missing="error", label="")
    assert len(read) == 2 and len(set(read)) == 2
    sizes = out["ui"]["noise_calibration"][0]["sizes"]
    assert [s["latent"] for s in sizes] == [[8, 8], [16, 16]]
    assert len(out["ui"]["text"][0].splitlines()) == 2  # one line per calibrated size
