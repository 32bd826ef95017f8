"""Noise Awareness Guidance on ComfyUI's own models and samplers."""

import comfy.model_sampling
import pytest
import torch

LATENT = 8


def run(pack_module, model, tiny, cfg, steps=3):
    sampling = pack_module("noisecal_host.testing.sampling")
    latent = sampling.empty_latent(model, LATENT, LATENT, batch=2)
    return sampling.ksample(
        model,
        latent,
        tiny.conditioning(2),
        tiny.conditioning(2, seed=1),
        steps=steps,
        cfg=cfg,
        seed=4,
        scheduler="karras"
        if isinstance(
            model.get_model_object("model_sampling"), comfy.model_sampling.ModelSamplingDiscrete
        )
        else "simple",
    )


class Probe:
    """Records network calls and what the post-CFG chain sees before and after."""

    def __init__(self, patcher):
        self.steps, self.pending = [], []
        net = patcher.model.diffusion_model
        self.handle = net.register_forward_hook(self._forward, with_kwargs=True)

        # plain functions, not bound methods: ModelPatcher.clone() deep-copies
        # model_options, and a deep-copied bound method would record into a copy
        def before(args):
            self.steps.append(
                {
                    "before": args["denoised"].clone(),
                    "x": args["input"],
                    "cond": args["cond_denoised"],
                    "sigma": args["sigma"],
                }
            )
            return args["denoised"]

        def after(args):
            self.steps[-1]["after"] = args["denoised"].clone()
            self.steps[-1]["calls"], self.pending = self.pending, []
            return args["denoised"]

        self.before, self.after = before, after

    def _forward(self, module, args, kwargs, output):
        self.pending.append((args[1].detach().clone(), output.detach().float().clone()))


def batched_host(pack_module, model) -> bool:
    """Whether the extra branch rides in the step's own network call on this host."""
    return pack_module("noisecal_host.guidance_patch").wrappers_available(model)


def extra_rows(step, regular_t):
    """(t, output) of a step's rows not told the trajectory's level: the extra branch,
    a separate call on old hosts, rows of the step's own call where wrappers chain."""
    t = torch.cat([c[0].float().reshape(-1) for c in step["calls"]])
    out = torch.cat([c[1] for c in step["calls"]])
    regular = regular_t.float().reshape(-1)[0]
    other = ~torch.isclose(t, regular, rtol=1e-6, atol=0.0)  # near sigma_max they differ little
    return t[other], out[other]


def regular_timestep(ms, sigma):
    return ms.timestep(sigma).float()


def settings(pack_module, **kw):
    base = dict(weight=0.7, mode="offset", offset=1.0, weight_schedule="constant", guard=1e9)
    return pack_module("noisecal.guidance").GuidanceSettings(**{**base, **kw})


def other_level(pack_module, ms, sigma, s):
    g = pack_module("noisecal.guidance")
    param = "flow" if isinstance(ms, comfy.model_sampling.CONST) else "eps"
    return g.from_u(s.other_level(g.to_u(sigma, param), None, param), param)


@pytest.mark.parametrize("cfg", [1.0, 2.5])
@pytest.mark.parametrize("order", ["other patch first", "guidance first"])
def test_formula_on_captured_predictions_and_chaining(pack_module, tiny_model, cfg, order):
    apply_guidance = pack_module("noisecal_host.level_patches").apply_guidance
    s = settings(pack_module, offset=-1.0)  # a lower level: never clamped to the same t
    nudge = 0.01
    probe = Probe(tiny_model.patcher)
    model = tiny_model.patcher.clone()
    model.set_model_sampler_post_cfg_function(probe.before)

    def other_pack(args):  # another pack's post-cfg patch: a small constant nudge
        return args["denoised"] + nudge

    if order == "other patch first":
        model.set_model_sampler_post_cfg_function(other_pack)
        model = apply_guidance(model, s)
    else:
        model = apply_guidance(model, s)
        model.set_model_sampler_post_cfg_function(other_pack)
    model.set_model_sampler_post_cfg_function(probe.after)
    try:
        run(pack_module, model, tiny_model, cfg)
    finally:
        probe.handle.remove()
    ms = tiny_model.patcher.get_model_object("model_sampling")
    # cond (+ uncond) in one call, the other level in the same call or a second one
    calls = 1 if batched_host(pack_module, model) else 2
    assert len(probe.steps) == 3
    for step in probe.steps:
        assert len(step["calls"]) == calls
        sigma, x = step["sigma"], step["x"]
        t_other, v_other = extra_rows(step, regular_timestep(ms, sigma))
        assert t_other.shape[0] == x.shape[0]
        expected_level = other_level(pack_module, ms, sigma, s)
        if isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete):
            cont = pack_module("noisecal_host.conditioning_level")._continuous_step
            expected_t = ms.timestep(sigma).float() + cont(ms, expected_level) - cont(ms, sigma)
        else:
            expected_t = ms.timestep(expected_level).float()
        assert torch.allclose(t_other.float(), expected_t, atol=1e-4)
        other = x - sigma.view(-1, 1, 1, 1) * v_other  # denoised at the trajectory's sigma
        added = step["after"] - step["before"]
        term = s.weight * (step["cond"] - other)
        assert torch.allclose(added, term + nudge, atol=1e-4, rtol=1e-4), "both effects"


def test_weight_zero_is_bit_identical(pack, pack_module, tiny_model):
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]()
    plain = run(pack_module, tiny_model.patcher, tiny_model, 2.0)
    (off,) = node.apply(tiny_model.patcher, 0.0, "offset", 1.0, 1.0, "per step size", 1.0, 0.0)
    assert torch.equal(run(pack_module, off, tiny_model, 2.0), plain)
    # the patch itself with weight 0 (no node shortcut) changes nothing either
    patched = pack_module("noisecal_host.level_patches").apply_guidance(
        tiny_model.patcher, settings(pack_module, weight=0.0)
    )
    assert torch.equal(run(pack_module, patched, tiny_model, 2.0), plain)
    (on,) = node.apply(tiny_model.patcher, 2.0, "offset", 1.0, 1.0, "constant", 1.0, 0.0)
    assert not torch.equal(run(pack_module, on, tiny_model, 2.0), plain)


def test_outside_the_level_range_nothing_changes(pack_module, tiny_sd3):
    apply_guidance = pack_module("noisecal_host.level_patches").apply_guidance
    probe = Probe(tiny_sd3.patcher)
    model = tiny_sd3.patcher.clone()
    model.set_model_sampler_post_cfg_function(probe.before)
    # 4 simple steps visit u = 1, 0.75, 0.5, 0.25: only 0.5 lies in [0.4, 0.6]
    model = apply_guidance(model, settings(pack_module, level_start=0.6, level_end=0.4))
    model.set_model_sampler_post_cfg_function(probe.after)
    try:
        run(pack_module, model, tiny_sd3, 2.0, steps=4)
    finally:
        probe.handle.remove()
    ms = tiny_sd3.patcher.get_model_object("model_sampling")
    extra = [extra_rows(st, regular_timestep(ms, st["sigma"]))[0] for st in probe.steps]
    guided = [float(st["sigma"][0]) for st, t in zip(probe.steps, extra, strict=True) if t.numel()]
    assert guided == [0.5]
    for st in probe.steps:
        if float(st["sigma"][0]) != 0.5:
            assert torch.equal(st["after"], st["before"])


def test_per_step_size_weight_and_modes_run(pack, pack_module, tiny_flux):
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]()
    plain = run(pack_module, tiny_flux.patcher, tiny_flux, 1.0, steps=4)
    for mode in ("offset", "estimated", "pseudo-level"):
        (model,) = node.apply(tiny_flux.patcher, 3.0, mode, 1.0, 1.0, "per step size", 1.0, 0.0)
        out = run(pack_module, model, tiny_flux, 1.0, steps=4)
        assert torch.isfinite(out).all() and not torch.equal(out, plain), mode


def test_guard_limits_the_term(pack_module):
    g = pack_module("noisecal.guidance")
    x = torch.zeros(2, 1, 2, 2)
    cfg_result = torch.ones(2, 1, 2, 2)
    cond, other = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), -99.0)
    other[1] = float("nan")
    out = g.combine(cfg_result, cond, other, x, torch.tensor([10.0, 10.0]), guard=0.5)
    assert torch.allclose(out[0], torch.full((1, 2, 2), 1.5))  # RMS of term cut to 0.5
    assert torch.equal(out[1], cfg_result[1])  # a non-finite term is dropped


def test_offset_and_estimated_levels(pack_module):
    g = pack_module("noisecal.guidance")
    u = torch.tensor([0.2, 0.5, 0.8])
    assert torch.all(g.offset_level(u, 1.0) > u) and torch.all(g.offset_level(u, -1.0) < u)
    assert torch.allclose(g.offset_level(u, 0.0), u, atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    for level in (0.2, 0.6, 0.9):  # pure noise of std `level` is read back
        noise = level * torch.randn(4, 4, 32, 32, generator=gen)
        assert torch.allclose(g.estimated_level(noise, "flow"), torch.full((4,), level), rtol=0.05)
    with pytest.raises(ValueError, match="level_end <= level_start"):
        g.GuidanceSettings(level_start=0.2, level_end=0.5)


def test_a_later_level_patch_keeps_the_guidance_branch(pack, pack_module, tiny_sd3):
    """NoiseShift placed after guidance copies model_sampling; guidance must still work."""
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]()
    (guided,) = node.apply(tiny_sd3.patcher, 2.0, "offset", 1.0, 1.0, "constant", 1.0, 0.0)
    identity = lambda level, latent_hw: level  # noqa: E731  (a level patch that changes nothing)
    stacked = pack_module("noisecal_host.conditioning_level").patch_model(guided, identity)
    expected = run(pack_module, guided, tiny_sd3, 2.0)
    assert not torch.equal(expected, run(pack_module, tiny_sd3.patcher, tiny_sd3, 2.0))
    assert torch.equal(run(pack_module, stacked, tiny_sd3, 2.0), expected)


def count_calls(model, pack_module, tiny, cfg):
    calls = []
    net = model.model.diffusion_model
    handle = net.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = run(pack_module, model, tiny, cfg)
    finally:
        handle.remove()
    return out, len(calls)


@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_batched_extra_branch_matches_a_separate_call(pack_module, tiny_model, cfg):
    """Where the host chains wrappers the extra branch rides in the step's own call
    (one network call per step); the samples are those of a separate call."""
    apply_guidance = pack_module("noisecal_host.level_patches").apply_guidance
    s = settings(pack_module)
    separate, separate_calls = count_calls(
        apply_guidance(tiny_model.patcher, s, batched=False), pack_module, tiny_model, cfg
    )
    batched = apply_guidance(tiny_model.patcher, s)
    out, calls = count_calls(batched, pack_module, tiny_model, cfg)
    assert separate_calls == 2 * 3
    assert calls == (3 if batched_host(pack_module, batched) else 2 * 3)
    # the same math on a larger batch: float rounding only
    assert (out - separate).abs().max() <= 1e-5 * separate.abs().max()


def test_batched_branch_chains_with_other_packs_wrappers(pack_module, tiny_sd3):
    """Another pack's CALC_COND_BATCH and APPLY_MODEL wrappers still run on every call,
    the guidance rows included, whichever was added first."""
    if not batched_host(pack_module, tiny_sd3.patcher):
        pytest.skip("this ComfyUI has no patcher wrappers (before 2025): nothing to chain")
    from comfy.patcher_extension import WrappersMP

    apply_guidance = pack_module("noisecal_host.level_patches").apply_guidance
    s = settings(pack_module)
    seen = {"batches": 0, "rows": 0}

    def other_batch(executor, model, conds, x, sigma, model_options):
        seen["batches"] += 1
        return executor(model, conds, x, sigma, model_options)

    def other_apply(executor, x, t, c_concat, c_crossattn, control, options, **kwargs):
        seen["rows"] += x.shape[0]
        return executor(x, t, c_concat, c_crossattn, control, options, **kwargs) + 0.01

    def with_other(model):
        model = model.clone()
        model.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, "other pack", other_batch)
        model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "other pack", other_apply)
        return model

    expected = run(
        pack_module, apply_guidance(with_other(tiny_sd3.patcher), s, batched=False), tiny_sd3, 2.5
    )
    for model in (
        apply_guidance(with_other(tiny_sd3.patcher), s),
        with_other(apply_guidance(tiny_sd3.patcher, s)),
    ):
        seen.update(batches=0, rows=0)
        assert torch.allclose(run(pack_module, model, tiny_sd3, 2.5), expected, atol=1e-4)
        assert seen == {"batches": 3, "rows": 3 * 3 * 2}  # 3 steps of cond, uncond, other
