#!/usr/bin/env bash
# Set up (or update) the environment, then run the main job: `modelsafe demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/modelsafe demo "$@"
