"""The texts users read: one wording for each fact, plain text in the GUI (toasts and
node text without markdown backticks or trailing newlines), toast titles that name
the pack once. The sidebar tab's numbers against the node's: tests/test_routes.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from noise_calibration.noisecal import calibration_record, calibration_summary, size_lookup
from noise_calibration.noisecal.checkpoint_key import CheckpointKey
from noise_calibration.noisecal_host import user_messages

KEY = CheckpointKey("ab" * 32, "SD3", "SD3", "texts")
SCRIPT = Path(__file__).resolve().parent.parent / "web" / "js" / "noise_calibration.js"
SOURCE = (
    "self-generated (new): 8 generated at 256x256 (8 steps, euler/simple, cfg 1, seed 0), as is"
)


def check(recommendation, plain=0.009609):
    candidates = {
        "plain": {
            "noiseshift": 0.0,
            "correction": 0.0,
            "score": plain,
            "gain": 0.0,
            "gain_noise": 0.0,
        },
        "noiseshift@1": {
            "noiseshift": 1.0,
            "correction": 0.0,
            "score": 0.0123,
            "gain": plain - 0.0123,
            "gain_noise": 0.001,
        },
    }
    return {
        "method": "spectral-fd",
        "held_out": 4,
        "candidates": candidates,
        "recommendation": recommendation,
    }


def record(source=SOURCE, recommendation=None):
    sigmas = [1.0, 0.75, 0.5, 0.25]
    return calibration_record.validate(
        calibration_record.make_record(
            key=KEY,
            image_size=(128, 128),
            latent_size=(16, 16),
            parameterization="flow",
            method="noiseshift-fast",
            method_params={},
            sigmas=sigmas,
            sigma_hat=[s * 0.9 for s in sigmas],
            calibration_set={"count": 8, "source": source, "seed": 0},
            error_before=[0.03, 0.03, 0.03, 0.023],
            error_after=[0.03, 0.03, 0.03, 0.021],
            network_evaluations=96,
            wall_time_s=1.5,
            check=check(recommendation) if recommendation else None,
        )
    )


def test_a_reused_calibration_is_described_as_stored():
    text = calibration_summary.summary(
        record(), "/x/c.json", reused=True, data=SOURCE, evaluations=0, seconds=0.1
    )
    assert text.startswith("reused the stored calibration /x/c.json\n")
    assert "(new)" not in text and "(cached)" not in text
    assert "the stored calibration was made from self-generated: 8 generated at 256x256" in text
    assert "this run: no network evaluation" in text


def test_a_new_calibration_keeps_its_origin():
    text = calibration_summary.summary(
        record(), "/x/c.json", reused=False, data=SOURCE, evaluations=5, seconds=0.1
    )
    assert text.startswith("wrote /x/c.json\n") and "latents: self-generated (new): " in text
    assert calibration_summary.stored_source("LATENT input") == "LATENT input"
    assert calibration_summary.stored_source(SOURCE.replace("(new)", "(cached)")).startswith(
        "self-generated: 8 generated"
    )


def test_the_one_step_error_is_summed_over_steps():
    error = calibration_summary.one_step_error(record())
    assert error["before"] == pytest.approx(0.113) and error["after"] == pytest.approx(0.111)
    text = calibration_summary.summary(
        record(), None, reused=False, data="x", evaluations=1, seconds=1
    )
    assert "one-step error 0.113 -> 0.111 (-2%)" in text


def test_a_plain_recommendation_names_plain_once():
    text = calibration_summary.summary(
        record(recommendation="plain"), None, reused=False, data="x", evaluations=1, seconds=1
    )
    line = next(line for line in text.splitlines() if line.startswith("held-out check"))
    assert line.count("plain 0.009609") == 1, line
    assert line.endswith("; Apply uses plain")
    text = calibration_summary.summary(
        record(recommendation="noiseshift@1"),
        None,
        reused=False,
        data="x",
        evaluations=1,
        seconds=1,
    )
    assert "plain 0.009609, noiseshift@1 0.0123; Apply uses noiseshift@1" in text


def test_gui_text_is_plain():
    assert (
        user_messages.gui_text("run `python -m x calibrate` now\n")
        == "run python -m x calibrate now"
    )
    notes = []
    user_messages.note(notes, user_messages.PAIR, "see `this`\n")
    assert notes == ["see this"]
    message = str(size_lookup.not_found(KEY, (16, 16), [(8, 8)]))
    assert "`" not in message and not message.endswith("\n")
    assert "python -m noisecal_host calibrate" in message


def _js_function(name: str) -> str:
    source = SCRIPT.read_text()
    match = re.search(rf"^function {name}\(.*?^}}\n", source, re.S | re.M)
    assert match, name
    return match.group(0)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_toast_titles_name_the_pack_once():
    program = (
        'const PACK_NAME = "Noise Calibration";\n'
        + _js_function("toastTitle")
        + _js_function("plainText")
        + "console.log(JSON.stringify(["
        'toastTitle("Noise Calibration: Apply (node 4)"), toastTitle("KSampler (node 3)"), '
        'plainText("run `python -m x`\\n")]));'
    )
    out = subprocess.run(["node", "-e", program], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [
        "Noise Calibration: Apply (node 4)",
        "Noise Calibration: KSampler (node 3)",
        "run python -m x",
    ]
