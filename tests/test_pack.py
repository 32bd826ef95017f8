"""The pack as ComfyUI and ComfyUI-Manager see it."""

import json
import subprocess
import sys
from pathlib import Path

import tomllib

from noise_calibration import noisecal

ROOT = Path(__file__).resolve().parent.parent


def test_imports_without_comfyui(tmp_path):
    # a fresh interpreter where no comfy package can be found
    code = (
        "import sys, importlib.util\n"
        "assert importlib.util.find_spec('comfy') is None, 'comfy is importable here'\n"
        "from noisecal_host.pack_loader import load_pack\n"
        "pack = load_pack()\n"
        "assert pack.NODE_CLASS_MAPPINGS == {} and pack.WEB_DIRECTORY == './web'\n"
        "assert not any(m == 'comfy' or m.startswith('comfy.') for m in sys.modules)\n"
        "import noise_calibration.noisecal.store, noise_calibration.noisecal.testing.testbed\n"
        "assert 'comfy' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_node_mappings_load_with_host(pack):
    assert isinstance(pack.NODE_CLASS_MAPPINGS, dict)
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) <= set(pack.NODE_CLASS_MAPPINGS)
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("NoiseCalibration"), node_id
        assert node_id != "NAG"
        assert getattr(cls, "DESCRIPTION", ""), f"{node_id} has no DESCRIPTION"
        inputs = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, spec in inputs.get(group, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_pyproject_and_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["name"] == "noise-calibration"
    assert project["version"] == noisecal.__version__
    assert (ROOT / project["license"]["file"]).is_file()
    assert project["requires-python"] and project["urls"]
    assert {"PublisherId", "DisplayName", "Icon"} <= set(meta["tool"]["comfy"])
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip().lower()
        assert not name.startswith("torch"), "torch comes from the host, never from us"


def test_example_workflows_are_json():
    for path in (ROOT / "example_workflows").glob("*.json"):
        json.loads(path.read_text())
