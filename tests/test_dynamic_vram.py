"""The pack's `model_sampling` patch under ComfyUI's dynamic VRAM loading.

ComfyUI's ModelPatcherDynamic (the default on NVIDIA since 2026) handles
buffers by attribute path: `load()` first calls `restore_loaded_backups()`,
which writes the buffers backed up at the previous load back with
`comfy.utils.set_attr_buffer` into whatever object now sits at that path, then
backs up every buffer `named_buffers()` reaches and puts a device copy in its
place. The backups are shared by all clones of a checkpoint, and
`partially_load()` runs `unpatch_model()`, `patch_model()` (object patches)
and only then `load()`. So the object at `model_sampling` is handed the
`sigmas`/`log_sigmas` of the object that sat there at the previous load
(ComfyUI #16490), and its own buffers go on to the next one.

The hosts tested here (ComfyUI 2024-11, CPU) have no dynamic loading: the
`dynamic` fixture does those steps after every `patch_model`, and `run` loads
the model afresh for every run, as dynamic loading does for every prompt.
"""

import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import pytest
import torch
from test_noiseshift_host import LATENT, make_record

SCHEDULE = ("sigmas", "log_sigmas")


def set_attr_buffer(root, path, value):
    """comfy.utils.set_attr_buffer (2026): register `value` as the buffer at `path`."""
    *parents, name = path.split(".")
    for parent in parents:
        root = getattr(root, parent)
    persistent = name not in root._non_persistent_buffers_set
    root.register_buffer(name, value, persistent=persistent)


class DynamicBuffers:
    """ModelPatcherDynamic.load()'s handling of buffers, after every patch_model."""

    def __init__(self):
        self.on = False
        self.backups = {}  # per BaseModel: backup_buffers is shared by all clones
        self.handed = []  # (object at model_sampling, the sigmas the restore wrote into it)

    def load(self, model):
        if not self.on:
            return
        backup = self.backups.setdefault(model, {})
        for key in list(backup):  # restore_loaded_backups()
            if key == "model_sampling.sigmas":
                self.handed.append((model.model_sampling, backup[key]))
            set_attr_buffer(model, key, backup.pop(key))
        for key, buf in model.named_buffers(recurse=True):
            backup.setdefault(key, buf)
            set_attr_buffer(model, key, buf.clone())  # the copy on the load device


@pytest.fixture
def dynamic(monkeypatch):
    buffers = DynamicBuffers()
    patch_model = comfy.model_patcher.ModelPatcher.patch_model

    def patch_then_load(self, *args, **kwargs):
        out = patch_model(self, *args, **kwargs)
        buffers.load(self.model)
        return out

    monkeypatch.setattr(comfy.model_patcher.ModelPatcher, "patch_model", patch_then_load)
    yield buffers
    comfy.model_management.unload_all_models()


def run(pack_module, model, tiny, seed=0):
    """One prompt: the model is loaded afresh, the scheduler reads `sigmas` itself."""
    comfy.model_management.unload_all_models()
    sampling = pack_module("noisecal_host.testing.sampling")
    latent = sampling.empty_latent(model, LATENT, LATENT, batch=2)
    return sampling.ksample(
        model, latent, tiny.conditioning(2), steps=4, cfg=1.0, seed=seed, scheduler="simple"
    )


def other_schedule(patcher):
    """What ComfyUI's ModelSamplingDiscrete (zsnr) and ModelSamplingSD3/Flux (shift)
    nodes do: a clone whose `model_sampling` is a new object with another schedule."""
    ms = patcher.get_model_object("model_sampling")
    config = patcher.model.model_config
    if isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete):
        other = type(ms)(config, zsnr=True)
    else:
        other = type(ms)(config)
        other.set_parameters(shift=ms.shift * 2)
    assert not torch.equal(other.sigmas, ms.sigmas)
    clone = patcher.clone()
    clone.add_object_patch("model_sampling", other)
    return clone


def patched(pack, pack_module, model, how):
    if how == "noiseshift":
        record = make_record(pack_module, model, lambda s: s * 0.8)
        noiseshift = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseShift"]()
        return noiseshift.apply(model, 1.0, "error", calibration=[record])[0]
    level = pack_module("noisecal_host.conditioning_level")
    return level.patch_model(model, state_fn=lambda sigma, hw: sigma * 0.9)


def test_the_simulated_restore_hands_a_core_object_the_previous_schedule(
    pack_module, tiny_model, dynamic
):
    """Control: the simulation reproduces ComfyUI #16490 for ComfyUI's own object."""
    base = tiny_model.patcher
    other = other_schedule(base)
    fresh = run(pack_module, other, tiny_model)
    dynamic.on = True
    run(pack_module, base, tiny_model)
    run(pack_module, other, tiny_model)
    ms, handed = dynamic.handed[-1]
    assert ms is other.get_model_object("model_sampling")
    assert torch.equal(handed, base.get_model_object("model_sampling").sigmas)
    assert not torch.equal(run(pack_module, other, tiny_model), fresh)


@pytest.mark.parametrize("how", ["noiseshift", "state"])
@pytest.mark.parametrize("ours_on", ["node", "checkpoint"])
def test_patched_sampling_keeps_the_schedule_it_was_built_with(
    pack, pack_module, tiny_model, dynamic, how, ours_on
):
    """(a) Our copy, built on a ModelSampling node's schedule (or the checkpoint's),
    is handed the checkpoint's (or the node's) by the restore after a run of the
    other one; it samples exactly as without the restore."""
    base = tiny_model.patcher
    other = other_schedule(base)
    under, before = (other, base) if ours_on == "node" else (base, other)
    previous = before.get_model_object("model_sampling").sigmas.clone()
    ours = patched(pack, pack_module, under, how)
    fresh = run(pack_module, ours, tiny_model)
    fresh_before = run(pack_module, before, tiny_model)
    dynamic.on = True
    run(pack_module, before, tiny_model)
    first = run(pack_module, ours, tiny_model)  # the restore lands before this run samples
    again = run(pack_module, ours, tiny_model)  # ... and before this run's scheduler reads
    ms = ours.get_model_object("model_sampling")
    handed = [sigmas for obj, sigmas in dynamic.handed if obj is ms]
    assert len(handed) == 2 and torch.equal(handed[0], previous)
    assert torch.equal(first, fresh)
    assert torch.equal(again, fresh)
    # what the restore handed us goes back to the object it came from, unchanged
    assert torch.equal(run(pack_module, before, tiny_model), fresh_before)


def test_unpatched_run_after_a_patched_one_is_bit_identical(pack, pack_module, tiny_model, dynamic):
    """(b) Our copy's buffers, restored into the checkpoint's own object, change nothing."""
    base = tiny_model.patcher
    ours = patched(pack, pack_module, base, "noiseshift")
    fresh = run(pack_module, base, tiny_model)
    dynamic.on = True
    shifted = run(pack_module, ours, tiny_model)
    assert not torch.equal(shifted, fresh)
    assert torch.equal(run(pack_module, base, tiny_model), fresh)
    run(pack_module, ours, tiny_model)
    assert torch.equal(run(pack_module, base, tiny_model), fresh)
    assert torch.equal(run(pack_module, ours, tiny_model), shifted)
    assert len(dynamic.handed) == 4  # every run but the first was handed the previous one's


@pytest.mark.parametrize("name", ["sd3", "flux", "unet"])
def test_a_schedule_node_before_ours_leaks_only_what_it_leaks_alone(
    pack, pack_module, name, dynamic
):
    """A ModelSampling node's schedule reaches later plain runs through ComfyUI
    (#16490); with NoiseShift after the node the plain run gets exactly that
    schedule, nothing of ours."""
    make = pack_module("noisecal_host.testing.tiny_models").TINY_MODELS
    dynamic.on = True
    leaked = []
    for with_ours in (False, True):
        tiny = make[name]()
        model = other_schedule(tiny.patcher)
        if with_ours:
            model = patched(pack, pack_module, model, "noiseshift")
        run(pack_module, model, tiny)
        leaked.append(run(pack_module, tiny.patcher, tiny))
    assert torch.equal(leaked[0], leaked[1])


def test_a_restored_schedule_is_read_around_not_replaced(pack_module, tiny_unet):
    """What the restore hands our copy stays in its buffers, unmodified (ComfyUI
    gives that tensor back to its object later); every read gets the built one."""
    level = pack_module("noisecal_host.conditioning_level")
    base = tiny_unet.patcher.get_model_object("model_sampling")
    ours = level.with_conditioning_level(base, lambda sigma, hw: sigma)
    own = {name: getattr(base, name).clone() for name in SCHEDULE}
    foreign = type(base)(tiny_unet.patcher.model.model_config, zsnr=True)
    handed = {name: getattr(foreign, name) for name in SCHEDULE}
    kept = {name: t.clone() for name, t in handed.items()}
    for name in SCHEDULE:
        set_attr_buffer(ours, name, handed[name])
    sigma = torch.tensor([3.0])
    assert torch.equal(ours.timestep(sigma), base.timestep(sigma))
    assert float(ours.sigma_max) == float(base.sigma_max)
    for name in SCHEDULE:
        assert torch.equal(getattr(ours, name), own[name])
        assert ours._buffers[name] is handed[name]
        assert torch.equal(handed[name], kept[name])
    # the checkpoint's own schedule in its buffers is served as it is
    for name in SCHEDULE:
        set_attr_buffer(ours, name, own[name])
        assert getattr(ours, name) is own[name]
