#!/usr/bin/env bash
# Set up (or update) the environment, then run the default test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/privacy -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest "$@"
