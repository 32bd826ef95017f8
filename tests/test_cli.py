"""The headless command line, run as a user would (a separate process)."""

import json
import subprocess
import sys
from pathlib import Path

import safetensors.torch
import torch

from noise_calibration.noisecal import calibration_record

ROOT = Path(__file__).resolve().parent.parent


# The CLI's main in a fresh interpreter holding the pack's package but never its
# node layer (importing it fails), and checking that os.environ is left as it was.
WITHOUT_NODES = """
import importlib, importlib.abc, os, sys, types
from noisecal_host.host import ensure_host
from noisecal_host.pack_loader import PACK_NAME, PACK_ROOT

ensure_host(cpu=True)
pack = types.ModuleType(PACK_NAME)  # the package without its __init__ (which loads the nodes)
pack.__path__ = [str(PACK_ROOT)]
sys.modules[PACK_NAME] = pack


class NoNodes(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == PACK_NAME + ".nodes" or name.startswith(PACK_NAME + ".nodes."):
            raise ImportError("the command line imported the node layer: " + name)


sys.meta_path.insert(0, NoNodes())
os.environ.pop("NOISE_CALIBRATION_DIR", None)
before = dict(os.environ)
code = importlib.import_module(PACK_NAME + ".noisecal_host.cli").main(sys.argv[1:])
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
assert not changed, f"the command line changed os.environ: {changed}"
sys.exit(code)
"""


def cli(*args, cwd=ROOT, without_nodes=False):
    start = ["-c", WITHOUT_NODES] if without_nodes else ["-m", "noisecal_host"]
    out = subprocess.run(
        [sys.executable, *start, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_calibrate_a_diffusion_model_file(pack_module, tmp_path):
    tiny = pack_module("noisecal_host.testing.tiny_models").tiny_sd3(seed=3)
    weights = tmp_path / "tiny_sd3.safetensors"
    state = {k: v.contiguous() for k, v in tiny.patcher.model.diffusion_model.state_dict().items()}
    safetensors.torch.save_file(state, str(weights))
    latents = tmp_path / "latents.safetensors"
    safetensors.torch.save_file({"latents": torch.randn(4, 16, 8, 8)}, str(latents))
    out_dir = tmp_path / "cal"
    stdout = cli(
        "calibrate",
        "--model",
        str(weights),
        "--latents",
        str(latents),
        "--steps",
        "4",
        "--samples",
        "4",
        "--max-batch",
        "16",
        "--correction",
        "euler",
        "--out-dir",
        str(out_dir),
    )
    files = sorted(out_dir.glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("SD3-") and "__8x8" in files[0].name
    record = json.loads(files[0].read_text())
    assert record["parameterization"] == "flow" and len(record["sigmas"]) == 4
    assert record["calibration_set"]["source"] == "latents file latents.safetensors"
    assert f"wrote {files[0]}" in stdout and files[0].with_suffix(".png").is_file()
    assert len(record["correction"]["r"]) == 4 and "correction table (euler, alone)" in stdout
    # the file loads as the same checkpoint: the key matches the in-process fingerprint
    key = pack_module("noisecal_host.fingerprint").checkpoint_key(tiny.patcher)
    assert record["checkpoint"]["fingerprint"] == key.fingerprint


def test_the_command_line_and_the_node_write_the_same_record(pack, pack_module, tmp_path):
    """One pipeline: the same model file, latents and settings give the same record
    through `calibrate` and through the Calibrate node (held-out check included)."""
    import comfy.sd

    tiny = pack_module("noisecal_host.testing.tiny_models").tiny_sd3(seed=5)
    weights = tmp_path / "tiny_sd3.safetensors"
    state = {k: v.contiguous() for k, v in tiny.patcher.model.diffusion_model.state_dict().items()}
    safetensors.torch.save_file(state, str(weights))
    samples = torch.randn(8, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    latents = tmp_path / "latents.safetensors"
    safetensors.torch.save_file({"latents": samples}, str(latents))
    flags = ["--steps", "3", "--samples", "8", "--correction", "euler"]
    cli(
        "calibrate",
        "--model",
        str(weights),
        "--latents",
        str(latents),
        *flags,
        "--out-dir",
        str(tmp_path / "cli"),
    )
    (written,) = (tmp_path / "cli").glob("*.json")
    from_cli = json.loads(written.read_text())
    store = pack_module("noisecal_host.store").CalibrationStore(
        [tmp_path / "node"], tmp_path / "node"
    )
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](calibration_store=store)
    model = comfy.sd.load_diffusion_model(str(weights))
    out = node.calibrate(
        model,
        3,
        "simple",
        "lean",
        8,
        0,
        512,
        512,
        "",
        32,
        latent={"samples": samples},
        correction="euler",
    )
    from_node = json.loads(json.dumps(out["result"][0][0]))
    assert from_node["check"]["held_out"] == 4 and from_cli["check"]
    for record in (from_cli, from_node):
        record.pop("created_at")
        record["cost"].pop("wall_time_s")
        for phase in record["cost"]["phases"].values():
            phase.pop("seconds")
    assert from_cli["calibration_set"].pop("source") == "latents file latents.safetensors"
    assert from_node["calibration_set"].pop("source") == "LATENT input"
    assert from_cli == from_node


def _fd_table(stdout, method):
    """The two rows of the demo's table whose header has 'FD <method>' (Apply, NoiseShift)."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if f"FD {method} " in line)
    return [line.split() for line in lines[header + 2 : header + 4]]


def test_demo_main_job_prints_the_fd_table(tmp_path):
    """The testbed demo, run without the node layer and leaving os.environ alone."""
    stdout = cli(
        "--out",
        str(tmp_path),
        "demo",
        "--model",
        "testbed",
        "--train-res",
        "16",
        "--samples",
        "8",
        "--eval-samples",
        "32",
        "--steps",
        "8",
        without_nodes=True,
    )
    rows = _fd_table(stdout, "NoiseShift")
    assert [row[0] for row in rows] == ["16", "8"]
    plain, shifted = float(rows[1][1]), float(rows[1][2])
    assert shifted < plain  # NoiseShift helps at M/2 even in this small run
    assert (tmp_path / "demo" / "calibration_N8.png").is_file()
    assert "FD Apply" not in stdout  # the Calibrate + Apply table is the reference's
    # the calibrations went to the store the demo names, and NoiseShift found them there
    cal = sorted((tmp_path / "demo" / "noiseshift_calibrations").glob("*.json"))
    assert [p.name.split("__")[1] for p in cal] == ["16x16.json", "8x8.json"]


def test_the_no_nodes_harness_catches_a_node_import(tmp_path):
    """The check above is real: importing the node layer under it fails."""
    script = WITHOUT_NODES.replace(
        "code = importlib", "importlib.import_module(PACK_NAME + '.nodes')\ncode = importlib"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode != 0 and "imported the node layer" in out.stderr


def test_demo_default_is_the_shipped_reference_model(pack_module, tmp_path):
    """The main job's default: the trained SD3 reference at M = 32 through the Calibrate
    node's pipeline (self-generated data, held-out check) and Apply, then NoiseShift
    alone; small counts, run without the node layer."""
    from PIL import Image

    stdout = cli(
        "--out",
        str(tmp_path),
        "demo",
        "--samples",
        "8",
        "--eval-samples",
        "6",
        "--steps",
        "4",
        without_nodes=True,
    )
    assert "sd3_gaussian_field_m32.safetensors" in stdout
    assert "self-generated at the trained 256x256 px" in stdout
    rows = _fd_table(stdout, "Apply")
    assert [row[0] for row in rows] == ["16", "32"]
    fds = [[float(v) for v in row[1:4]] for row in rows]  # plain, Apply, native
    assert all(0 < fd < 10 for row in fds for fd in row)
    assert fds[0][1] < fds[0][0]  # Apply helps at M/2 even with 4 steps
    # the column of what Apply applied: the record's recommendation, from its check
    records = [
        json.loads(p.read_text())
        for p in sorted((tmp_path / "demo" / "calibrations").glob("*.json"))
    ]
    assert [r["resolution"]["latent_height"] for r in records] == [16, 32]
    for row, record in zip(rows, records, strict=True):
        assert record["check"]["held_out"] > 0 and record["correction"] is None
        assert "self-generated" in record["calibration_set"]["source"]
        assert row[-1] == calibration_record.recommendation(record)["name"]
    shifted = _fd_table(stdout, "NoiseShift")
    assert [row[0] for row in shifted] == ["32", "16"]
    assert [row[1] for row in shifted] == [row[1] for row in reversed(rows)]  # one plain cell
    cal = sorted((tmp_path / "demo" / "noiseshift_calibrations").glob("*.json"))
    assert [p.name.split("__")[1] for p in cal] == ["16x16.json", "32x32.json"]
    assert all(p.name.startswith("SD3-") for p in cal)
    assert (tmp_path / "demo" / "calibration_N16.png").is_file()
    assert (tmp_path / "demo" / "calibration_apply_N16.png").is_file()
    # the picture: plain, Apply, native and true, 6 samples each, at N = 16
    pictures = pack_module("noisecal_host.demo_pictures")
    expected = pictures.grid_size(4, 6, 16, pictures.REFERENCE_GRID_SCALE)
    with Image.open(tmp_path / "demo" / "reference_N16.png") as image:
        assert image.size == expected and image.mode == "RGB"


def test_demo_without_the_reference_model_says_why(pack_module, tmp_path):
    """A registry install leaves the reference model out: a clear message, no traceback."""
    import pytest

    demo_models = pack_module("noisecal_host.demo_models")
    with pytest.raises(SystemExit, match="not in this install.*--model testbed"):
        demo_models.load_reference(tmp_path / "missing.safetensors")


def test_demo_dead_leaves_writes_the_sample_picture(pack_module, tmp_path):
    """demo --model dead-leaves, small: the Apply calibration with its check, the table
    and a picture of 5 rows (plain, NoiseShift, Apply, native, true) of 6 samples."""
    from PIL import Image

    stdout = cli(
        "--out",
        str(tmp_path),
        "demo",
        "--model",
        "dead-leaves",
        "--samples",
        "8",
        "--eval-samples",
        "6",
        "--steps",
        "3",
        without_nodes=True,
    )
    assert "sd3_dead_leaves_m32.safetensors" in stdout and "Apply recommends" in stdout
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "patch SWD" in line)
    rows = [line.split() for line in lines[header + 2 : header + 7]]
    assert [row[0] for row in rows] == ["plain", "NoiseShift", "Apply:", "native", "true"]
    assert all(0 < float(v) < 10 for row in rows for v in row[-5:])
    record = json.loads(
        next((tmp_path / "demo" / "calibrations").glob("*__16x16.json")).read_text()
    )
    held = pack_module("noisecal.held_out_check").split(record["calibration_set"]["count"])[1]
    assert (
        record["check"]["held_out"] == held
        and (record["correction"] or record["correction_joint"])["sampler"] == "euler"
    )
    picture = tmp_path / "demo" / "dead_leaves_N16.png"
    expected = pack_module("noisecal_host.demo_pictures").grid_size(5, 6, 32)
    with Image.open(picture) as image:
        assert image.size == expected and image.mode == "RGB"
