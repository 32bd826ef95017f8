"""The web extension keeps to its own part of the shared ComfyUI page.

ComfyUI imports every pack's `web/**/*.js` into one page, so a pack's script must
not write globals onto `window`/`globalThis`, append elements to `document.body`
or `document.head`, or listen on the whole document. The static check here needs
nothing but Python; `comfy-test lint` and `comfy-test coverage` (PyPI package
comfy-test, a test tool for ComfyUI node packs) run when it is installed, else
their tests skip saying so. See docs/web-extension.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "web").rglob("*.js"))

# global writes, insertions into the shared document, document-wide listeners
FORBIDDEN = {
    "global write": re.compile(r"\b(?:window|globalThis)\s*(?:\.\s*\w+|\[[^\]]+\])\s*=(?!=)"),
    "global write (Object.assign/defineProperty)": re.compile(
        r"\bObject\.(?:assign|defineProperty|defineProperties)\(\s*(?:window|globalThis)\b"
    ),
    "element added to the shared document": re.compile(
        r"\bdocument\.(?:body|head|documentElement)\s*\??\.\s*"
        r"(?:append|appendChild|prepend|insertBefore|insertAdjacent\w+|replaceChildren)\b"
    ),
    "document-wide listener": re.compile(r"\bdocument(?:\.body)?\s*\??\.\s*addEventListener\b"),
}


def code_only(source: str) -> str:
    """The source without comments (string contents are kept: a rough cut is enough
    for a file that puts no `//` or `/*` inside its strings' code patterns)."""
    source = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), source, flags=re.S)
    return re.sub(r"(?m)(?<![:\"'`])//.*$", "", source)


def findings(source: str) -> list[str]:
    code = code_only(source)
    return [
        f"line {code.count(chr(10), 0, m.start()) + 1}: {what}: {m.group(0)}"
        for what, pattern in FORBIDDEN.items()
        for m in pattern.finditer(code)
    ]


def test_there_is_a_web_extension():
    assert SCRIPTS, "web/ holds no .js file"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_no_globals_and_no_shared_document_writes(path):
    found = findings(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(found)


def test_the_check_finds_what_it_looks_for():
    bad = (
        "window.noiseCalibration = {};\n"
        "globalThis['x'] = 1;\n"
        "Object.assign(window, { a: 1 });\n"
        "document.body.append(box);\n"
        "document.head.appendChild(style);\n"
        "document.addEventListener('keydown', f);\n"
    )
    assert len(findings(bad)) == 6
    fine = (
        "// window.noiseCalibration = {} (a comment)\n"
        "if (window.x === 1) container.append(box);\n"
        "const node = document.createElement('div');\n"
    )
    assert findings(fine) == []


def comfy_test() -> str:
    exe = os.environ.get("COMFY_TEST") or shutil.which("comfy-test")
    if not exe:
        pytest.skip(
            "comfy-test is not installed (python3 -m venv /tmp/ct && /tmp/ct/bin/pip "
            "install comfy-test; COMFY_TEST=/tmp/ct/bin/comfy-test to point at it)"
        )
    return exe


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [comfy_test(), *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_comfy_test_lint():
    out = run("lint", "--strict", str(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr


def test_comfy_test_coverage():
    out = run("coverage", "--workflows", "example_workflows", "--strict", str(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr
