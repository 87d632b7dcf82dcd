"""benchmarks/safecompress.py: the selection-rule options reach the selecting methods only, so that
``accuracy-safecompress`` stays the same run (and its finished runs stay reusable) whatever rule is tried."""

import argparse
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "safecompress.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("safecompress_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(**changes) -> argparse.Namespace:
    base = dict(minmax_lambda=1.0, risk=None, holdout_fraction=None, candidates=None, tests=None,
                probe_steps=None, keep_probe=False, objective_weight=None, noise_multiplier=1.0)
    return argparse.Namespace(**{**base, **changes})


def test_the_selection_rule_reaches_the_selecting_methods_only():
    bench = _benchmark()
    extra = bench._method_options(_args(risk="gap", objective_weight=3.0, probe_steps=50, holdout_fraction=0.5))
    for name in bench.SELECTING:
        assert extra[f"safecompress:{name}"]["risk"] == "gap"
        assert extra[f"safecompress:{name}"]["objective_weight"] == 3.0
    accuracy_only = extra["safecompress:accuracy-safecompress"]
    assert "risk" not in accuracy_only and "objective_weight" not in accuracy_only
    assert accuracy_only["probe_steps"] == 50  # what is not the selection rule stays shared
    assert extra["safecompress"]["holdout_fraction"] == 0.5 and "risk" not in extra["safecompress"]


def test_no_rule_options_leave_the_library_defaults():
    extra = _benchmark()._method_options(_args())
    assert set(extra) == {"safecompress", "dp"}
    assert extra["safecompress"] == {"minmax_lambda": 1.0}


def test_probing_options_reach_the_selecting_methods_and_their_accuracy_only_ablation_only():
    bench = _benchmark()
    candidates = ["magnitude/gradient", "magnitude/gradient~3"]
    extra = bench._method_options(_args(keep_probe=True, candidates=candidates))
    for name in (*bench.SELECTING, "accuracy-safecompress"):
        assert extra[f"safecompress:{name}"]["keep_probe"] is True
        assert extra[f"safecompress:{name}"]["candidates"] == tuple(candidates)
    # advreg-sparse (one candidate, no selection) must not receive them through the shared options
    assert "candidates" not in extra["safecompress"] and "keep_probe" not in extra["safecompress"]
    assert "safecompress:advreg-sparse" not in extra
