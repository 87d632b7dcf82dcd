"""Every script in examples/ runs to the end (exit status 0) and prints its key figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelsafe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> (a line its output must contain (regex), whether it is too long for the default run)
CASES = {
    "transfer_attack.py": (r"smi-fgrm black-box success on the mlp: \d+\.\d%", True),
    "membership_audit.py": (r"^lira +\d\.\d{3} +\d\.\d{3} +\d\.\d{3}$", True),
    "sparse_rigl.py": (r"packed file: [\d,]+ bytes vs [\d,]+ dense \(\d+\.\dx smaller\)", True),
    "safecompress_digits.py": (r"^bmia-safecompress +0\.\d{3} +[\d,]+ ", True),
    "run_folder.py": (r"second call resumed: True", False),
}


def run_script(path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``path`` with this interpreter on one thread, importing the modelsafe this test session imports."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    src = str(Path(modelsafe.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, str(path), *args], check=False, capture_output=True, text=True,
                          env=env, cwd=path.parent, timeout=timeout)


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)
    for name in CASES:  # every example takes --out and defaults to a new temporary folder
        source = (EXAMPLES / name).read_text(encoding="utf-8")
        assert '"--out"' in source and "tempfile.mkdtemp(" in source, name


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if slow else []) for name, (_, slow) in CASES.items()])
def test_example_runs(name, tmp_path):
    pattern, _ = CASES[name]
    out = tmp_path / "out"
    start = time.perf_counter()
    proc = run_script(EXAMPLES / name, "--out", str(out))
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert re.search(pattern, proc.stdout, re.MULTILINE), f"{name}: no line {pattern!r} in:\n{proc.stdout}"
    assert out.is_dir() and any(out.iterdir()), f"{name} wrote nothing into --out"
    print(f"{name}: {seconds:.1f} s")

