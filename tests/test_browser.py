"""The web extension in a real browser: headless Chromium (playwright-core) against a
ComfyUI server of COMFYUI_PATH with this pack.

The server starts on a free loopback port in a temporary --base-directory holding
the pack (custom_nodes/noise-calibration) and the reference model (models/unet).
From the page, a Calibrate run of the reference model (self-generated data, label
"browser-test"); then the Noise calibrations tab must list it, filter by its
checkpoint, show its plot, and a NoiseShift node sampled with it must show the
calibrated size; a NoiseShift on a label with no calibration must produce a toast
naming the node (pass through: the pack's warning; error: the pack's error); and
the tab deletes the file after its confirmation. Screenshots and result.json go to
out/browser/ (BROWSER_ARTIFACTS to change it).

Each test runs once per frontend: the server's own (its pinned
comfyui-frontend-package, classic canvas) and every static folder listed in
FRONTEND_ROOTS (separated by os.pathsep; served with --front-end-root), each with
the classic canvas and, where the frontend has it, the Vue node renderer ("Nodes
2.0", setting Comfy.VueNodes.Enabled). Artifacts go to out/browser/<version>-<renderer>/.

Skips, saying why, without COMFYUI_PATH (CI on the registry snapshot), without
Chromium (CHROMIUM, default /usr/bin/chromium), node, or playwright-core (found in
.cache/node/node_modules; scripts/browser_setup.sh installs all three); the
FRONTEND_ROOTS cases skip when it is not set. COMFYUI_PYTHON is the server's Python
(default: this one). See docs/web-extension.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PACK_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = PACK_ROOT / "example_workflows" / "reference_dead_leaves_apply.json"
SCRIPT = Path(__file__).resolve().parent / "browser" / "calibrations_browser.cjs"
REFERENCE_MODEL = PACK_ROOT / "models" / "reference" / "sd3_gaussian_field_m32.safetensors"
NODE_MODULES = Path(
    os.environ.get("PLAYWRIGHT_NODE_MODULES", PACK_ROOT / ".cache/node/node_modules")
)
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", PACK_ROOT / "out" / "browser"))
VUE_SETTING = "Comfy.VueNodes.Enabled"
PANEL = "noise_calibration_status"  # the pack's display-only node widget
LABEL = "browser-test"
SIZE = 128  # pixels: latent 16x16
SERVER_START_TIMEOUT = 180.0
BROWSER_TIMEOUT = 1800.0


def requirements() -> tuple[Path, str, str, str]:
    """(ComfyUI folder, server Python, chromium, node), or skip naming what is missing."""
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        pytest.skip("COMFYUI_PATH is not set: the browser tests need a full ComfyUI to start")
    comfy = Path(comfy).expanduser().resolve()
    if not (comfy / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH has no main.py (not a full ComfyUI): {comfy}")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or ""
    if not chromium or not Path(chromium).exists():
        pytest.skip("no Chromium (Debian's chromium package; scripts/browser_setup.sh)")
    node = shutil.which("node")
    if not node:
        pytest.skip("no node to run playwright-core (scripts/browser_setup.sh)")
    if not (NODE_MODULES / "playwright-core").is_dir():
        pytest.skip(
            f"playwright-core is not installed in {NODE_MODULES} (scripts/browser_setup.sh)"
        )
    if not REFERENCE_MODEL.is_file():
        pytest.skip(f"the reference model is missing: {REFERENCE_MODEL.relative_to(PACK_ROOT)}")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    return comfy, python, chromium, node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def static_version(root: Path) -> str:
    """A frontend folder's version: from the package's dist-info beside it, else the
    folder's name."""
    for info in sorted(root.parent.parent.glob("comfyui_frontend_package-*.dist-info")):
        return info.name.removesuffix(".dist-info").split("-")[1]
    return re.sub(r"[^\w.]+", "_", root.name)


def has_vue_nodes(root: Path) -> bool:
    """Whether a frontend folder's code knows the Vue node renderer's setting."""
    return any(VUE_SETTING in p.read_text("utf-8", "ignore") for p in root.glob("assets/*.js"))


def frontends() -> list:
    """pytest params: (frontend root or None for the server's own, Vue nodes on)."""
    params = [pytest.param((None, False), id="server-classic")]
    listed = [p for p in os.environ.get("FRONTEND_ROOTS", "").split(os.pathsep) if p]
    if not listed:
        reason = "FRONTEND_ROOTS is not set: no other frontend to test (docs/web-extension.md)"
        return params + [
            pytest.param((None, None), id="FRONTEND_ROOTS", marks=pytest.mark.skip(reason))
        ]
    for entry in listed:
        root = Path(entry).expanduser().resolve()
        if (root / "comfyui_frontend_package" / "static").is_dir():
            root = root / "comfyui_frontend_package" / "static"
        name = static_version(root) if root.is_dir() else root.name
        if not (root / "index.html").is_file():
            reason = f"FRONTEND_ROOTS: {entry} is not a frontend folder (no index.html)"
            params.append(pytest.param((root, False), id=name, marks=pytest.mark.skip(reason)))
            continue
        params.append(pytest.param((root, False), id=f"{name}-classic"))
        if has_vue_nodes(root):
            params.append(pytest.param((root, True), id=f"{name}-vue"))
    return params


def server_frontend_version(python: str) -> str:
    """The version of the server's own frontend package (its Python's)."""
    code = "import importlib.metadata as m; print(m.version('comfyui-frontend-package'))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "server"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "server"


class Server:
    def __init__(self, comfy: Path, python: str, front_end_root: Path | None, vue: bool):
        self.base = Path(tempfile.mkdtemp(prefix="noisecal-browser-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.base / "custom_nodes").mkdir()
        os.symlink(PACK_ROOT, self.base / "custom_nodes" / "noise-calibration")
        unet = self.base / "models" / "unet"
        unet.mkdir(parents=True)
        os.symlink(REFERENCE_MODEL, unet / REFERENCE_MODEL.name)
        settings = self.base / "user" / "default" / "comfy.settings.json"
        settings.parent.mkdir(parents=True)
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, VUE_SETTING: vue}))
        self.calibrations = self.base / "models" / "noise_calibration"
        flags = (comfy / "comfy" / "cli_args.py").read_text("utf-8")
        cmd = [python, str(comfy / "main.py"), "--cpu", "--listen", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--base-directory", str(self.base)]
        if '"--database-url"' in flags:
            cmd += ["--database-url", "sqlite:///:memory:"]
        if front_end_root is not None:
            cmd += ["--front-end-root", str(front_end_root)]
        for flag in ("--disable-auto-launch", "--disable-api-nodes"):
            if f'"{flag}"' in flags:
                cmd.append(flag)
        env = {k: v for k, v in os.environ.items() if k != "NOISE_CALIBRATION_DIR"}
        self.log_path = self.base / "server.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=comfy, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])

    def wait(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(
                    self.url + "/noise_calibration/calibrations", timeout=5
                ):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"no answer within {SERVER_START_TIMEOUT:.0f} s")

    def stop(self, artifacts: Path) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()
        shutil.copy(self.log_path, artifacts / "server.log")
        shutil.rmtree(self.base, ignore_errors=True)


def graphs() -> dict:
    """API graphs (as tools/server_check.py builds them) the page loads and queues."""

    def model():
        return {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": REFERENCE_MODEL.name, "weight_dtype": "default"},
        }

    def sample(label: str, if_missing: str, first: int, patch="NoiseCalibrationNoiseShift") -> dict:
        """Node ids from `first` on: each graph its own, so no node shows another's output."""
        n = [str(first + i) for i in range(6)]
        return {
            n[0]: model(),
            n[1]: {
                "class_type": patch,
                "inputs": {
                    "model": [n[0], 0],
                    "strength": 1.0,
                    "if_missing": if_missing,
                    "label": label,
                },
            },
            n[2]: {
                "class_type": "NoiseCalibrationEmptyConditioning",
                "inputs": {"model": [n[1], 0]},
            },
            n[3]: {
                "class_type": "EmptySD3LatentImage",
                "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1},
            },
            n[4]: {
                "class_type": "KSampler",
                "inputs": {
                    "model": [n[1], 0],
                    "seed": 1,
                    "steps": 4,
                    "cfg": 1.0,
                    "sampler_name": "euler",
                    "scheduler": "simple",
                    "positive": [n[2], 0],
                    "negative": [n[2], 0],
                    "latent_image": [n[3], 0],
                    "denoise": 1.0,
                },
            },
            n[5]: {"class_type": "PreviewAny", "inputs": {"source": [n[4], 0]}},
        }

    calibrate = {
        "1": model(),
        "2": {
            "class_type": "NoiseCalibrationCalibrate",
            "inputs": {
                "model": ["1", 0],
                "steps": 8,
                "scheduler": "simple",
                "search_mode": "fast",
                "sample_count": 8,
                "seed": 7,
                "width": SIZE,
                "height": SIZE,
                "label": LABEL,
                "max_batch": 32,
                "correction": "off",
                "mode": "reuse",
                "data": "self-generate",
                "generation_steps": 8,
                "generation_cfg": 1.0,
                "generation_sampler": "euler",
                "generation_scheduler": "simple",
                "native_width": 256,
                "native_height": 256,
                "check": "held-out",
            },
        },
    }
    return {
        "label": LABEL,
        "calibrate": calibrate,
        "sample": sample(LABEL, "error", 10),
        "apply": sample(LABEL, "error", 40, patch="NoiseCalibrationApply"),
        "missing": sample(f"{LABEL}-missing", "pass through", 20),
        "missing_error": sample(f"{LABEL}-missing", "error", 30),
    }


@pytest.fixture(scope="module", params=frontends())
def browser_run(request):
    front_end_root, vue = request.param
    comfy, python, chromium, node = requirements()
    version = static_version(front_end_root) if front_end_root else server_frontend_version(python)
    artifacts = ARTIFACTS / f"{version}-{'vue' if vue else 'classic'}"
    if artifacts.exists():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True)
    server = Server(comfy, python, front_end_root, vue)
    try:
        try:
            server.wait()
        except RuntimeError as exc:
            pytest.fail(f"the ComfyUI server ({python}) did not start: {exc}\n{server.log_tail()}")
        graphs_file = artifacts / "graphs.json"
        example = json.loads(EXAMPLE.read_text("utf-8"))
        graphs_file.write_text(json.dumps({**graphs(), "vue": vue, "example": example}, indent=1))
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES), "CHROMIUM": chromium}
        run = subprocess.run(
            [node, str(SCRIPT), server.url, str(artifacts), str(graphs_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=BROWSER_TIMEOUT,
        )
        result_file = artifacts / "result.json"
        if not result_file.is_file():
            pytest.fail(f"the browser script wrote no result:\n{run.stdout}\n{run.stderr}")
        result = json.loads(result_file.read_text())
        result["artifacts"] = artifacts
        result["vue"] = vue
        files_after = sorted(p.name for p in server.calibrations.glob("*.json"))
        yield result, files_after, server.log_tail
    finally:
        server.stop(artifacts)


def step(browser_run, name: str) -> dict:
    result, _, log_tail = browser_run
    assert "fatal" not in result, result["fatal"]
    outcome = result["steps"].get(name)
    assert outcome is not None, f"the browser script did not reach {name}: {result['steps']}"
    assert outcome["ok"], (
        f"{name}: {outcome.get('error')}\npage errors: {result['pageErrors']}\n{log_tail()}"
    )
    return outcome


def test_the_page_loads_with_the_extension(browser_run):
    outcome = step(browser_run, "load")
    assert outcome["sidebarTab"]
    assert {"browser", "statusLines"} <= set(outcome["extensionExposes"])
    assert outcome["onWindow"] == []
    result = browser_run[0]
    ours = [e for e in result["pageErrors"] if "noise_calibration" in e]
    assert not ours, ours


def test_the_tab_lists_the_calibration_after_a_calibrate_run(browser_run):
    step(browser_run, "calibrate")
    outcome = step(browser_run, "tab_lists_calibration")
    (item,) = [text for text in outcome["items"] if LABEL in text]
    assert f"{SIZE}x{SIZE} px" in item and "latent 16x16" in item and "8 steps" in item
    assert "Apply uses:" in item
    assert any(LABEL in text for text in outcome["filters"])


def test_the_tab_filters_by_checkpoint(browser_run):
    outcome = step(browser_run, "filter")
    assert outcome["shown"] and all(LABEL in text for text in outcome["shown"])


def test_a_click_shows_the_plot(browser_run):
    outcome = step(browser_run, "plot")
    width, height = outcome["size"]
    assert width >= 160 and height > width  # drawn for the tab: panels one under another
    assert abs(outcome["shown"][0] - width) <= 2, outcome  # shown at the size it was drawn


def shown_panel(outcome) -> str:
    """The node panel's text as the page shows it, after checking that the panel is
    on the page, visible, and not saved with the workflow."""
    panel = outcome["panel"]
    assert panel["widget"] and panel["matches"], panel
    assert panel["inDocument"] and panel["visible"], f"the panel is not shown: {panel}"
    # display only: not in widgets_values (saved workflows keep their values' order)
    assert panel["serialize"] is False
    # after the node's own widgets (the frontend may add its previews after it); in
    # widgets_values at most an empty slot where it stands
    index = panel["widgetNames"].index(PANEL)
    assert not any(name.startswith("$$") for name in panel["widgetNames"][:index]), panel
    values = panel["widgetsValues"]
    assert len(values) <= index or values[index] is None, panel
    return panel["text"]


def test_a_shipped_workflow_keeps_its_saved_values(browser_run):
    """The display-only panel is never saved: the example's widget values come back
    as they are in the file after loading, and after the panels showed an output."""
    outcome = step(browser_run, "saved_workflow")
    saved = {
        str(n["id"]): n.get("widgets_values") for n in json.loads(EXAMPLE.read_text())["nodes"]
    }
    ours = [i for i, n in saved.items() if i in outcome["shown"]]
    assert len(ours) == 2, outcome["shown"]  # Calibrate and Apply
    for node_id, values in saved.items():
        if values is None:
            continue
        # a node without widgets: [] in the file, none from 1.5x frontends
        assert (outcome["loaded"][node_id] or []) == values, node_id
        assert (outcome["afterShown"][node_id] or []) == values, node_id


def test_the_calibrate_node_shows_its_summary_and_a_readable_plot(browser_run):
    outcome = step(browser_run, "calibrate")
    text = shown_panel(outcome)
    assert text.startswith("wrote "), text
    assert f"{SIZE}x{SIZE} px (latent 16x16)" in text
    assert re.search(r"this run: \d+ network evaluations, [\d.]+ s", text), text
    assert re.search(r"held-out check \(4 latents, spectral FD\): plain [\d.e-]+", text), text
    assert "Apply uses " in text
    plot = outcome["plot"]
    assert plot["natural"] == [900, 360], plot  # the node's figure (noisecal_host/plots.py)
    assert plot["drawnWidth"] >= 0.75 * 900, plot  # its text at 3/4 of its size or more
    assert plot["inside"], plot  # all of it shown in the panel
    assert plot["otherImages"] == 0, plot  # one copy: the frontend shows no preview of it


def test_noiseshift_shows_the_calibrated_size(browser_run):
    outcome = step(browser_run, "node_status")
    assert outcome["run"] == "execution_success"
    assert outcome["lines"] and outcome["lines"][0] == "calibrated at:"
    assert any(f"{SIZE}x{SIZE} px (latent 16x16)" in line for line in outcome["lines"])
    assert shown_panel(outcome).splitlines() == outcome["lines"]


def test_apply_shows_what_it_uses(browser_run):
    outcome = step(browser_run, "apply_status")
    assert outcome["run"] == "execution_success"
    text = shown_panel(outcome)
    assert text.startswith("calibrated at:"), text
    assert re.search(rf"{SIZE}x{SIZE} px \(latent 16x16\): \S+", text), text


def toast_for(outcome, *words) -> list[str]:
    return [t for t in outcome["toasts"] if all(w in t for w in words)]


def test_a_missing_calibration_gives_a_toast_naming_the_node(browser_run):
    outcome = step(browser_run, "missing_toast")
    named = f"{outcome['title']} (node {outcome['node']})"
    toasts = toast_for(outcome, named, "passes through")
    assert len(toasts) == 1, outcome["toasts"]  # once per run, not per step
    error = step(browser_run, "missing_error_toast")
    assert error["run"] == "execution_error"
    assert toast_for(error, f"{error['title']} (node {error['node']})", "at any resolution")


def test_the_extension_leaves_the_shared_page_alone(browser_run):
    """No global on window, no element of its own appended to <body> (the toasts are
    the frontend's), after the toasts have been shown."""
    outcome = step(browser_run, "shared_page")
    assert outcome["onWindow"] == []
    assert outcome["bodyChildren"] == []


def test_the_tab_deletes_after_confirmation(browser_run):
    outcome = step(browser_run, "delete")
    assert outcome["stillThereBeforeConfirm"] == 1  # nothing is deleted before the confirmation
    assert f"Delete {outcome['file']}?" in outcome["question"]
    assert outcome["file"] not in browser_run[1]
    assert outcome["status"] == f"deleted {outcome['file']}"


def test_screenshots_are_saved(browser_run):
    result = browser_run[0]
    names = [shot["file"] for shot in result["screenshots"]]
    assert len(names) >= 9, names
    for name in names:
        assert (result["artifacts"] / name).stat().st_size > 5_000
