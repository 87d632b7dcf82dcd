#!/usr/bin/env bash
# Create or update the optional vision environment (.venv-vision): torch + torchvision + timm, for the
# `timm:<name>` / `torchvision:<name>` model adapters and the ImageNet protocol. Kept apart from .venv because
# torchvision needs its matching torch build (on these machines torch 2.14.1, a CUDA build that also runs on the
# CPU; about 5.5 GB). Idempotent: safe to run again; it only installs what is missing or out of date.
# Run the vision tests with: .venv-vision/bin/python -m pytest -m vision
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${MODELSAFE_VISION_VENV:-.venv-vision}
TORCH_SPEC=${MODELSAFE_VISION_TORCH:-torch==2.14.1}
TORCHVISION_SPEC=${MODELSAFE_VISION_TORCHVISION:-torchvision==0.29.1}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"

# torch and torchvision together, so that pip never pairs torchvision with a torch it was not built for.
$PIP install "$TORCH_SPEC" "$TORCHVISION_SPEC"
$PIP install timm
$PIP install -e ".[dev,vision]"
echo "vision environment ready: $VENV"
