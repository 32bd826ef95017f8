"""Every node's full INPUT_TYPES against a snapshot taken from the released
nodes (tests/fixtures/node_inputs.json): ids, widget names and their order,
types, defaults, bounds and tooltips. Saved workflows map widget values by
position, so a reordered, renamed or re-defaulted widget breaks them.

Lists the host or the disk fills (ComfyUI's samplers and schedulers, the
reference networks present, the input folder's subfolders) are compared by
their source, not their contents, so the snapshot holds on every host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "node_inputs.json"


def host_lists(pack_module) -> dict[str, list]:
    import comfy.samplers

    return {
        "<comfy KSampler.SAMPLERS>": list(comfy.samplers.KSampler.SAMPLERS),
        "<comfy KSampler.SCHEDULERS>": list(comfy.samplers.KSampler.SCHEDULERS),
        "<reference networks present>": pack_module("noisecal_host.reference_models").names(),
        "<input subfolders>": pack_module("noisecal_host.input_folders").folder_choices(),
    }


def as_json(value, lists: dict[str, list]):
    """INPUT_TYPES as JSON keeps it (tuples as lists), host lists as their name,
    every dict as [key, value] pairs so the order is compared too."""
    if isinstance(value, dict):
        return [[key, as_json(item, lists)] for key, item in value.items()]
    if isinstance(value, (list, tuple)):
        items = list(value)
        for name, host_list in lists.items():
            if items and items == host_list:
                return name
        return [as_json(item, lists) for item in items]
    return value


def snapshot(pack, pack_module) -> dict:
    lists = host_lists(pack_module)
    return {
        node_id: as_json(cls.INPUT_TYPES(), lists)
        for node_id, cls in sorted(pack.NODE_CLASS_MAPPINGS.items())
    }


def test_every_node_input_matches_the_released_snapshot(pack, pack_module):
    expected = json.loads(FIXTURE.read_text())
    current = json.loads(json.dumps(snapshot(pack, pack_module)))
    assert sorted(current) == sorted(expected)
    for node_id in expected:
        assert current[node_id] == expected[node_id], node_id


def test_the_snapshot_names_every_host_list(pack, pack_module):
    """The fixture must not hold a host's own list (it would fail on another host)."""
    text = FIXTURE.read_text()
    for name in host_lists(pack_module):
        if name != "<input subfolders>":  # '.' alone without an input folder
            assert json.dumps(name) in text, name


def test_each_node_names_the_function_comfyui_calls(pack):
    """FUNCTION is declared in the node's own class, beside the method a reader
    sees, and names a method of the node."""
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert "FUNCTION" in vars(cls), node_id
        assert callable(getattr(cls, cls.FUNCTION, None)), node_id


def test_every_input_needs_its_tooltip(pack_module):
    widgets = pack_module("nodes.widgets")
    steps = widgets.Int("steps", 8, min=1)
    assert widgets.input_types({"steps": "How many."}, [steps]) == {
        "required": {"steps": ("INT", {"default": 8, "min": 1, "tooltip": "How many."})}
    }
    with pytest.raises(KeyError, match="'steps' has no tooltip"):
        widgets.input_types({}, [steps])
    with pytest.raises(KeyError, match="tooltips for no input"):
        widgets.input_types({"steps": "How many.", "stpes": "typo"}, [steps])


if __name__ == "__main__":  # rewrite the fixture: only for a deliberate, reviewed change
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import importlib

    from noisecal_host.host import ensure_host
    from noisecal_host.pack_loader import load_pack

    ensure_host(cpu=True)
    loaded = load_pack()
    modules = lambda name: importlib.import_module(f"{loaded.__name__}.{name}")  # noqa: E731
    FIXTURE.write_text(json.dumps(snapshot(loaded, modules), indent=1) + "\n")
