#!/usr/bin/env bash
# Set up .venv (first run only does real work) and run the headless CLI:
#   bash scripts/run.sh demo        the main job on the embedded reference model
#   bash scripts/run.sh --help      every subcommand
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m noisecal_host "$@"
