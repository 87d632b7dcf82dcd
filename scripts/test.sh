#!/usr/bin/env bash
# Set up (or update) the environment, then run the default test suite (everything not marked slow; the 15
# slowest tests are listed at the end). Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/privacy -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec "${MODELSAFE_VENV:-.venv}/bin/python" -m pytest "$@"
