"""The shipped example workflows load in ComfyUI's frontend as they are.

For every `example_workflows/*.json` (the frontend's saved-workflow format,
version 0.4): the link table agrees with the nodes' inputs and outputs, every
node of this pack exists, and its widgets_values line up with the widgets the
frontend builds from INPUT_TYPES (a stale order would shift every value into
the wrong widget). Each workflow has a JPEG thumbnail beside it.
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
SHOWN_NODES = ("NoiseCalibrationCalibrate", "NoiseCalibrationNoiseShift")  # need an example
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
SEED_NAMES = {"seed", "noise_seed"}  # INT inputs the frontend gives a control widget
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
THUMBNAIL_MAX_BYTES = 60_000
THUMBNAIL_MAX_SIDE = 1024


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def workflow_params():
    return pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])


def our_nodes(workflow: dict) -> list[dict]:
    return [n for n in workflow["nodes"] if str(n["type"]).startswith(OUR_PREFIX)]


def expected_widgets(input_types: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of each widget, in the order the frontend creates them."""
    widgets = []
    for group in ("required", "optional"):
        for name, spec in input_types.get(group, {}).items():
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if options.get("forceInput"):
                continue
            if isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES:
                widgets.append((name, kind, options))
                if kind == "INT" and (name in SEED_NAMES or options.get("control_after_generate")):
                    widgets.append(("control_after_generate", list(CONTROL_VALUES), {}))
    return widgets


def socket_inputs(input_types: dict) -> dict[str, str]:
    """Inputs the frontend draws as sockets: name -> type."""
    sockets = {}
    for group in ("required", "optional"):
        for name, spec in input_types.get(group, {}).items():
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            is_widget = isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES
            if not is_widget or options.get("forceInput"):
                sockets[name] = kind
    return sockets


def test_there_are_example_workflows():
    assert WORKFLOWS, "example_workflows/ holds no workflow"


def test_examples_show_the_noiseshift_nodes():
    used = {n["type"] for path in WORKFLOWS for n in load(path)["nodes"]}
    missing = set(SHOWN_NODES) - used
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


@workflow_params()
def test_our_widget_values_match_input_types(path, pack):
    for node in our_nodes(load(path)):
        cls = pack.NODE_CLASS_MAPPINGS[node["type"]]
        widgets = expected_widgets(cls.INPUT_TYPES())
        values = node.get("widgets_values")
        where = f"{path.name}: {node['type']} (node {node['id']})"
        assert isinstance(values, list), f"{where}: widgets_values must be a list"
        assert len(values) == len(widgets), (
            f"{where}: {len(values)} widget values for widgets {[w[0] for w in widgets]}"
        )
        for (name, kind, options), value in zip(widgets, values, strict=True):
            label = f"{where}: {name}={value!r}"
            if name == "control_after_generate":
                assert value in CONTROL_VALUES, label
            elif isinstance(kind, (list, tuple)):
                assert value in kind, f"{label} is not one of {list(kind)}"
            elif kind == "BOOLEAN":
                assert isinstance(value, bool), label
            elif kind == "STRING":
                assert isinstance(value, str), label
            else:
                assert isinstance(value, (int, float)) and not isinstance(value, bool), label
                if kind == "INT":
                    assert float(value).is_integer(), f"{label} is not an integer"
                if "min" in options:
                    assert value >= options["min"], f"{label} < min {options['min']}"
                if "max" in options:
                    assert value <= options["max"], f"{label} > max {options['max']}"


@workflow_params()
def test_workflow_has_a_thumbnail(path):
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{path.name} has no {thumb.name} beside it"
    assert thumb.stat().st_size <= THUMBNAIL_MAX_BYTES, f"{thumb.name} is over 60 KB"
    with Image.open(thumb) as image:
        assert image.format == "JPEG", f"{thumb.name} is {image.format}, not JPEG"
        assert max(image.size) <= THUMBNAIL_MAX_SIDE, f"{thumb.name} is {image.size}"
