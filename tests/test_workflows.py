"""The shipped example workflows load in ComfyUI's frontend as they are.

For every `example_workflows/*.json` (the frontend's saved-workflow format,
version 0.4): the link table agrees with the nodes' inputs and outputs, every
node of this pack exists, and its widgets_values line up with the widgets the
frontend builds from INPUT_TYPES (a stale order would shift every value into
the wrong widget). Each workflow has a JPEG thumbnail beside it.

Compatibility rule for saved workflows: the frontend fills widgets_values in
order and gives widgets with no value their defaults. So a widget may only
ever be appended; a workflow saved before it existed then lacks only a tail
of appended widgets and still loads. PINNED_WIDGETS holds each node's widget
order as released: the current order must start with it (a rename, a removal
or a widget inserted before the end fails).

Combo values that name the user's own files (a checkpoint, an image folder:
USER_FILES) are not compared with this host's file lists, which hold what
this ComfyUI happens to have; tests/test_workflow_hosts.py checks them
against a server that has them. Core nodes are checked there too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DIR = ROOT / "example_workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
OUR_PREFIX = "NoiseCalibration"
# nodes that read calibration files: with a Calibrate node in the same workflow they
# must run after it (its calibration output reaches them through links)
READS_CALIBRATION = (
    "NoiseCalibrationNoiseShift",
    "NoiseCalibrationNoiseLevelCorrection",
    "NoiseCalibrationSpectralScheduler",
    "NoiseCalibrationApply",
)
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
# combo inputs whose choices are the user's files: (node type, input) -> where they go,
# below ComfyUI's base folder (a trailing "/" names a folder rather than a file)
USER_FILES = {
    ("CheckpointLoaderSimple", "ckpt_name"): "models/checkpoints",
    ("UNETLoader", "unet_name"): "models/diffusion_models",
    ("VAELoader", "vae_name"): "models/vae",
    ("CLIPLoader", "clip_name"): "models/text_encoders",
    ("DualCLIPLoader", "clip_name1"): "models/text_encoders",
    ("DualCLIPLoader", "clip_name2"): "models/text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "models/text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "models/text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "models/text_encoders",
    ("LoadImage", "image"): "input",
    ("NoiseCalibrationLoadImageFolder", "folder"): "input/",
}
SEED_NAMES = {"seed", "noise_seed"}  # INT inputs the frontend gives a control widget
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
THUMBNAIL_MAX_BYTES = 60_000
THUMBNAIL_MAX_SIDE = 1024

# Widget names of every node, in the order the frontend creates them (and
# saves their values). Never reorder or rename an entry: append new widgets
# at the end, and list them in APPENDED_WIDGETS too.
PINNED_WIDGETS = {
    "NoiseCalibrationCalibrate": [
        "steps",
        "scheduler",
        "search_mode",
        "sample_count",
        "seed",
        "control_after_generate",
        "width",
        "height",
        "label",
        "max_batch",
        "correction",
        "mode",
        "data",
        "generation_steps",
        "generation_cfg",
        "generation_sampler",
        "generation_scheduler",
        "native_width",
        "native_height",
        "check",
    ],
    "NoiseCalibrationNoiseShift": ["strength", "if_missing", "label", "inline_calibration"],
    "NoiseCalibrationNoiseAwarenessGuidance": [
        "weight",
        "mode",
        "offset",
        "pseudo_level",
        "weight_schedule",
        "level_start",
        "level_end",
        "weight_source",
        "label",
    ],
    "NoiseCalibrationSpectralScheduler": [
        "steps",
        "source",
        "variant",
        "seed",
        "control_after_generate",
        "denoise",
        "width",
        "height",
        "label",
        "start",
    ],
    "NoiseCalibrationNoiseLevelCorrection": [
        "strength",
        "sigma_min",
        "sigma_max",
        "if_missing",
        "label",
        "inline_calibration",
    ],
    "NoiseCalibrationLoadImageFolder": ["folder", "width", "height", "limit"],
    "NoiseCalibrationEmptyConditioning": [],
    "NoiseCalibrationApply": ["strength", "if_missing", "label", "inline_calibration"],
    "NoiseCalibrationLoadReference": ["model_name"],
    "NoiseCalibrationReferenceDecode": [],
}
# Widgets appended after a node was first released: a workflow saved by an
# older version may stop before them (they load with their defaults).
APPENDED_WIDGETS = {
    "NoiseCalibrationCalibrate": [
        "correction",
        "mode",
        "data",
        "generation_steps",
        "generation_cfg",
        "generation_sampler",
        "generation_scheduler",
        "native_width",
        "native_height",
        "check",
    ],
    "NoiseCalibrationNoiseAwarenessGuidance": ["weight_source", "label"],
    "NoiseCalibrationSpectralScheduler": ["start"],
}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def workflow_params():
    return pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])


def our_nodes(workflow: dict) -> list[dict]:
    return [n for n in workflow["nodes"] if str(n["type"]).startswith(OUR_PREFIX)]


def input_spec(spec) -> tuple[object, dict]:
    """(type, options) of one INPUT_TYPES / object_info entry; a combo's type is its
    list of choices (also for the newer ["COMBO", {"options": [...]}] form)."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if kind == "COMBO":
        kind = list(options.get("options", []))
    return kind, options


def is_widget(kind) -> bool:
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def expected_widgets(input_types: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of each widget, in the order the frontend creates them."""
    widgets = []
    for group in ("required", "optional"):
        for name, spec in input_types.get(group, {}).items():
            kind, options = input_spec(spec)
            if options.get("forceInput"):
                continue
            if is_widget(kind):
                widgets.append((name, kind, options))
                if kind == "INT" and options.get("control_after_generate", name in SEED_NAMES):
                    widgets.append(("control_after_generate", list(CONTROL_VALUES), {}))
    return widgets


def socket_inputs(input_types: dict) -> dict[str, str]:
    """Inputs the frontend draws as sockets: name -> type."""
    sockets = {}
    for group in ("required", "optional"):
        for name, spec in input_types.get(group, {}).items():
            kind, options = input_spec(spec)
            if not is_widget(kind) or options.get("forceInput"):
                sockets[name] = kind
    return sockets


def links_into(workflow: dict) -> dict[int, set[int]]:
    """node id -> ids of the nodes its inputs are linked from."""
    sources = {n["id"]: set() for n in workflow["nodes"]}
    for _, src, _, dst, _, _ in workflow["links"]:
        sources[dst].add(src)
    return sources


def upstream(workflow: dict, node_id: int) -> set[int]:
    """Every node that runs before `node_id` because links lead from it to `node_id`."""
    sources, seen, todo = links_into(workflow), set(), [node_id]
    while todo:
        for src in sources[todo.pop()] - seen:
            seen.add(src)
            todo.append(src)
    return seen


def test_there_are_example_workflows():
    assert WORKFLOWS, "example_workflows/ holds no workflow"


def test_every_node_is_in_an_example(pack):
    """Every registered node, a new one too, is shown by at least one example (what
    `comfy-test coverage --workflows example_workflows --strict` checks)."""
    assert pack.NODE_CLASS_MAPPINGS
    used = {n["type"] for path in WORKFLOWS for n in load(path)["nodes"]}
    missing = set(pack.NODE_CLASS_MAPPINGS) - used
    assert not missing, f"no example workflow shows {sorted(missing)}"


@workflow_params()
def test_workflow_format(path):
    workflow = load(path)
    for key in ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra"):
        assert key in workflow, f"{path.name}: no {key!r}"
    assert workflow["version"] == 0.4
    ids = [n["id"] for n in workflow["nodes"]]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate node ids"
    assert workflow["last_node_id"] >= max(ids)
    link_ids = [link[0] for link in workflow["links"]]
    assert len(link_ids) == len(set(link_ids)), f"{path.name}: duplicate link ids"
    assert workflow["last_link_id"] >= max(link_ids, default=0)
    orders = [n["order"] for n in workflow["nodes"]]
    assert sorted(orders) == list(range(len(orders))), f"{path.name}: orders {orders}"
    for node in workflow["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "properties"):
            assert key in node, f"{path.name}: node {node.get('id')} has no {key!r}"
        assert len(node["pos"]) == 2 and len(node["size"]) == 2
        assert node["mode"] in (0, 2, 4), f"{path.name}: node {node['id']} mode {node['mode']}"


@workflow_params()
def test_links_are_consistent(path):
    workflow = load(path)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {}
    for link in workflow["links"]:
        assert len(link) == 6, f"{path.name}: link {link} is not [id, from, slot, to, slot, type]"
        link_id, src, src_slot, dst, dst_slot, link_type = link
        links[link_id] = link
        where = f"{path.name}: link {link_id}"
        assert src in nodes, f"{where} comes from missing node {src}"
        assert dst in nodes, f"{where} goes to missing node {dst}"
        outputs = nodes[src].get("outputs") or []
        inputs = nodes[dst].get("inputs") or []
        assert 0 <= src_slot < len(outputs), f"{where}: node {src} has no output {src_slot}"
        assert 0 <= dst_slot < len(inputs), f"{where}: node {dst} has no input {dst_slot}"
        output, inp = outputs[src_slot], inputs[dst_slot]
        assert link_id in (output.get("links") or []), f"{where} not in its output's links"
        assert inp.get("link") == link_id, f"{where} not in its input's link"
        assert output["type"] == link_type, f"{where}: type {link_type} != {output['type']}"
        assert inp["type"] in (link_type, "*"), f"{where}: {link_type} into {inp['type']}"
    # and the other way round: nodes name only links the table has, pointing back to them
    for node in nodes.values():
        for slot, inp in enumerate(node.get("inputs") or []):
            if inp.get("link") is not None:
                link = links.get(inp["link"])
                assert link is not None, f"{path.name}: node {node['id']} names link {inp['link']}"
                assert (link[3], link[4]) == (node["id"], slot)
        for slot, output in enumerate(node.get("outputs") or []):
            for link_id in output.get("links") or []:
                link = links.get(link_id)
                assert link is not None, f"{path.name}: node {node['id']} names link {link_id}"
                assert (link[1], link[2]) == (node["id"], slot)


@workflow_params()
def test_our_nodes_exist(path, pack):
    workflow = load(path)
    for node in our_nodes(workflow):
        assert node["type"] in pack.NODE_CLASS_MAPPINGS, f"{path.name}: unknown {node['type']}"
        assert node["properties"].get("Node name for S&R") == node["type"]


@workflow_params()
def test_our_sockets_match_the_node(path, pack):
    for node in our_nodes(load(path)):
        cls = pack.NODE_CLASS_MAPPINGS[node["type"]]
        input_types = cls.INPUT_TYPES()
        sockets = socket_inputs(input_types)
        widget_names = {name for name, _, _ in expected_widgets(input_types)}
        where = f"{path.name}: {node['type']} (node {node['id']})"
        for inp in node.get("inputs") or []:
            if "widget" in inp:  # a widget converted to an input
                assert inp["widget"]["name"] in widget_names, f"{where}: {inp}"
                continue
            assert inp["name"] in sockets, f"{where}: no input {inp['name']!r}"
            assert inp["type"] == sockets[inp["name"]], f"{where}: {inp['name']} type"
        required = set(input_types.get("required", {})) & set(sockets)
        linked = {i["name"] for i in node.get("inputs") or [] if i.get("link") is not None}
        assert required <= linked, f"{where}: required inputs {sorted(required - linked)} unlinked"
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        outputs = node.get("outputs") or []
        assert [o["type"] for o in outputs] == list(cls.RETURN_TYPES), where
        assert [o["name"] for o in outputs] == list(names), where


def widget_value_problems(
    node: dict, input_types: dict, *, strict_files: bool = False
) -> list[str]:
    """What is wrong with a saved node's widgets_values (empty: it loads right).

    The values must cover every widget, or (a workflow saved by an older
    version of this pack) stop early with only widgets appended since missing.
    A combo naming the user's files (USER_FILES) is checked against the choices
    only with `strict_files` (a host that was given those files).
    """
    widgets = expected_widgets(input_types)
    names = [name for name, _, _ in widgets]
    values = node.get("widgets_values")
    where = f"{node['type']} (node {node['id']})"
    if not isinstance(values, list):
        return [f"{where}: widgets_values must be a list"]
    uploads = [n for n, kind, o in widgets if o.get("image_upload")]
    if uploads and len(values) == len(widgets) + 1 and values[-1] == "image":
        values = values[:-1]  # the upload button's value, saved by older frontends
    if len(values) > len(widgets):
        return [f"{where}: {len(values)} widget values for widgets {names}"]
    missing = names[len(values) :]
    not_appended = [n for n in missing if n not in APPENDED_WIDGETS.get(node["type"], [])]
    if not_appended:
        return [
            f"{where}: {len(values)} widget values for widgets {names}; "
            f"{not_appended} are missing (only widgets listed in APPENDED_WIDGETS may be)"
        ]
    problems = []
    for (name, kind, options), value in zip(widgets, values, strict=False):
        problem = value_problem(node["type"], name, kind, options, value, strict_files)
        if problem:
            problems.append(f"{where}: {name}={value!r} {problem}")
    return problems


def value_problem(node_type, name, kind, options, value, strict_files) -> str | None:
    """Why one widget value does not fit its widget (None: it fits)."""
    if name == "control_after_generate":
        return None if value in CONTROL_VALUES else f"is not one of {sorted(CONTROL_VALUES)}"
    if isinstance(kind, (list, tuple)):
        if (node_type, name) in USER_FILES and not strict_files:
            ok = isinstance(value, str) and value.strip()
            return None if ok else "is not a file or folder name"
        return None if value in kind else f"is not one of {list(kind)[:12]}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else "is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else "is not a string"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "is not a number"
    if kind == "INT" and not float(value).is_integer():
        return "is not an integer"
    if "min" in options and value < options["min"]:
        return f"< min {options['min']}"
    if "max" in options and value > options["max"]:
        return f"> max {options['max']}"
    step = options.get("step")
    if kind == "INT" and step and (value - options.get("min", 0) % step) % step:
        return f"is off the widget's step {step}"  # the frontend rounds it on the first edit
    return None


@workflow_params()
def test_our_widget_values_match_input_types(path, pack):
    for node in our_nodes(load(path)):
        cls = pack.NODE_CLASS_MAPPINGS[node["type"]]
        problems = widget_value_problems(node, cls.INPUT_TYPES())
        assert not problems, f"{path.name}: " + "; ".join(problems)


def widget_order_problem(node_id: str, current: list[str]) -> str | None:
    """Why ``current`` breaks the pinned widget order of ``node_id`` (None: it is kept)."""
    pinned = PINNED_WIDGETS[node_id]
    if current[: len(pinned)] == pinned:
        return None
    return (
        f"{node_id}: widgets {current} do not start with the pinned {pinned}: saved "
        "workflows would load their values into the wrong widgets (append new widgets "
        "at the end, never rename or reorder)"
    )


def test_widget_order_is_pinned(pack):
    """Every node's widgets start with the pinned order: only appending is allowed."""
    assert set(PINNED_WIDGETS) == set(pack.NODE_CLASS_MAPPINGS), (
        "pin the widget order of every node (and never drop a node id): "
        f"{sorted(set(PINNED_WIDGETS) ^ set(pack.NODE_CLASS_MAPPINGS))}"
    )
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        current = [name for name, _, _ in expected_widgets(cls.INPUT_TYPES())]
        problem = widget_order_problem(node_id, current)
        assert problem is None, problem


def test_pin_check_catches_an_inserted_or_renamed_widget():
    node_id = "NoiseCalibrationCalibrate"
    pinned = PINNED_WIDGETS[node_id]
    assert widget_order_problem(node_id, list(pinned)) is None
    assert widget_order_problem(node_id, [*pinned, "new_widget"]) is None  # appended
    inserted = [*pinned[:3], "new_widget", *pinned[3:]]
    renamed = ["renamed" if n == "label" else n for n in pinned]
    swapped = [pinned[1], pinned[0], *pinned[2:]]
    for broken in (inserted, renamed, swapped, pinned[:-1]):
        assert widget_order_problem(node_id, broken) is not None, broken


def test_appended_widgets_are_a_pinned_tail():
    for node_id, appended in APPENDED_WIDGETS.items():
        pinned = PINNED_WIDGETS[node_id]
        assert pinned[len(pinned) - len(appended) :] == appended, (
            f"{node_id}: appended widgets {appended} must be the end of {pinned}"
        )


def test_older_workflows_load_with_appended_widgets_missing(pack):
    """The compatibility rule itself: a saved node may lack appended widgets only."""
    node_id = "NoiseCalibrationCalibrate"
    input_types = pack.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
    node = next(n for path in WORKFLOWS for n in load(path)["nodes"] if n["type"] == node_id)
    values = node["widgets_values"]
    appended = len(APPENDED_WIDGETS[node_id])
    assert appended >= 1
    assert not widget_value_problems(node, input_types)
    older = {**node, "widgets_values": values[:-appended]}  # saved before `correction`
    assert not widget_value_problems(older, input_types)
    too_short = {**node, "widgets_values": values[: -appended - 1]}  # lacks max_batch
    assert widget_value_problems(too_short, input_types)
    too_long = {**node, "widgets_values": [*values, "off"]}
    assert widget_value_problems(too_long, input_types)
    shifted = {**node, "widgets_values": [values[0], *values[2:]]}  # a value dropped mid-way
    assert widget_value_problems(shifted, input_types)


@workflow_params()
def test_workflow_has_a_thumbnail(path):
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{path.name} has no {thumb.name} beside it"
    assert thumb.stat().st_size <= THUMBNAIL_MAX_BYTES, f"{thumb.name} is over 60 KB"
    with Image.open(thumb) as image:
        assert image.format == "JPEG", f"{thumb.name} is {image.format}, not JPEG"
        assert max(image.size) <= THUMBNAIL_MAX_SIDE, f"{thumb.name} is {image.size}"


def active(workflow: dict, node_type: str) -> list[dict]:
    """The workflow's nodes of this type that run (not muted or bypassed)."""
    return [n for n in workflow["nodes"] if n["type"] == node_type and n["mode"] == 0]


@workflow_params()
def test_nodes_that_read_a_calibration_run_after_the_calibrate_node(path):
    """ComfyUI runs independent branches in any order: a NoiseShift, Noise Level
    Correction or Spectral Scheduler node in a workflow that also calibrates must be
    downstream of the Calibrate node, or the first run could look for a file that is
    not written yet."""
    workflow = load(path)
    calibrators = {n["id"] for n in active(workflow, "NoiseCalibrationCalibrate")}
    if not calibrators:
        pytest.skip("no Calibrate node: the calibration comes from an earlier run")
    for node_type in READS_CALIBRATION:
        for node in active(workflow, node_type):
            assert upstream(workflow, node["id"]) & calibrators, (
                f"{path.name}: {node_type} (node {node['id']}) can run before the Calibrate "
                "node: link the Calibrate node's calibration output into it (or into the "
                "NoiseShift node whose MODEL it takes)"
            )


@workflow_params()
def test_calibrate_nodes_get_a_calibration_set(path):
    """16-64 images, not one: an IMAGE from a single Load Image is refused here; the
    examples use Load Image Folder, a LATENT batch, or self-generation."""
    workflow = load(path)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node in active(workflow, "NoiseCalibrationCalibrate"):
        names = PINNED_WIDGETS["NoiseCalibrationCalibrate"]
        data = dict(zip(names, node["widgets_values"], strict=False)).get("data", "auto")
        linked = {i["name"]: i["link"] for i in node["inputs"] if i.get("link") is not None}
        where = f"{path.name}: Calibrate (node {node['id']})"
        if "image" in linked:
            link = next(lk for lk in workflow["links"] if lk[0] == linked["image"])
            assert nodes[link[1]]["type"] != "LoadImage", f"{where}: one Load Image as its data"
            assert "vae" in linked, f"{where}: an IMAGE input needs the VAE input"
        elif "latent" not in linked:
            assert data in ("auto", "self-generate"), f"{where}: data {data!r}, nothing connected"
