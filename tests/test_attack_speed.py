"""benchmarks/attack_speed.py: its straightforward loops are the library's algorithms (same images in float64),
so its timings compare one algorithm written two ways."""

import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "attack_speed.py"


def test_every_loop_gives_the_library_images_in_float64():
    done = subprocess.run([sys.executable, str(SCRIPT), "--dataset", "digits", "--images", "6", "--steps", "3",
                           "--repeats", "2", "--threads", "1"], check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and "attack" not in line]
    assert [r[0].strip() for r in rows] == ["mi-fgsm", "smi-fgrm", "pgn", "gra", "mef", "bsr", "sia"]
    for name, evals, loop, lib, ratio, paired, diff in rows:
        assert float(diff) < 1e-9, (name, diff)
        assert float(loop) > 0 and float(lib) > 0
        mean, low, high = (float(v) for v in paired.replace("[", "").replace("]", "").replace(",", "").split())
        assert 0 <= low <= mean <= high and mean > 0
    assert [int(r[1]) for r in rows] == [3, 39, 120, 63, 60, 60, 60]  # counted by the library at T = 3


def test_paired_ratio_is_the_geometric_mean_of_round_ratios_with_a_t_interval():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from attack_speed import paired_ratio
    finally:
        sys.path.pop(0)
    assert paired_ratio([2.0], [1.0]) is None
    mean, low, high = paired_ratio([2.0, 8.0], [1.0, 2.0])  # ratios 2 and 4
    assert abs(mean - 8 ** 0.5) < 1e-12
    half = 12.7062047 * math.log(2) / 2  # t(0.975, 1 df) * stdev(log 2, log 4) / sqrt(2 rounds)
    assert abs(math.log(high) - math.log(mean) - half) < 1e-6 and abs(math.log(mean) - math.log(low) - half) < 1e-6
