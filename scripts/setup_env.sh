#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) and the data it can get from the OS.
# Idempotent: safe to run on a fresh machine and on one that already has the environment. After a successful
# install it writes a stamp (.venv/.modelsafe-setup) holding a hash of pyproject.toml, this script, the torch
# requirement and the checkout's path; while the stamp matches, the script does nothing. A changed
# pyproject.toml or script, a new checkout or a missing .venv installs again; MODELSAFE_REINSTALL=1 forces it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${MODELSAFE_VENV:-.venv}
# torch: the CPU build on these machines. Any torch>=2.2 works for the package itself.
TORCH_SPEC=${MODELSAFE_TORCH:-torch==2.13.0}
STAMP="$VENV/.modelsafe-setup"

wanted=$( { cat pyproject.toml scripts/setup_env.sh; printf '%s\n%s\n' "$TORCH_SPEC" "$(pwd -P)"; } \
  | "$PY" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ -z "${MODELSAFE_REINSTALL:-}" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] \
  && "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("modelsafe") and u.find_spec("torch")))' \
     2>/dev/null; then
  echo "environment up to date: $VENV (MODELSAFE_REINSTALL=1 installs again)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
rm -f "$STAMP"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"

# Fashion-MNIST from Debian, where apt is usable (root, no network besides the registries).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1) \
    || echo "note: could not install dataset-fashion-mnist through apt; tests fall back to generated data"
fi

$PIP install "$TORCH_SPEC"
$PIP install -e ".[dev,dp,docs]"
# The comparison peers. torchattacks' declared deps would replace the CPU torch, so it goes in without them;
# ART imports `packaging` without declaring it.
$PIP install adversarial-robustness-toolbox packaging
$PIP install --no-deps torchattacks

echo "$wanted" > "$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
echo "environment ready: $VENV"
