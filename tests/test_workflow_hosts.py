"""Every example workflow, core nodes included, against real ComfyUI node definitions.

tests/test_workflows.py checks the pack's own nodes. Here every node of every
example (the pack's and ComfyUI's) is checked against definitions from two
places, with the same rules: the node type exists; its sockets and outputs
have the definition's names and types, and its required sockets are linked;
its widgets_values has one value per widget in the frontend's order (a
`control_after_generate` value after seed widgets) and every value is one of
the combo's choices or within the number's range and step; every link's type
is the source's output type and one the target input accepts.

1. The host the suite runs on, in this process: the pack's classes, and core
   classes from ComfyUI's `nodes.NODE_CLASS_MAPPINGS` and the comfy_extras
   module that defines each core type. The registry snapshot host (notcomfy)
   ships no top-level `nodes.py`, `folder_paths`, `node_helpers` or
   `latent_preview`: no core node the examples use imports there, and each one
   is reported with the reason (test_every_core_node_is_on_this_host skips).
   A full ComfyUI (COMFYUI_PATH, or the ComfyUI this pack sits in) whose
   `nodes.py` imports with this Python gives every core node.

2. GET /object_info of a ComfyUI server, when COMFYUI_PATH points at a full
   ComfyUI: one server per test session, started with COMFYUI_PYTHON (default:
   this Python) on a free loopback port with a temporary --base-directory that
   holds only this pack (as custom_nodes/noise-calibration) and empty files
   named as the examples' models and image folder, put where USER_FILES says a
   user puts them, so file choices are checked too. It is stopped at the end.
   COMFYUI_SERVER_URL uses a running server instead (file choices are then not
   compared: that server has its own files). Without either, these tests skip.

3. On that server, the example that needs no download (reference_dead_leaves_apply)
   runs as shipped through the API (POST /prompt, /history, /view): a few minutes
   on a CPU, as Calibrate runs at its defaults.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import io
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
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_workflows import (
    USER_FILES,
    WORKFLOWS,
    expected_widgets,
    input_spec,
    is_widget,
    load,
    socket_inputs,
    widget_value_problems,
    workflow_params,
)

PACK_ROOT = Path(__file__).resolve().parent.parent
OUR_PREFIX = "NoiseCalibration"
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # not server nodes
SERVER_START_TIMEOUT = 300.0  # seconds until /object_info answers
SERVER_STOP_TIMEOUT = 20.0


def core_types() -> list[str]:
    """ComfyUI node types the examples use."""
    used = {n["type"] for path in WORKFLOWS for n in load(path)["nodes"]}
    return sorted(t for t in used if not t.startswith(OUR_PREFIX) and t not in FRONTEND_ONLY)


# --------------------------------------------------------------------------- definitions


def definition_of(cls) -> dict:
    """A node class as /object_info describes it (input, output, output_name)."""
    if hasattr(cls, "GET_NODE_INFO_V1"):  # a V3 (comfy_api) node
        return cls.GET_NODE_INFO_V1()
    return {
        "input": cls.INPUT_TYPES(),
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
    }


def defining_files(host: Path, node_type: str) -> list[Path]:
    """The host's source files that name `node_type` as a node id."""
    pattern = re.compile(rf"""["']{re.escape(node_type)}["']|class {re.escape(node_type)}\b""")
    candidates = [host / "nodes.py", *sorted((host / "comfy_extras").glob("nodes_*.py"))]
    return [p for p in candidates if p.is_file() and pattern.search(p.read_text("utf-8"))]


def import_comfy_nodes(host: Path):
    """ComfyUI's top-level `nodes` module, as ComfyUI imports it."""
    path = host / "nodes.py"
    loaded = sys.modules.get("nodes")
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
            return loaded
        raise ImportError(f"another module is imported as `nodes`: {loaded!r}")
    spec = importlib.util.spec_from_file_location("nodes", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nodes"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["nodes"]
        raise
    return module


def extras_mappings(module) -> dict:
    """node id -> class of a comfy_extras module: V1 mappings or a V3 entrypoint."""
    if getattr(module, "NODE_CLASS_MAPPINGS", None):
        return dict(module.NODE_CLASS_MAPPINGS)
    entrypoint = getattr(module, "comfy_entrypoint", None)
    if entrypoint is None:
        return {}

    async def node_list():
        extension = entrypoint()
        if asyncio.iscoroutine(extension):
            extension = await extension
        return await extension.get_node_list()

    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(node_list())}


class HostDefinitions:
    """Definitions of the examples' core node types on the host of this process."""

    def __init__(self, host: Path, kind: str):
        self.host, self.kind = host, kind
        self.defs: dict[str, dict] = {}
        self.missing: dict[str, str] = {}  # node type -> why there is no definition
        self._nodes = None
        self._nodes_error = None
        self._modules: dict[Path, object] = {}

    def _comfy_nodes(self):
        if self._nodes is None and self._nodes_error is None:
            if not (self.host / "nodes.py").is_file():
                self._nodes_error = f"is not shipped by this host ({self.kind})"
            else:
                try:
                    self._nodes = import_comfy_nodes(self.host)
                except Exception as exc:  # a host without all of ComfyUI's requirements
                    self._nodes_error = f"does not import here ({type(exc).__name__}: {exc})"
        return self._nodes

    def _extras(self, path: Path):
        if path not in self._modules:
            source = path.read_text("utf-8")
            needs_nodes = re.search(r"^\s*(import nodes\b|from nodes import)", source, re.M)
            if needs_nodes and self._comfy_nodes() is None:
                # never import `nodes` without ComfyUI's: the pack's folder has that name
                self._modules[path] = f"it imports ComfyUI's nodes.py, which {self._nodes_error}"
            else:
                try:
                    module = importlib.import_module(f"comfy_extras.{path.stem}")
                    self._modules[path] = extras_mappings(module)
                except Exception as exc:
                    self._modules[path] = f"it does not import: {type(exc).__name__}: {exc}"
        return self._modules[path]

    def find(self, node_type: str) -> None:
        reasons = []
        for path in defining_files(self.host, node_type):
            where = f"{path.parent.name}/{path.name}" if path.name != "nodes.py" else "nodes.py"
            if path.name == "nodes.py":
                nodes = self._comfy_nodes()
                mapping = nodes.NODE_CLASS_MAPPINGS if nodes is not None else None
                why = self._nodes_error and f"it {self._nodes_error}"
            else:
                found = self._extras(path)
                mapping, why = (found, None) if isinstance(found, dict) else (None, found)
            if mapping is not None and node_type in mapping:
                self.defs[node_type] = definition_of(mapping[node_type])
                return
            reasons.append(f"{where}: {why or 'does not register it'}")
        if not reasons and not (self.host / "nodes.py").is_file():
            reasons.append(
                "no comfy_extras module names it, and nodes.py (where ComfyUI defines its "
                f"base nodes) is not shipped by this host ({self.kind})"
            )
        self.missing[node_type] = "; ".join(reasons) or "no source file of this host names it"


@pytest.fixture(scope="session")
def host_definitions(host_info, pack) -> HostDefinitions:
    found = HostDefinitions(Path(host_info.path), host_info.kind)
    for node_type in core_types():
        found.find(node_type)
    for node_type, cls in pack.NODE_CLASS_MAPPINGS.items():
        found.defs[node_type] = definition_of(cls)
    return found


# --------------------------------------------------------------------------- the checks


def accepts(input_type, link_type: str) -> bool:
    """Whether an input of `input_type` takes a link of `link_type` (ComfyUI's rule:
    equal, "*", or one of a comma-separated list)."""
    if isinstance(input_type, (list, tuple)):  # a combo converted to an input
        return link_type in ("COMBO", "*")
    names = {t.strip() for t in str(input_type).split(",")}
    return input_type == "*" or link_type == "*" or link_type in names


def node_problems(node: dict, definition: dict, *, strict_files: bool) -> list[str]:
    """What in a saved node does not fit the definition (empty: it fits)."""
    inputs = definition["input"]
    where = f"{node['type']} (node {node['id']})"
    sockets = socket_inputs(inputs)
    widgets = {
        name for group in ("required", "optional") for name, spec in inputs.get(group, {}).items()
    }
    problems = []
    for inp in node.get("inputs") or []:
        if "widget" in inp:  # a widget converted to an input
            if inp["widget"]["name"] not in widgets:
                problems.append(f"{where}: input {inp['name']!r} is no widget of the node")
        elif inp["name"] not in sockets:
            problems.append(f"{where}: no input {inp['name']!r} (inputs: {sorted(sockets)})")
        elif inp["type"] != sockets[inp["name"]]:
            problems.append(f"{where}: {inp['name']} is {sockets[inp['name']]}, not {inp['type']}")
    required = {
        name
        for name, spec in inputs.get("required", {}).items()
        if not is_widget(input_spec(spec)[0]) or input_spec(spec)[1].get("forceInput")
    }
    linked = {i["name"] for i in node.get("inputs") or [] if i.get("link") is not None}
    if required - linked:
        problems.append(f"{where}: required inputs {sorted(required - linked)} are not linked")
    outputs = node.get("outputs") or []
    if [o["type"] for o in outputs] != list(definition["output"]):
        problems.append(
            f"{where}: outputs {[o['type'] for o in outputs]} != {definition['output']}"
        )
    if [o["name"] for o in outputs] != list(definition["output_name"]):
        problems.append(
            f"{where}: output names {[o['name'] for o in outputs]} != {definition['output_name']}"
        )
    return problems + widget_value_problems(node, inputs, strict_files=strict_files)


def link_problems(workflow: dict, defs: dict) -> list[str]:
    """Links whose type is not the source's output type or not one the target takes."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    problems = []
    for link_id, src, src_slot, dst, dst_slot, link_type in workflow["links"]:
        source, target = nodes[src], nodes[dst]
        where = f"link {link_id} ({source['type']} -> {target['type']})"
        if source["type"] in defs:
            out = list(defs[source["type"]]["output"])
            if src_slot >= len(out) or out[src_slot] != link_type:
                problems.append(f"{where}: {link_type} from output {src_slot} of {out}")
        if target["type"] in defs:
            inp = target["inputs"][dst_slot]
            spec = dict(socket_inputs(defs[target["type"]]["input"]))
            for group in ("required", "optional"):  # a widget converted to an input
                for name, entry in defs[target["type"]]["input"].get(group, {}).items():
                    spec.setdefault(name, input_spec(entry)[0])
            name = inp.get("widget", {}).get("name", inp["name"])
            if name not in spec:
                problems.append(f"{where}: {target['type']} has no input {name!r}")
            elif not accepts(spec[name], link_type):
                problems.append(f"{where}: {name} takes {spec[name]}, not {link_type}")
    return problems


def workflow_problems(workflow: dict, defs: dict, *, strict_files: bool, only_known=False):
    """Every problem of a workflow's nodes and links against `defs`; `only_known`: leave
    out the nodes `defs` has no definition for (instead of reporting them)."""
    problems = []
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        if node["type"] not in defs:
            if not only_known:
                problems.append(f"{node['type']} (node {node['id']}): no such node")
            continue
        problems += node_problems(node, defs[node["type"]], strict_files=strict_files)
    return problems + link_problems(workflow, defs)


# --------------------------------------------------------------------------- this host


def test_core_types_are_found():
    assert "KSampler" in core_types() or "SamplerCustomAdvanced" in core_types()
    assert not [t for t in core_types() if t.startswith(OUR_PREFIX)]


@workflow_params()
def test_workflow_matches_this_host(path, host_definitions):
    """The pack's nodes and the core nodes this host defines, and both ends of every
    link to them; the core types this host cannot define are listed by
    test_every_core_node_is_on_this_host."""
    workflow = load(path)
    problems = workflow_problems(
        workflow, host_definitions.defs, strict_files=False, only_known=True
    )
    assert problems == [], f"{path.name}:\n  " + "\n  ".join(problems)


def test_every_core_node_is_on_this_host(host_definitions):
    """Which core node types this host could not define, and why (a skip, not a
    failure: the snapshot host has no nodes.py; the /object_info tests check them)."""
    missing = host_definitions.missing
    if missing:
        by_reason: dict[str, list[str]] = {}
        for node_type, why in sorted(missing.items()):
            by_reason.setdefault(why, []).append(node_type)
        lines = [f"{', '.join(types)}: {why}" for why, types in by_reason.items()]
        checked = sorted(set(core_types()) - set(missing))
        pytest.skip(
            f"{len(missing)} of {len(core_types())} core node types are not defined on this "
            f"host ({host_definitions.kind}; checked: {checked or 'none'}): " + " | ".join(lines)
        )


def test_the_checks_find_what_they_should():
    """The rules themselves, on a Calibrate node and a KSampler-like definition."""
    ksampler = {
        "input": {
            "required": {
                "model": ["MODEL"],
                "seed": ["INT", {"min": 0, "max": 2**64 - 1, "control_after_generate": True}],
                "steps": ["INT", {"min": 1, "max": 10000}],
                "sampler_name": [["euler", "heun"]],
                "width": ["INT", {"min": 16, "max": 16384, "step": 16}],
            },
            "optional": {"device": [["default", "cpu"], {"advanced": True}]},
        },
        "output": ["LATENT"],
        "output_name": ["LATENT"],
    }
    node = {
        "id": 1,
        "type": "KSamplerLike",
        "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": None}],
        "widgets_values": [42, "fixed", 20, "euler", 512, "default"],
    }
    assert not node_problems(node, ksampler, strict_files=True)
    broken = [
        {**node, "widgets_values": [42, 20, "euler", 512, "default"]},  # no control value
        {**node, "widgets_values": [42, "fixed", 20, "euler", 512]},  # no optional `device`
        {**node, "widgets_values": [42, "fixed", 0, "euler", 512, "default"]},  # steps < min
        {**node, "widgets_values": [42, "fixed", 20, "dpm", 512, "default"]},  # not a choice
        {**node, "widgets_values": [42, "fixed", 20, "euler", 500, "default"]},  # off step 16
        {**node, "inputs": [{"name": "model", "type": "MODEL", "link": None}]},  # unlinked
        {**node, "inputs": [{"name": "model", "type": "CLIP", "link": 1}]},  # wrong type
        {**node, "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": None}]},
    ]
    for variant in broken:
        assert node_problems(variant, ksampler, strict_files=True), variant
    assert accepts("IMAGE,MASK", "MASK") and accepts("*", "MODEL")
    assert not accepts("MODEL", "CLIP")


# --------------------------------------------------------------------------- /object_info


def http_json(url: str, timeout: float = 60.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def place_user_files(base: Path) -> list[str]:
    """Empty files (and folders) named as the examples' models and image folders,
    where a user puts them."""
    placed = []
    for path in WORKFLOWS:
        for node in load(path)["nodes"]:
            if node["type"] in FRONTEND_ONLY:
                continue
            for (node_type, name), folder in USER_FILES.items():
                if node_type != node["type"]:
                    continue
                value = saved_value(node, name)
                if not isinstance(value, str) or not value:
                    continue
                target = base / folder.rstrip("/") / value
                if folder.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.touch()
                placed.append(str(target.relative_to(base)))
    return sorted(set(placed))


def saved_value(node: dict, name: str):
    """The saved value of a file widget. USER_FILES lists a node's file inputs in the
    order of its first widgets (the server is not up yet to say): a wrong order shows
    as a file missing from the server's choices."""
    names = [n for (t, n) in USER_FILES if t == node["type"]]
    values = node.get("widgets_values") or []
    index = names.index(name)
    return values[index] if index < len(values) else None


def cli_flags(comfy: Path) -> str:
    return (comfy / "comfy" / "cli_args.py").read_text("utf-8")


class Server:
    """A ComfyUI server of COMFYUI_PATH in a temporary base directory."""

    def __init__(self, comfy: Path, python: str):
        self.base = Path(tempfile.mkdtemp(prefix="noisecal-object-info-"))
        self.log_path = self.base / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.base / "custom_nodes").mkdir()
        os.symlink(PACK_ROOT, self.base / "custom_nodes" / "noise-calibration")
        self.placed = place_user_files(self.base)
        flags = cli_flags(comfy)
        cmd = [python, str(comfy / "main.py"), "--cpu", "--listen", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--base-directory", str(self.base)]
        if '"--database-url"' in flags:  # else it writes into the ComfyUI folder
            cmd += ["--database-url", "sqlite:///:memory:"]
        for flag in ("--disable-auto-launch", "--disable-api-nodes"):
            if f'"{flag}"' in flags:
                cmd.append(flag)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=comfy, stdout=self.log, stderr=subprocess.STDOUT)

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text("utf-8", "replace").splitlines()
        return "\n".join(text[-lines:])

    def wait(self) -> dict:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}")
            try:
                return http_json(self.url + "/object_info")
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                time.sleep(0.5)
        raise RuntimeError(f"no /object_info within {SERVER_START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(SERVER_STOP_TIMEOUT)
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def object_info():
    """(definitions from /object_info, whether file choices can be compared, URL)."""
    url = os.environ.get("COMFYUI_SERVER_URL")
    if url:
        url = url.rstrip("/")
        yield http_json(url + "/object_info"), False, url
        return
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        pytest.skip(
            "COMFYUI_PATH is not set (nor COMFYUI_SERVER_URL): the /object_info checks need "
            "a full ComfyUI to start"
        )
    comfy = Path(comfy).expanduser().resolve()
    if not (comfy / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH has no main.py (not a full ComfyUI): {comfy}")
    if '"--base-directory"' not in cli_flags(comfy):
        pytest.skip("this ComfyUI has no --base-directory option to start it in a temp folder")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    server = Server(comfy, python)
    try:
        try:
            info = server.wait()
        except RuntimeError as exc:
            message = f"the ComfyUI server ({python}) did not start: {exc}\n{server.log_tail()}"
            if os.environ.get("COMFYUI_PYTHON"):
                pytest.fail(message)
            pytest.skip(
                message + "\n(set COMFYUI_PYTHON to the Python of that ComfyUI's environment)"
            )
        ours = [k for k in info if k.startswith(OUR_PREFIX)]
        assert ours, f"the pack did not load on the server:\n{server.log_tail(60)}"
        yield info, True, server.url
    finally:
        server.stop()


def api_prompt(workflow: dict, info: dict) -> dict:
    """The API-format prompt the frontend queues for a saved workflow: frontend-only
    and muted nodes left out, links through bypassed nodes passed on (to the
    bypassed node's input of the same type), widget values by name."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {lk[0]: lk for lk in workflow["links"]}

    def source(link_id):
        _, src, slot, _, _, kind = links[link_id]
        node = nodes[src]
        if node["mode"] == 4:  # bypassed: the first input of the same type stands in
            through = next(i for i in node["inputs"] if i["type"] == kind and i.get("link"))
            return source(through["link"])
        return [str(src), slot]

    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node["mode"] != 0:
            continue
        names = [n for n, _, _ in expected_widgets(info[node["type"]]["input"])]
        values = dict(zip(names, node.get("widgets_values") or [], strict=False))
        values.pop("control_after_generate", None)
        for inp in node.get("inputs") or []:
            if inp.get("link") is not None:
                values[inp.get("widget", {}).get("name", inp["name"])] = source(inp["link"])
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": values}
    return prompt


def test_the_server_has_the_pack_as_loaded_here(object_info, pack):
    """The server runs this pack: the same node ids, inputs and outputs."""
    info, _, _ = object_info
    for node_type, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert node_type in info, f"{node_type} is not on the server (an older copy of the pack?)"
        here, there = definition_of(cls), info[node_type]
        for group in ("required", "optional"):
            assert list(here["input"].get(group, {})) == list(there["input"].get(group, {})), (
                f"{node_type}: {group} inputs differ from the server's"
            )
        assert list(here["output"]) == list(there["output"]), node_type


@workflow_params()
def test_workflow_matches_object_info(path, object_info):
    info, strict_files, _ = object_info
    problems = workflow_problems(load(path), info, strict_files=strict_files)
    assert not problems, f"{path.name} against /object_info:\n  " + "\n  ".join(problems)


def post_prompt(url: str, prompt: dict, what: str = "the workflow") -> str:
    """POST /prompt; the prompt id, or the test fails with the server's answer."""
    body = json.dumps({"prompt": prompt}).encode()
    request = urllib.request.Request(
        url + "/prompt", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        answer = exc.read().decode("utf-8", "replace")[:2000]
        pytest.fail(f"{what}: the server refused the prompt: {answer}")
    assert answer.get("prompt_id") and not answer.get("node_errors"), answer
    return answer["prompt_id"]


@workflow_params()
def test_the_server_accepts_workflow(path, object_info):
    """POST /prompt validates the prompt the frontend makes of the workflow (types,
    required inputs, choices, ranges, the nodes' own VALIDATE_INPUTS) before queueing
    it. Only on the server started here: its model files are empty stand-ins, so
    the run that follows stops at the first loader."""
    info, strict_files, url = object_info
    if not strict_files:
        pytest.skip("a server given by COMFYUI_SERVER_URL may lack the examples' files")
    post_prompt(url, api_prompt(load(path), info), path.name)


# --------------------------------------------------------------------------- a full run

NO_WEIGHTS_EXAMPLE = "reference_dead_leaves_apply.json"
RUN_TIMEOUT = 1800.0  # seconds: Calibrate at its defaults on 2 CPU cores takes minutes


def wait_for_history(url: str, prompt_id: str, timeout: float) -> dict:
    """The prompt's /history entry once it has finished (success or error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = http_json(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            if entry["status"].get("status_str") in ("success", "error"):
                return entry
        time.sleep(2.0)
    pytest.fail(f"the prompt did not finish within {timeout:.0f} s")


def test_the_no_weights_example_runs_on_the_server(object_info):
    """The example that needs no download runs as shipped through the server's API:
    the prompt the frontend makes of it (api_prompt), POST /prompt, its /history
    entry: success, the Calibrate summary and Apply's status in the nodes' outputs,
    and both previews (plain, Apply): one image per latent of the batch, each served
    by /view at the decoded size."""
    from PIL import Image

    info, strict_files, url = object_info
    if not strict_files:
        pytest.skip("runs only on the server started here: it writes a calibration file")
    workflow = load(PACK_ROOT / "example_workflows" / NO_WEIGHTS_EXAMPLE)
    prompt = api_prompt(workflow, info)
    entry = wait_for_history(url, post_prompt(url, prompt), RUN_TIMEOUT)
    status = entry["status"]
    assert status["status_str"] == "success", json.dumps(status["messages"])[:3000]
    outputs = entry["outputs"]
    calibrate = next(i for i, n in prompt.items() if n["class_type"].endswith("Calibrate"))
    summary = outputs[calibrate]["text"][0]
    # test_the_server_accepts_workflow queues this example too, and a run that
    # finished before this one leaves the calibration that this run reuses
    assert summary.startswith(("wrote ", "reused the stored calibration")), summary
    assert "evaluations" in summary, summary
    assert "held-out check" in summary and "Apply uses" in summary, summary
    apply = next(i for i, n in prompt.items() if n["class_type"].endswith("Apply"))
    sizes = outputs[apply]["noise_calibration"][0]["sizes"]
    latent = next(n for n in prompt.values() if n["class_type"] == "EmptySD3LatentImage")
    width, height = latent["inputs"]["width"], latent["inputs"]["height"]
    assert [width, height] in [s["image"] for s in sizes], sizes
    previews = [i for i, n in prompt.items() if n["class_type"] == "PreviewImage"]
    assert len(previews) == 2
    for node_id in previews:
        images = outputs[node_id]["images"]
        assert len(images) == latent["inputs"]["batch_size"], images
        for image in images:
            query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
            with urllib.request.urlopen(f"{url}/view?{query}", timeout=60) as resp:
                picture = Image.open(io.BytesIO(resp.read()))
            # the decode node: a latent of W x H latent pixels (image / 8) gives 2W x 2H
            assert picture.size == (2 * width // 8, 2 * height // 8), picture.size
