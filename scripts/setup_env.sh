#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) and the data it can get from the OS.
# Idempotent: safe to run on a fresh machine and on one that already has the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${MODELSAFE_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"

# Fashion-MNIST from Debian, where apt is usable (root, no network besides the registries).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1) \
    || echo "note: could not install dataset-fashion-mnist through apt; tests fall back to generated data"
fi

# torch: the CPU build on these machines. Any torch>=2.2 works for the package itself.
TORCH_SPEC=${MODELSAFE_TORCH:-torch==2.13.0}
$PIP install "$TORCH_SPEC"
$PIP install -e ".[dev,dp]"
# The comparison peers. torchattacks' declared deps would replace the CPU torch, so it goes in without them;
# ART imports `packaging` without declaring it.
$PIP install adversarial-robustness-toolbox packaging
$PIP install --no-deps torchattacks
echo "environment ready: $VENV"
