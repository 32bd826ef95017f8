"""ComfyUI's core MODEL nodes before and after each of the pack's MODEL nodes.

Each core node is imported from comfy_extras by module and class name; on a
host without it, its tests skip with a reason naming the node. So the file runs
on every host that has a node, and CI (the registry snapshot) runs what the
snapshot has. Run it on a full ComfyUI with COMFYUI_PATH=/path/to/ComfyUI.

Per core node x model x pack node x order, on ComfyUI's tiny SD3 and Flux
(the SD1 UNet for PAG, which patches UNet self-attention), sampled through
KSampler with a forward pre-hook on the network recording the timesteps it is
told:
- nothing errors and the output is finite;
- the pack acts: the network is told the levels of the pack node alone (a
  subset of them with a step cache, which skips calls) and the output differs
  from the core node's alone;
- the core node acts: the output differs from the pack node's alone;
- a step cache (EasyCache, LazyCache) does not compose: the pack says so once
  at sampling time; no other combination warns.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass, field

import comfy.model_sampling
import pytest
import torch
from test_apply import _check_section
from test_correction_host import with_table
from test_noiseshift_host import make_record

LATENT = 8
STEPS = 5
CFG = 2.5  # above 1: the nodes that reshape CFG need the unconditional branch
CACHE = {"reuse_threshold": 3.0, "start_percent": 0.0, "end_percent": 1.0, "verbose": False}
STEP_CACHE = "step-cache"  # user_messages.STEP_CACHE


@dataclass(frozen=True)
class Core:
    """A core node: where it lives, inputs that make it act on tiny models."""

    name: str
    module: str
    cls: str
    inputs: dict = field(default_factory=dict)
    models: tuple = ("sd3", "flux")
    per_model: dict = field(default_factory=dict)
    step_cache: bool = False

    def inputs_for(self, model_name: str) -> dict:
        return {**self.inputs, **self.per_model.get(model_name, {})}


SLG = {"scale": 3.0, "start_percent": 0.0, "end_percent": 1.0}
CORE = [
    Core(
        "PerturbedAttentionGuidance",
        "nodes_pag",
        "PerturbedAttentionGuidance",
        {"scale": 3.0},
        models=("unet",),
    ),
    Core("APG", "nodes_apg", "APG", {"eta": 0.0, "norm_threshold": 5.0, "momentum": 0.0}),
    Core("CFGZeroStar", "nodes_cfg", "CFGZeroStar"),
    Core("CFGNorm", "nodes_cfg", "CFGNorm", {"strength": 0.5}),
    Core(
        "SkipLayerGuidanceDiT",
        "nodes_slg",
        "SkipLayerGuidanceDiT",
        SLG,
        per_model={
            "sd3": {"double_layers": "1", "single_layers": ""},
            "flux": {"double_layers": "0", "single_layers": "0"},
        },
    ),
    Core("TCFG", "nodes_tcfg", "TCFG"),
    Core("Mahiro", "nodes_mahiro", "Mahiro"),
    Core(
        "FreSca", "nodes_fresca", "FreSca", {"scale_low": 1.0, "scale_high": 1.25, "freq_cutoff": 1}
    ),
    # EasyCache wraps the diffusion model's forward (DIFFUSION_MODEL wrappers): Flux runs
    # them, ComfyUI 0.3.64's SD3 MMDiT does not (EasyCache changes nothing there)
    Core("EasyCache", "nodes_easycache", "EasyCacheNode", CACHE, models=("flux",), step_cache=True),
    Core("LazyCache", "nodes_easycache", "LazyCacheNode", CACHE, step_cache=True),
]
PACK = ("Apply", "NoiseShift", "Noise Level Correction", "Noise Awareness Guidance")
CASES = [(core, m) for core in CORE for m in core.models]


def case_id(case) -> str:
    return f"{case[0].name}-{case[1]}"


def core_class(core: Core):
    """The node class from comfy_extras, or a skip naming the node."""
    if importlib.util.find_spec(f"comfy_extras.{core.module}") is None:
        pytest.skip(f"{core.name}: this host has no comfy_extras.{core.module}")
    module = importlib.import_module(f"comfy_extras.{core.module}")
    cls = getattr(module, core.cls, None)
    cls = cls or getattr(module, "NODE_CLASS_MAPPINGS", {}).get(core.name)
    if cls is None:
        pytest.skip(f"{core.name}: comfy_extras.{core.module} has no {core.cls}")
    return cls


def apply_core(cls, model, inputs: dict):
    """Run a core node on a MODEL, old-style (FUNCTION) or V3 (execute)."""
    if hasattr(cls, "define_schema"):  # V3 nodes (comfy_api): a classmethod
        return cls.execute(model=model, **inputs).args[0]
    return getattr(cls(), cls.FUNCTION)(model=model, **inputs)[0]


def apply_record(pack_module, patcher):
    """A record whose check recommends NoiseShift (told 0.8 sigma) for the Apply node."""
    record = make_record(pack_module, patcher, lambda s: 0.8 * s)
    check = {"plain": (0, 0, None), "noiseshift@1": (1, 0, None)}
    record["check"] = _check_section(check, "noiseshift@1")
    return pack_module("noisecal.calibration_record").validate(record)


def apply_pack(pack, pack_module, name: str, model, base):
    """Run one of the pack's MODEL nodes; records are made for the unpatched `base`."""
    m = pack.NODE_CLASS_MAPPINGS
    if name == "Apply":
        record = apply_record(pack_module, base)
        return m["NoiseCalibrationApply"]().apply(model, 1.0, "error", calibration=[record])[0]
    if name == "NoiseShift":
        record = make_record(pack_module, base, lambda s: 0.8 * s)
        node = m["NoiseCalibrationNoiseShift"]()
        return node.apply(model, 1.0, "error", calibration=[record])[0]
    if name == "Noise Level Correction":
        record = with_table(pack_module, base, lambda s: -0.1)
        node = m["NoiseCalibrationNoiseLevelCorrection"]()
        return node.apply(model, 1.0, 0.0, 1000.0, "error", calibration=[record])[0]
    node = m["NoiseCalibrationNoiseAwarenessGuidance"]()
    return node.apply(model, 2.0, "offset", 1.0, 1.0, "constant", 1.0, 0.0)[0]


def sample(pack_module, model, tiny):
    """(output, told levels): KSampler's output and every timestep the network got."""
    sampling = pack_module("noisecal_host.testing.sampling")
    told = []

    def hook(module, args, kwargs):
        t = args[1] if len(args) > 1 else kwargs.get("timesteps", kwargs.get("timestep"))
        told.append(t.detach().float().reshape(-1).clone())

    discrete = isinstance(
        model.get_model_object("model_sampling"), comfy.model_sampling.ModelSamplingDiscrete
    )
    handle = model.model.diffusion_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = sampling.ksample(
            model,
            sampling.empty_latent(model, LATENT, LATENT),
            tiny.conditioning(1),
            tiny.conditioning(1, seed=1),
            steps=STEPS,
            cfg=CFG,
            seed=2,
            scheduler="karras" if discrete else "simple",
        )
    finally:
        handle.remove()
    return out, levels(told)


def levels(told: list) -> set[float]:
    """The distinct told timesteps, rounded: code paths differ in the last bits."""
    return {round(float(t), 2) for t in torch.cat(told)}


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) > 1e-4 * float(b.abs().max())


def tiny_for(pack_module, model_name: str):
    return pack_module("noisecal_host.testing.tiny_models").TINY_MODELS[model_name]()


def compose_warnings(caplog) -> list[str]:
    return [r.message for r in caplog.records if getattr(r, "message_id", None) == STEP_CACHE]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_core_node_acts_alone(pack_module, case):
    """The inputs chosen make the core node change the sample on this tiny model."""
    core, model_name = case
    cls = core_class(core)
    tiny = tiny_for(pack_module, model_name)
    plain, _ = sample(pack_module, tiny.patcher, tiny)
    out, _ = sample(pack_module, apply_core(cls, tiny.patcher, core.inputs_for(model_name)), tiny)
    assert torch.isfinite(out).all()
    assert differs(out, plain), f"{core.name} changes nothing on tiny {model_name}"


@pytest.mark.parametrize("order", ["core first", "pack first"])
@pytest.mark.parametrize("pack_node", PACK)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_core_and_pack_node_both_act(pack, pack_module, case, pack_node, order, caplog):
    core, model_name = case
    cls = core_class(core)
    tiny = tiny_for(pack_module, model_name)
    base, inputs = tiny.patcher, core.inputs_for(model_name)
    core_out, core_told = sample(pack_module, apply_core(cls, base, inputs), tiny)
    pack_out, pack_told = sample(
        pack_module, apply_pack(pack, pack_module, pack_node, base, base), tiny
    )
    if order == "core first":
        both = apply_pack(pack, pack_module, pack_node, apply_core(cls, base, inputs), base)
    else:
        both = apply_core(cls, apply_pack(pack, pack_module, pack_node, base, base), inputs)
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        out, told = sample(pack_module, both, tiny)
    assert torch.isfinite(out).all()
    assert told != core_told, "the pack's levels reach the network"
    if core.step_cache:
        assert told and told <= pack_told, "only levels the pack tells, some calls skipped"
        assert len(compose_warnings(caplog)) == 1
    else:
        assert told == pack_told
        assert not compose_warnings(caplog)
    assert differs(out, pack_out), f"{core.name} acts with {pack_node}"
    assert differs(out, core_out), f"{pack_node} acts with {core.name}"


@pytest.mark.parametrize("pack_node", ["Apply", "NoiseShift"])
def test_an_inert_step_cache_is_not_reported(pack, pack_module, pack_node, caplog):
    """EasyCache on a network that does not run its wrapper (SD3 on ComfyUI 0.3.64)
    skips no step: nothing to tell."""
    cls = core_class(CORE[[c.name for c in CORE].index("EasyCache")])
    tiny = tiny_for(pack_module, "sd3")
    base = tiny.patcher
    pack_out, _ = sample(pack_module, apply_pack(pack, pack_module, pack_node, base, base), tiny)
    both = apply_core(cls, apply_pack(pack, pack_module, pack_node, base, base), CACHE)
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        out, _ = sample(pack_module, both, tiny)
    if differs(out, pack_out):
        pytest.skip("EasyCache acts on SD3 on this host: the report is tested above")
    assert not compose_warnings(caplog)


class StandInCache:
    """What core EasyCache and LazyCache leave in transformer_options: a holder
    named for the node (for hosts without them)."""

    def __init__(self, name: str):
        self.name = name


@pytest.mark.parametrize("pack_node", PACK)
def test_a_step_cache_is_reported_once_per_run(pack, pack_module, tiny_sd3, pack_node, caplog):
    model = apply_pack(pack, pack_module, pack_node, tiny_sd3.patcher, tiny_sd3.patcher).clone()
    model.model_options["transformer_options"]["easycache"] = StandInCache("LazyCache")
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        sample(pack_module, model, tiny_sd3)  # STEPS steps, one warning
    (message,) = compose_warnings(caplog)
    assert f"{pack_node} does not compose with LazyCache" in message
    assert "remove LazyCache" in message


def test_a_step_cache_is_found_by_its_wrapper_key(pack_module):
    find = pack_module("noisecal_host.dropped_patch").find
    wrappers = {"predict_noise": {"lazycache": [print]}, "outer_sample": {"other": [print]}}
    assert find({"transformer_options": {"wrappers": wrappers}})[0] == "LazyCache"
    assert find({"transformer_options": {"wrappers": {"x": {"other": [print]}}}}) is None
    assert find({}) is None
