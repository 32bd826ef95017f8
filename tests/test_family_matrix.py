"""Every image model family of the host's comfy.supported_models, tiny, through KSampler.

Per family (a tiny instance of ComfyUI's own config class and network, see
noisecal_host/testing/family_models.py): NoiseShift's told level reaches the
network's timestep input while calculate_denoised keeps the sampler's sigma;
Noise Level Correction moves input scaling, conditioning and denoised estimate
together; guidance runs; an identity calibration (and a zero correction table)
is bit-identical to the unpatched model. Families the patches cannot reach are
refused by the node with family_support's message. Video, audio and 3D
families are skipped with the reason. docs/compatibility.md has the table.
"""

from __future__ import annotations

import functools

import comfy.model_sampling
import comfy.supported_models
import pytest
import torch
from test_noiseshift_host import make_record, schedule_levels

STEPS = 2
FACTOR = 0.8  # NoiseShift: the network is told 0.8 sigma
R = -0.2  # Noise Level Correction: evaluated at 0.8 sigma


def _families():
    from noise_calibration.noisecal_host.testing import family_models

    return family_models


def _params(variants: bool):
    """One parameter per host config class; with variants=False, a config class
    that only subclasses a covered one (SSD1B, KOALA, Segmind Vega are SDXL) is
    skipped: its tiny instance is that family's network, and the identity and
    sampling test still runs it."""
    fm = _families()
    out = []
    for cls in fm.host_families():
        kind, info = fm.classify(cls)
        marks = () if kind == "image" else (pytest.mark.skip(reason=str(info)),)
        if kind == "image" and not variants and cls.__name__ not in fm.SPECS:
            covered = next(c.__name__ for c in cls.__mro__ if c.__name__ in fm.SPECS)
            marks = (pytest.mark.skip(reason=f"the {covered} network (a config subclass)"),)
        out.append(pytest.param(cls, id=cls.__name__, marks=marks))
    return out


FAMILIES = _params(variants=False)
ALL_FAMILIES = _params(variants=True)


@functools.cache
def tiny(cls):
    return _families().tiny_family(cls)


def _discrete(ms) -> bool:
    return isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)


def sample(pack_module, model, fam, seed=0):
    sampling = pack_module("noisecal_host.testing.sampling")
    ms = model.get_model_object("model_sampling")
    return sampling.ksample(
        model,
        fam.empty_latent(1),
        fam.conditioning(1),
        steps=STEPS,
        cfg=1.0,
        seed=seed,
        scheduler="karras" if _discrete(ms) else "simple",
    )


def capture(model):
    """A clone recording, per network call: its input, timestep and output, and the
    sigma, input and denoised estimate of apply_model."""
    seen = {"xc": [], "t": [], "v": [], "sigma": [], "x": [], "denoised": []}

    def hook(module, args, kwargs, output):
        seen["xc"].append(args[0].detach().float().clone())
        seen["t"].append(args[1].detach().float().clone())
        seen["v"].append(output.detach().float().clone())

    handle = model.model.diffusion_model.register_forward_hook(hook, with_kwargs=True)

    def wrapper(apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        seen["sigma"].append(args["timestep"].detach().clone())
        seen["x"].append(args["input"].detach().clone())
        seen["denoised"].append(out.detach().clone())
        return out

    patched = model.clone()
    patched.set_model_unet_function_wrapper(wrapper)
    return patched, seen, handle


def run_captured(pack_module, model, fam):
    patched, seen, handle = capture(model)
    try:
        out = sample(pack_module, patched, fam)
    finally:
        handle.remove()
    assert len(seen["t"]) == len(seen["sigma"]) >= STEPS
    return out, seen


def told(fam, sigma):
    """What the unpatched network receives at level `sigma`: timestep, then
    process_timestep (the host's own path)."""
    from noise_calibration.noisecal_host.family_support import told_values

    return told_values(fam.patcher, sigma).float()


def reaches(fam, t, sigma, level) -> bool:
    """The network got the level's conditioning, not the sampler's: equal to the
    plain model's at `level` (within one training step for integer-step
    families, where the pack adds the fractional step)."""
    expected = told(fam, level).reshape(t.shape)
    at_sigma = told(fam, sigma).reshape(t.shape)
    ms = fam.patcher.get_model_object("model_sampling")
    if _discrete(ms) and float(level.min()) < float(ms.sigma_min):
        # below the first training step no level can be told apart
        return bool((t - at_sigma).abs().max() <= 1.0)
    tol = 1.0 if _discrete(ms) else 1e-4 * max(1.0, float(expected.abs().max()))
    return bool((t - expected).abs().max() <= tol) and not torch.allclose(t, at_sigma)


def latent_hw(fam):
    return tuple(fam.spec.latent_hw)


def noiseshift_record(pack_module, fam, fn):
    return make_record(pack_module, fam.patcher, fn, latent=latent_hw(fam))


def correction_record(pack_module, fam, r):
    record = noiseshift_record(pack_module, fam, lambda s: s)
    sigmas = schedule_levels(fam.patcher)
    record["correction"] = {"method": "test", "sigmas": sigmas, "r": [r for _ in sigmas]}
    return pack_module("noisecal.calibration_record").validate(record)


def nodes(pack):
    m = pack.NODE_CLASS_MAPPINGS
    return (
        m["NoiseCalibrationNoiseShift"](),
        m["NoiseCalibrationNoiseLevelCorrection"](),
        m["NoiseCalibrationNoiseAwarenessGuidance"](),
    )


def support(pack_module, fam):
    return pack_module("noisecal_host.family_support").assess(fam.patcher)


def supported_or_refused(pack, pack_module, fam):
    """Skip (after checking the node refuses it clearly) where the pack does not
    support the family; return the nodes otherwise."""
    noiseshift, nlc, guidance = nodes(pack)
    errors = pack_module("noisecal.errors")
    try:
        pack_module("noisecal_host.model_info").parameterization_of(fam.patcher)
    except errors.CalibrationError as exc:
        with pytest.raises(errors.CalibrationError, match="is not supported"):
            noiseshift.apply(fam.patcher, 1.0, "pass through")
        pytest.skip(f"refused by the nodes: {exc}")
    found = support(pack_module, fam)
    if not found.reachable:
        record = noiseshift_record(pack_module, fam, lambda s: FACTOR * s)
        unsupported = pack_module("noisecal_host.family_support").UnsupportedFamily
        with pytest.raises(unsupported, match="cannot be used with"):
            noiseshift.apply(fam.patcher, 1.0, "error", calibration=[record])
        with pytest.raises(unsupported, match="cannot be used with"):
            guidance.apply(fam.patcher, 0.5, "offset", 1.0, 0.5, "constant", 1.0, 0.0)
        pytest.skip(f"refused by the nodes: {found.reason}")
    return noiseshift, nlc, guidance


@pytest.mark.parametrize("cls", FAMILIES)
def test_noiseshift_reaches_the_network_and_keeps_the_trajectory(pack, pack_module, cls):
    fam = tiny(cls)
    noiseshift, _, _ = supported_or_refused(pack, pack_module, fam)
    ms = fam.patcher.get_model_object("model_sampling")
    record = noiseshift_record(pack_module, fam, lambda s: FACTOR * s)
    (patched,) = noiseshift.apply(fam.patcher, 1.0, "error", calibration=[record])
    out, seen = run_captured(pack_module, patched, fam)
    assert torch.isfinite(out).all()
    shift_map = pack_module("noisecal.noiseshift").ShiftMap.from_records([record], [1.0])
    for t, v, sigma, x, denoised in zip(
        *(seen[k] for k in ("t", "v", "sigma", "x", "denoised")), strict=True
    ):
        level = shift_map(sigma)
        assert reaches(fam, t, sigma, level), (cls.__name__, t, told(fam, level))
        # the denoised estimate is formed with the trajectory's true sigma
        expected = ms.calculate_denoised(sigma, v, x)
        assert torch.allclose(denoised, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", FAMILIES)
def test_correction_moves_the_whole_evaluation(pack, pack_module, cls):
    fam = tiny(cls)
    _, nlc, _ = supported_or_refused(pack, pack_module, fam)
    ms = fam.patcher.get_model_object("model_sampling")
    record = correction_record(pack_module, fam, R)
    (patched,) = nlc.apply(fam.patcher, 1.0, 0.0, 1e6, "error", calibration=[record])
    out, seen = run_captured(pack_module, patched, fam)
    assert torch.isfinite(out).all()
    for xc, t, v, sigma, x, denoised in zip(
        *(seen[k] for k in ("xc", "t", "v", "sigma", "x", "denoised")), strict=True
    ):
        hat = (sigma.double() * (1 + R)).float()
        assert reaches(fam, t, sigma, hat)
        scaled = ms.calculate_input(hat, x).float()
        assert torch.allclose(xc[:, : scaled.shape[1]], scaled, atol=1e-5, rtol=1e-5)
        assert torch.allclose(denoised, ms.calculate_denoised(hat, v, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", ALL_FAMILIES)
def test_identity_is_bit_identical_and_each_node_samples(pack, pack_module, cls):
    fam = tiny(cls)
    noiseshift, nlc, guidance = supported_or_refused(pack, pack_module, fam)
    plain = sample(pack_module, fam.patcher, fam)
    identity = noiseshift_record(pack_module, fam, lambda s: s)
    (same,) = noiseshift.apply(fam.patcher, 1.0, "error", calibration=[identity])
    assert torch.equal(sample(pack_module, same, fam), plain)
    zero = correction_record(pack_module, fam, 0.0)
    (same,) = nlc.apply(fam.patcher, 1.0, 0.0, 1e6, "error", calibration=[zero])
    assert torch.equal(sample(pack_module, same, fam), plain)
    (guided,) = guidance.apply(fam.patcher, 0.8, "offset", 1.0, 0.5, "constant", 1.0, 0.0)
    out = sample(pack_module, guided, fam)
    assert torch.isfinite(out).all() and not torch.equal(out, plain)


def test_every_host_family_is_classified(pack_module):
    """A family this file does not know (a newer host) is named, not silently skipped."""
    fm = pack_module("noisecal_host.testing.family_models")
    unknown = [c.__name__ for c in fm.host_families() if fm.classify(c)[0] == "unknown"]
    assert not unknown, f"no tiny configuration for: {unknown}"


def test_rounded_timestep_warns_below_the_smallest_surviving_shift(
    pack, pack_module, monkeypatch, caplog
):
    """A process_timestep that casts to bf16 (ComfyUI 2026's MageFlow does) rounds
    small shifts away: the node says which and how small a shift survives; Apply,
    installed through the same installer, says it as NoiseShift does."""
    fm = pack_module("noisecal_host.testing.family_models")
    support_mod = pack_module("noisecal_host.family_support")
    fam = fm.tiny_family(comfy.supported_models.SD3)
    base_cls = type(fam.patcher.model)
    rounding = type(f"Rounding{base_cls.__name__}", (base_cls,), {})
    rounding.process_timestep = lambda self, timestep, **kw: timestep.to(torch.bfloat16)
    fam.patcher.model.__class__ = rounding
    found = support_mod.assess(fam.patcher)
    assert found.reachable and found.resolution is not None
    assert 2.0**-10 < found.resolution <= 2.0**-7  # bf16 keeps 8 significant bits
    noiseshift = nodes(pack)[0]
    small = noiseshift_record(pack_module, fam, lambda s: s * (1 - found.resolution / 8))
    large = noiseshift_record(pack_module, fam, lambda s: s * 0.9)
    notes: list = []
    noiseshift.apply(fam.patcher, 1.0, "error", calibration=[large])
    lost = support_mod.lost_shifts(fam.patcher, small)
    assert lost and not support_mod.lost_shifts(fam.patcher, large)
    with caplog.at_level("WARNING", logger="noise_calibration"):
        support_mod.check(fam.patcher, "NoiseShift", notes, [small])
    assert len(notes) == 1 and message_ids(caplog) == ["shifts-lost-to-rounding"]
    assert f"{found.resolution:.2%}" in notes[0]  # how small a shift survives
    m = pack.NODE_CLASS_MAPPINGS
    for name in ("NoiseCalibrationNoiseShift", "NoiseCalibrationApply"):
        for record, warned in ((small, 1), (large, 0)):
            caplog.clear()
            notes = []
            with caplog.at_level("WARNING", logger="noise_calibration"):
                m[name]().apply(fam.patcher, 1.0, "error", calibration=[record], notes=notes)
            assert message_ids(caplog) == ["shifts-lost-to-rounding"] * warned, name
            assert len(notes) == warned, name


def message_ids(caplog) -> list[str]:
    return [r.message_id for r in caplog.records if hasattr(r, "message_id")]


def test_refused_discrete_families_would_be_told_a_wrong_level(pack_module):
    """Why Stable Cascade is refused, measured: patched past the node's check, the
    network gets the pack's fractional-step offset added to a timestep in [0, 1]
    (far off, or NaN where the level leaves Stable Cascade's schedule)."""
    cls = getattr(comfy.supported_models, "Stable_Cascade_C", None)
    if cls is None:
        pytest.skip("no Stable Cascade on this host")
    fam = tiny(cls)
    level_patch = pack_module("noisecal_host.conditioning_level")
    patched = level_patch.patch_model(fam.patcher, lambda level, hw: FACTOR * level)
    _, seen = run_captured(pack_module, patched, fam)
    for t, sigma in zip(seen["t"], seen["sigma"], strict=True):
        assert not reaches(fam, t, sigma, FACTOR * sigma)
        error = (t - told(fam, FACTOR * sigma)).abs()
        assert not torch.isfinite(error).all() or float(error.max()) > 1.0  # t is in [0, 1]
