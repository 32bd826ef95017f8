"""The pack as ComfyUI and ComfyUI-Manager see it."""

import json
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest
import tomllib
from PIL import Image

from noise_calibration import noisecal
from noise_calibration.noisecal import errors

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
        "import noise_calibration.noisecal.calibration_record, noise_calibration.noisecal.testing.testbed\n"
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
    comfy = meta["tool"]["comfy"]
    assert {"PublisherId", "DisplayName", "Icon", "Banner", "requires-comfyui"} <= set(comfy)
    # the registry reads requires-comfyui from [tool.comfy]; 0.3.4 is the oldest host tested
    assert comfy["requires-comfyui"] == ">=0.3.4"
    # images are served from the repository: each URL names a file that is in it
    raw = "https://raw.githubusercontent.com/noise-calibration/noise-calibration/main/"
    for key in ("Icon", "Banner"):
        assert comfy[key].startswith(raw), key
        assert (ROOT / comfy[key].removeprefix(raw)).is_file(), comfy[key]
    with Image.open(ROOT / comfy["Banner"].removeprefix(raw)) as banner:
        assert banner.width * 9 == banner.height * 21, "the registry's banner is 21:9"
    # only the values the registry accepts (comfy-cli drops the whole group otherwise)
    classifiers = project["classifiers"]
    assert "Operating System :: OS Independent" in classifiers
    accelerators = {c for c in classifiers if c.startswith("Environment ::")}
    assert accelerators and accelerators <= {
        "Environment :: GPU :: NVIDIA CUDA",
        "Environment :: GPU :: AMD ROCm",
        "Environment :: GPU :: Intel Arc",
        "Environment :: NPU :: Huawei Ascend",
        "Environment :: GPU :: Apple Metal",
    }
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip().lower()
        assert not name.startswith("torch"), "torch comes from the host, never from us"


def test_example_workflows_are_json():
    for path in (ROOT / "example_workflows").glob("*.json"):
        json.loads(path.read_text())


def _registry_archive():
    """(shipped, left out): the git-tracked files split as `comfy node publish` splits
    them, by the gitignore patterns of .comfyignore."""
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the registry packs git-tracked files")
    tracked = set(out.stdout.splitlines()) | {".comfyignore"}
    tracked = sorted(f for f in tracked if (ROOT / f).is_file())
    lines = (ROOT / ".comfyignore").read_text().splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(
        line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
    )
    left_out = [f for f in tracked if spec.match_file(f)]
    return [f for f in tracked if f not in set(left_out)], left_out


def test_registry_archive_leaves_out_development_files():
    shipped, left_out = _registry_archive()
    for prefix in ("bench/", "tests/", "tools/", "docs/results-", ".ci/", "scripts/"):
        assert not [f for f in shipped if f.startswith(prefix)], prefix
        assert [f for f in left_out if f.startswith(prefix)], f"{prefix}: nothing tracked?"
    # of the reference networks only the one the first example workflow loads
    example = ["models/reference/sd3_dead_leaves_m32.json"]
    example.append("models/reference/sd3_dead_leaves_m32.safetensors")
    assert [f for f in shipped if f.startswith("models/reference/")] == example
    assert "requirements-dev.txt" not in shipped


def test_registry_archive_keeps_what_the_pack_needs():
    shipped, left_out = _registry_archive()
    for name in ("__init__.py", "requirements.txt", "pyproject.toml", "LICENSE", "README.md"):
        assert name in shipped, name
    # every tracked file of the folders the nodes import or ComfyUI serves ships
    for folder in (
        "nodes/",
        "noisecal/",
        "noisecal_host/",
        "web/",
        "example_workflows/",
        "calibration_data/",
    ):
        assert [f for f in shipped if f.startswith(folder)], folder
        assert not [f for f in left_out if f.startswith(folder)], folder
    # no Python module outside those folders: nothing the nodes import is left behind
    runtime = ("nodes/", "noisecal/", "noisecal_host/")
    stray = [f for f in shipped if f.endswith(".py") and not f.startswith(runtime)]
    assert stray == ["__init__.py"], stray


def test_pack_errors_have_a_short_type_name(pack_module):
    """ComfyUI prints an error's type as module + name, and names a pack's modules
    by their file path: the pack's errors must not carry that path."""
    pack_errors = (
        errors.CalibrationError,
        errors.CalibrationNotFound,
        errors.InvalidInput,
        pack_module("noisecal_host.dropped_patch").PatchDropped,
    )
    for error in pack_errors:
        assert f"{error.__module__}.{error.__qualname__}" == f"noise_calibration.{error.__name__}"
    assert issubclass(errors.InvalidInput, ValueError)


def test_the_reference_networks_examples_load_ship():
    """A registry install runs every example that loads a reference network."""
    shipped, _ = _registry_archive()
    for path in (ROOT / "example_workflows").glob("*.json"):
        for node in json.loads(path.read_text())["nodes"]:
            if node["type"] == "NoiseCalibrationLoadReference":
                name = Path(node["widgets_values"][0])
                assert f"models/reference/{name}" in shipped, path.name
                assert f"models/reference/{name.stem}.json" in shipped, path.name
