"""benchmarks/attack_speed.py: its straightforward loops are the library's algorithms (same images in float64),
so its timings compare one algorithm written two ways."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "attack_speed.py"


def test_every_loop_gives_the_library_images_in_float64():
    done = subprocess.run([sys.executable, str(SCRIPT), "--dataset", "digits", "--images", "6", "--steps", "3",
                           "--repeats", "1", "--threads", "1"], check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and "attack" not in line]
    assert [r[0].strip() for r in rows] == ["mi-fgsm", "smi-fgrm", "pgn", "gra", "mef", "bsr", "sia"]
    for name, evals, loop, lib, ratio, diff in rows:
        assert float(diff) < 1e-9, (name, diff)
        assert float(loop) > 0 and float(lib) > 0
    assert [int(r[1]) for r in rows] == [3, 39, 120, 63, 60, 60, 60]  # counted by the library at T = 3
