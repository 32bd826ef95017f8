#!/usr/bin/env bash
# Set up the browser tests (tests/test_browser.py): Debian's chromium and
# chromium-driver (apt-get, needs root) and npm's playwright-core into the
# git-ignored .cache/node. Not part of CI: the snapshot CI skips the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium is missing: run as root, or apt-get install chromium chromium-driver" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
command -v node >/dev/null || { echo "node (and npm) are needed for playwright-core" >&2; exit 1; }
mkdir -p .cache/node
if [ ! -d .cache/node/node_modules/playwright-core ]; then
    (cd .cache/node && { [ -f package.json ] || npm init -y >/dev/null; } && npm install playwright-core)
fi
echo "chromium: $(chromium --version)"
echo "playwright-core: $(node -p "require('./.cache/node/node_modules/playwright-core/package.json').version")"
echo "run: COMFYUI_PATH=<ComfyUI checkout> COMFYUI_PYTHON=<its python> .venv/bin/python -m pytest tests/test_browser.py"
