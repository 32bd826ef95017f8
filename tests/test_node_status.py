"""What the nodes tell the web extension: the calibrated sizes in their ui output
(noisecal_host/calibrations.py) and the warnings sent to the frontend once per
prompt, node and message id (noisecal_host/user_messages.py)."""

from __future__ import annotations

import sys
import types

import comfy.model_sampling
import comfy.samplers
import pytest

from noise_calibration.noisecal import calibration_record


@pytest.fixture
def cal_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISE_CALIBRATION_DIR", str(tmp_path))
    return tmp_path


def save_record(pack_module, patcher, latent, folder, correction=False):
    store = pack_module("noisecal_host.store")
    fingerprint = pack_module("noisecal_host.fingerprint")
    ms = patcher.get_model_object("model_sampling")
    discrete = isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
    sigmas = comfy.samplers.calculate_sigmas(ms, "karras" if discrete else "simple", 8)
    sigmas = [float(s) for s in sigmas if s > 0]
    record = calibration_record.make_record(
        key=fingerprint.checkpoint_key(patcher),
        image_size=(latent[1] * 8, latent[0] * 8),
        latent_size=latent,
        parameterization=pack_module("noisecal_host.model_info").parameterization_of(patcher),
        method="test",
        method_params={},
        sigmas=sigmas,
        sigma_hat=[s * 0.9 for s in sigmas],
        calibration_set={"count": 1, "source": "test", "seed": 0},
        correction={"method": "test", "sigmas": sigmas, "r": [0.0] * len(sigmas)}
        if correction
        else None,
    )
    store.save(record, folder)


def test_the_nodes_list_the_sizes_calibrated_for_their_checkpoint(
    pack, pack_module, tiny_sd3, cal_dir
):
    save_record(pack_module, tiny_sd3.patcher, (8, 8), cal_dir)
    save_record(pack_module, tiny_sd3.patcher, (16, 8), cal_dir, correction=True)
    key = pack_module("noisecal_host.calibrations").UI_KEY
    m = pack.NODE_CLASS_MAPPINGS
    common = {"model": tiny_sd3.patcher, "strength": 1.0, "if_missing": "error", "label": ""}
    shift = m["NoiseCalibrationNoiseShift"]().run(**common)["ui"][key][0]
    assert [s["latent"] for s in shift["sizes"]] == [[8, 8], [16, 8]]
    assert shift["sizes"][1]["image"] == [64, 128] and shift["sizes"][1]["correction"]
    assert "SD3" in shift["checkpoint"]
    nlc = m["NoiseCalibrationNoiseLevelCorrection"]().run(
        **common, sigma_min=0.0, sigma_max=1000.0
    )["ui"][key][0]
    assert [s["latent"] for s in nlc["sizes"]] == [[16, 8]]  # only the size with a table
    applied = m["NoiseCalibrationApply"]().run(**common)["ui"][key][0]
    assert [s["recommendation"] for s in applied["sizes"]] == ["noiseshift@1"] * 2
    other = {**common, "label": "nothing here", "if_missing": "pass through"}
    assert m["NoiseCalibrationNoiseShift"]().run(**other)["ui"][key][0]["sizes"] == []


class FakeServer:
    def __init__(self):
        self.sent = []
        self.client_id = "client-1"
        self.last_prompt_id = None

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data, sid))


@pytest.fixture
def server(monkeypatch, pack_module):
    fake = FakeServer()
    module = types.ModuleType("server")
    module.PromptServer = type("PromptServer", (), {"instance": fake})
    monkeypatch.setitem(sys.modules, "server", module)
    messages = pack_module("noisecal_host.user_messages")
    context = {"now": ("prompt-1", "7")}
    monkeypatch.setattr(messages, "executing", lambda: context["now"])
    return fake, messages, context


def test_a_warning_is_sent_once_per_prompt_and_node(server):
    fake, messages, context = server
    for _ in range(5):
        messages.warn(messages.PASS_THROUGH, "NoiseShift passes through: no calibration")
    # the same message in other words (the sampler's, for one size) is the same message
    messages.warn(messages.PASS_THROUGH, "NoiseShift passes through: no calibration at 9x9")
    assert len(fake.sent) == 1
    event, data, sid = fake.sent[0]
    assert event == messages.EVENT and sid == "client-1" and data["id"] == messages.PASS_THROUGH
    assert data["node"] == "7" and data["prompt_id"] == "prompt-1" and data["level"] == "warning"
    messages.warn(messages.PAIR, "NoiseShift passes through: no calibration")  # another id
    context["now"] = ("prompt-1", "9")
    messages.warn(messages.PASS_THROUGH, "NoiseShift passes through: no calibration")
    context["now"] = ("prompt-2", "7")
    messages.warn(messages.PASS_THROUGH, "NoiseShift passes through: no calibration")
    assert [(d["prompt_id"], d["node"], d["id"]) for _, d, _ in fake.sent] == [
        ("prompt-1", "7", messages.PASS_THROUGH),
        ("prompt-1", "7", messages.PAIR),
        ("prompt-1", "9", messages.PASS_THROUGH),
        ("prompt-2", "7", messages.PASS_THROUGH),
    ]


def test_every_message_id_is_listed(server):
    fake, messages, _ = server
    with pytest.raises(ValueError, match="unknown message id"):
        messages.warn("passes through", "NoiseShift passes through: no calibration")
    assert not fake.sent


def test_a_sampling_time_warning_names_the_node_that_built_the_patch(server):
    fake, messages, context = server
    context["now"] = ("prompt-1", "4")  # the NoiseShift node builds its patch
    warn = messages.warner(what="NoiseShift")
    context["now"] = ("prompt-1", "12")  # the sampler runs it, step after step
    for _ in range(20):
        warn(messages.PASS_THROUGH, "NoiseShift passes through: latent 9x9")
    assert [(d["node"], d["what"]) for _, d, _ in fake.sent] == [("4", "NoiseShift")]


def test_without_a_server_a_warning_is_only_logged(pack_module, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "server", None)  # import server -> ImportError
    messages = pack_module("noisecal_host.user_messages")
    with caplog.at_level("WARNING", logger="noise_calibration"):
        assert messages.send(messages.PAIR, "text") is False
        messages.warn(messages.PAIR, "a warning")
    assert "a warning" in caplog.text
    assert [r.message_id for r in caplog.records] == [messages.PAIR]
