#!/usr/bin/env bash
# Set up .venv, lint, then run the whole test suite against a real ComfyUI host.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
