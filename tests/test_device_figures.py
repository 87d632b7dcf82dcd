"""benchmarks/device_figures.py (the figures a GPU run records) runs end to end on a CPU and measures every
figure it prints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_figures.py"


@pytest.mark.slow
def test_device_figures_on_a_cpu(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--dataset", "digits", "--images", "6",
                           "--members", "200", "--epochs", "1", "--repeats", "1", "--threads", "1", "--json", str(out)],
                          check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert [(r["attack"], r["how"]) for r in figures["attacks"]] == [
        (a, h) for a in ("mi-fgsm", "smi-fgrm", "pgn") for h in ("loop", "modelsafe", "modelsafe, bf16 autocast")]
    assert all(r["images / s"] > 0 and r["host syncs per step"] is None for r in figures["attacks"])  # no CUDA here
    assert [r["figure"].split(":")[0] for r in figures["training"]][1:] == ["rigl", "bmia-safecompress"]
    assert all(r["value"] > 0 for r in figures["training"])
    assert "| smi-fgrm | modelsafe |" in done.stdout
