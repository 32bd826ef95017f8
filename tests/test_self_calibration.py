"""Self-calibration and reuse in the Calibrate node, on ComfyUI's own tiny models.

The model generates its calibration data at its native size; the set is cached
and a second resolution reuses it. Network calls are counted with a hook on
the diffusion network (rows per forward call), so "no generation the second
time" and "no evaluation when reusing" are measured, not assumed.
"""

import dataclasses
import hashlib
import json
import logging
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load, load_file, save_file

NATIVE = 64  # pixels: latent 8x8
GEN_STEPS = 3
COUNT = 4


@pytest.fixture
def calibrate_node(pack, tmp_path):
    store = pack.noisecal_host.folders.user_store(tmp_path)
    return pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](calibration_store=store)


def self_calibrate(node, model, size, seed=0, mode="reuse", **extra):
    widgets = (model, 2, "simple", "fast", COUNT, seed, size, size, "", COUNT)
    options = dict(
        mode=mode,
        data="self-generate",
        generation_steps=GEN_STEPS,
        native_width=NATIVE,
        native_height=NATIVE,
    )
    return node.calibrate(*widgets, **{**options, **extra})


def rows(pack_module, model, fn):
    """(fn's result, latents the diffusion network evaluated while it ran)."""
    with pack_module("noisecal_host.network_calls").network_calls(model) as calls:
        out = fn()
    return out, calls[0]


def test_self_calibration_writes_a_file_and_a_set_a_second_size_reuses(
    pack_module, calibrate_node, tiny_model, tmp_path
):
    model = tiny_model.patcher
    store = pack_module("noisecal_host.store")
    out, first = rows(pack_module, model, lambda: self_calibrate(calibrate_node, model, 32))
    (record,), path, _ = out["result"]
    assert store.load(path) == record and record["resolution"]["latent_height"] == 4
    generation = record["calibration_set"]["generation"]
    assert generation["width"] == NATIVE and generation["count"] == COUNT
    assert record["calibration_set"]["source"].startswith("self-generated (new)")
    (cached,) = (tmp_path / "generated").glob("*.safetensors")
    latents = load_file(str(cached))["latents"]
    assert latents.shape[:2] == (COUNT, model.model.latent_format.latent_channels)
    assert latents.shape[-2:] == (NATIVE // 8, NATIVE // 8) and torch.isfinite(latents).all()
    # generation: COUNT latents x GEN_STEPS Euler steps at cfg 1, one row each
    assert first == record["cost"]["network_evaluations"] + COUNT * GEN_STEPS
    out, second = rows(pack_module, model, lambda: self_calibrate(calibrate_node, model, 48))
    (other,), _, _ = out["result"]
    assert other["resolution"]["latent_height"] == 6
    assert other["calibration_set"]["source"].startswith("self-generated (cached)")
    assert second == other["cost"]["network_evaluations"]  # zero generation calls


def test_reuse_mode_evaluates_nothing_and_ignores_the_seed(pack_module, calibrate_node, tiny_sd3):
    model = tiny_sd3.patcher
    first = self_calibrate(calibrate_node, model, 32)
    out, evaluated = rows(pack_module, model, lambda: self_calibrate(calibrate_node, model, 32, 7))
    assert evaluated == 0
    assert out["result"][1] == first["result"][1]
    text = out["ui"]["text"][0]
    # the stored calibration, described as stored: not as data this run made
    assert text.startswith("reused the stored calibration ")
    assert "the stored calibration was made from self-generated: " in text
    assert "(new)" not in text and "(cached)" not in text
    assert "this run: no network evaluation" in text
    assert not text.endswith("\n") and "`" not in text
    _, redone = rows(
        pack_module, model, lambda: self_calibrate(calibrate_node, model, 32, 7, "recalibrate")
    )
    assert redone > 0
    # other settings are another calibration: more generation steps recalibrate
    _, changed = rows(
        pack_module, model, lambda: self_calibrate(calibrate_node, model, 32, generation_steps=4)
    )
    assert changed > 0


def test_ui_shows_summary_and_plot(pack_module, calibrate_node, tiny_sd3):
    out = self_calibrate(calibrate_node, tiny_sd3.patcher, 32)
    (text,) = out["ui"]["text"]
    assert text.startswith("wrote ") and "32x32 px" in text and "network evaluations" in text
    assert "one-step error" in text and f"{COUNT} latents" in text
    plot = out["result"][2]
    assert plot.ndim == 4 and plot.shape[-1] == 3
    # the plot for the node's panel (web/js), not the frontends' own (smaller) preview
    assert "images" not in out["ui"]
    try:
        import folder_paths  # noqa: F401  (a full ComfyUI: the plot is shown on the node)
    except ImportError:
        assert out["ui"]["noise_calibration_plot"] == []
    else:
        (image,) = out["ui"]["noise_calibration_plot"]
        assert image["type"] == "temp" and image["filename"].endswith(".png")
        assert (image["width"], image["height"]) == (plot.shape[2], plot.shape[1])


def test_a_corrupt_cached_set_is_generated_again(
    pack_module, calibrate_node, tiny_sd3, tmp_path, caplog
):
    model = tiny_sd3.patcher
    self_calibrate(calibrate_node, model, 32)
    (cached,) = (tmp_path / "generated").glob("*.safetensors")
    cached.write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        out = self_calibrate(calibrate_node, model, 32, mode="recalibrate")
    assert "unreadable" in caplog.text
    assert out["result"][0][0]["calibration_set"]["source"].startswith("self-generated (new)")
    assert load_file(str(cached))["latents"].shape[0] == COUNT


def test_self_generated_through_a_vae(pack_module, calibrate_node, tiny_unet):
    vae = pack_module("noisecal_host.testing.tiny_models").tiny_vae()
    out = self_calibrate(calibrate_node, tiny_unet.patcher, 32, vae=vae)
    record = out["result"][0][0]
    assert "through the VAE" in record["calibration_set"]["source"]
    assert record["resolution"]["latent_width"] == 4


def test_data_connected_without_data_is_a_clear_error(pack_module, calibrate_node, tiny_sd3):
    errors = pack_module("noisecal.errors")
    with pytest.raises(errors.CalibrationError, match="nothing is connected"):
        self_calibrate(calibrate_node, tiny_sd3.patcher, 32, data="connected")


def test_resize_latents_keeps_channel_statistics(pack_module):
    resize = pack_module("noisecal.resize")
    x = torch.randn(6, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 + 1
    out = resize.resize_latents(x, 8, 8)
    assert out.shape == (6, 3, 8, 8)  # center crop to square, then shrunk
    assert torch.allclose(out.std(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)), rtol=1e-4)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), x.mean(dim=(0, 2, 3)), atol=1e-4)
    plain = resize.center_crop_resize(x, 8, 8)
    assert plain.std() < x.std() * 0.8  # shrinking averages detail away: hence the rescale
    wide = resize.center_crop_resize(torch.arange(12.0).view(1, 1, 1, 12).expand(1, 1, 4, 12), 4, 4)
    assert torch.equal(wide[0, 0, 0], torch.tensor([4.0, 5.0, 6.0, 7.0]))  # centered crop


def test_band_limit_keeps_every_frequency_of_the_new_band(pack_module):
    """A cosine below the new Nyquist frequency survives a 4x shrink with its
    amplitude; area averaging damps it (to 0.73 near the top of the band), which
    is why the latent resize moved to the band limit."""
    resize = pack_module("noisecal.resize")

    def wave(k, n):  # k half-cycles across n pixels, sampled at pixel centres
        return torch.cos(math.pi * k * (torch.arange(n) + 0.5) / n)

    for k in (1, 3, 7):
        image = (wave(k, 32)[:, None] * wave(1, 32)[None, :]).view(1, 1, 32, 32)
        out = resize.band_limit(image, 8, 8)[0, 0]
        assert torch.allclose(out, wave(k, 8)[:, None] * wave(1, 8)[None, :], atol=1e-5)
    top = (wave(7, 32)[:, None] * torch.ones(1, 32)).view(1, 1, 32, 32)
    damped = torch.nn.functional.interpolate(top, size=(8, 8), mode="area")
    assert damped.abs().max() < 0.75
    with pytest.raises(ValueError, match="shrinks only"):
        resize.band_limit(top, 64, 64)


def test_empty_conditioning_node_samples_each_tiny_model(pack, pack_module, tiny_model):
    (cond,) = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationEmptyConditioning"]().condition(
        tiny_model.patcher
    )
    sampling = pack_module("noisecal_host.testing.sampling")
    latent = sampling.empty_latent(tiny_model.patcher, 4, 4)
    out = sampling.ksample(tiny_model.patcher, latent, cond, steps=2)
    assert out.shape == latent.shape and torch.isfinite(out).all()


def test_a_killed_cache_write_leaves_nothing_after_the_next_write(
    pack_module, calibrate_node, tiny_sd3, tmp_path
):
    stale = tmp_path / "generated" / ".tmp-999999999-dead.safetensors.part"  # no such process
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    self_calibrate(calibrate_node, tiny_sd3.patcher, 32)
    assert [p.suffix for p in (tmp_path / "generated").iterdir()] == [".safetensors"]


# --- the generated-set cache: used only when it is exactly this run's set ---


@pytest.fixture
def cache(pack_module, tiny_sd3, tmp_path):
    """A tiny SD3, its key, settings, a fresh generation and its written cache file."""
    sc = pack_module("noisecal_host.self_calibration")
    model = tiny_sd3.patcher
    key = pack_module("noisecal_host.fingerprint").checkpoint_key(model)
    settings = sc.GenerationSettings(
        NATIVE, NATIVE, COUNT, GEN_STEPS, 1.0, "euler", "simple", 0, ""
    )
    fresh, cached = sc.generated_set(model, key, settings, tmp_path)  # a fresh generation
    assert not cached
    path = sc.cache_path(tmp_path, key, settings)
    return SimpleNamespace(sc=sc, model=model, key=key, settings=settings, fresh=fresh, path=path)


def cached_set(pack_module, c, settings=None):
    """(latents, from the cache, network rows evaluated) of generated_set."""
    settings = settings or c.settings
    (latents, cached), calls = rows(
        pack_module,
        c.model,
        lambda: c.sc.generated_set(c.model, c.key, settings, c.path.parent.parent),
    )
    return latents, cached, calls


def network_calls(pack_module, model):
    """Counts the latents the diffusion network evaluates in a `with` block."""
    return pack_module("noisecal_host.network_calls").network_calls(model)


def forge(c, latents, consistent, **meta):
    """Rewrite the cache file with `latents`; metadata from the valid file, with `meta`
    over it; `consistent`: shape, dtype and checksum describe `latents` (a careful forger)."""
    with safe_open(str(c.path), "pt") as f:
        metadata = dict(f.metadata())
    if consistent:
        raw = latents.contiguous().view(torch.uint8).numpy().tobytes()
        metadata.update(
            shape=json.dumps(list(latents.shape)),
            dtype=str(latents.dtype).removeprefix("torch."),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    metadata.update(meta)
    save_file({"latents": latents.contiguous()}, str(c.path), metadata=metadata)


def assert_regenerated(pack_module, c, caplog, reason):
    """The next run generates afresh (logging the file and why), then reuses that."""
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        latents, cached, calls = cached_set(pack_module, c)
    assert not cached and calls == COUNT * GEN_STEPS
    assert torch.equal(latents, c.fresh)
    assert str(c.path) in caplog.text and "generating it again" in caplog.text
    assert reason in caplog.text, caplog.text
    again, cached, calls = cached_set(pack_module, c)
    assert cached and calls == 0 and torch.equal(again, c.fresh)


def test_a_valid_cached_set_is_reused_without_a_network_call(pack_module, cache):
    latents, cached, calls = cached_set(pack_module, cache)
    assert cached and calls == 0 and torch.equal(latents, cache.fresh)
    assert latents.dtype == torch.float32


TENSOR_PROBES = {
    # same bytes as the valid set (same checksum), another spatial size
    "spatial-size": (lambda x: x.reshape(COUNT, x.shape[1], 4, 16), "shape"),
    "int": (lambda x: (x * 100).to(torch.int64), "float32"),
    "bool": (lambda x: x > 0, "float32"),
    "fp16": (lambda x: x.to(torch.float16), "float32"),
    "all-zero": (torch.zeros_like, "only zeros"),
    "2-D": (lambda x: x.reshape(COUNT, -1), "shape"),
    "3-D": (lambda x: x.reshape(COUNT, x.shape[1], -1), "shape"),
    "5-D": (lambda x: x.unsqueeze(2), "shape"),
}


@pytest.mark.parametrize("consistent", [False, True], ids=["same-metadata", "forged-metadata"])
@pytest.mark.parametrize("probe", list(TENSOR_PROBES))
def test_a_cached_set_of_another_shape_dtype_or_zeros_is_generated_again(
    pack_module, cache, caplog, probe, consistent
):
    change, reason = TENSOR_PROBES[probe]
    forge(cache, change(cache.fresh), consistent)
    assert_regenerated(pack_module, cache, caplog, reason)


def test_a_cached_set_of_another_checkpoint_is_generated_again(pack_module, cache, caplog):
    forge(cache, cache.fresh, True, checkpoint="label:another")
    assert_regenerated(pack_module, cache, caplog, "differs in its checkpoint")


def test_a_cached_set_of_another_seed_is_generated_again(pack_module, cache, caplog):
    seeded = dataclasses.replace(cache.settings, seed=1)
    forge(cache, cache.fresh, True, settings=json.dumps(dataclasses.asdict(seeded), sort_keys=True))
    assert_regenerated(pack_module, cache, caplog, "differs in its settings")


def test_a_cached_set_whose_settings_contradict_its_name_is_generated_again(
    pack_module, cache, caplog
):
    """Another settings' real, valid file under this settings' name."""
    other = dataclasses.replace(cache.settings, steps=GEN_STEPS + 1)
    cached_set(pack_module, cache, other)
    cache.path.write_bytes(
        cache.sc.cache_path(cache.path.parent.parent, cache.key, other).read_bytes()
    )
    assert_regenerated(pack_module, cache, caplog, "differs in its settings")


@pytest.mark.parametrize("where", ["tensor", "metadata"])
def test_bit_flips_that_still_parse_are_generated_again(pack_module, cache, caplog, where):
    data = bytearray(cache.path.read_bytes())
    if where == "tensor":
        data[-3] ^= 0x01  # a mantissa bit of the last value: still a finite float
        reason = "checksum"
    else:
        i = data.index(b'\\"seed\\": 0')  # the settings JSON inside the header JSON
        data[i + len(b'\\"seed\\": ')] ^= 0x01  # "0" -> "1": still valid JSON
        reason = "differs in its settings"
    cache.path.write_bytes(bytes(data))
    assert load(bytes(data))["latents"].shape == cache.fresh.shape  # it still parses
    assert_regenerated(pack_module, cache, caplog, reason)


def test_a_cache_file_of_an_older_version_is_generated_again(pack_module, cache, caplog):
    """Files without the description (only the settings) were written before it."""
    old = {"settings": json.dumps(dataclasses.asdict(cache.settings))}
    save_file({"latents": cache.fresh}, str(cache.path), metadata=old)
    assert_regenerated(pack_module, cache, caplog, "older version")


def test_a_cache_path_that_is_a_folder_is_the_packs_error(pack_module, cache, calibrate_node):
    errors = pack_module("noisecal.errors")
    cache.path.unlink()
    cache.path.mkdir()
    with network_calls(pack_module, cache.model) as calls:
        with pytest.raises(errors.CalibrationError, match="is a folder, not a file"):
            cached_set(pack_module, cache)
    assert calls[0] == 0
    # through the node: refused before any network call
    self_calibrate(calibrate_node, cache.model, 32)
    (node_path,) = [p for p in cache.path.parent.glob("*.safetensors") if p.is_file()]
    node_path.unlink()
    node_path.mkdir()
    with network_calls(pack_module, cache.model) as calls:
        with pytest.raises(errors.CalibrationError, match="is a folder, not a file"):
            self_calibrate(calibrate_node, cache.model, 32, mode="recalibrate")
    assert calls[0] == 0


def test_a_cache_folder_that_is_a_file_is_the_packs_error(pack_module, cache, calibrate_node):
    errors = pack_module("noisecal.errors")
    folder = cache.path.parent
    shutil.rmtree(folder)
    folder.write_bytes(b"a file where the cache folder goes")
    with network_calls(pack_module, cache.model) as calls:
        with pytest.raises(errors.CalibrationError, match="is a file, not a folder"):
            cached_set(pack_module, cache)
        with pytest.raises(errors.CalibrationError, match="is a file, not a folder"):
            self_calibrate(calibrate_node, cache.model, 32)
    assert calls[0] == 0
