"""Tables and plots of compression comparisons: mean ± std per method over seeds, paired per-seed
differences with a Student-t interval, the Markdown table and the privacy-utility plot."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence

from modelsafe.report.tables import markdown_table

# short column prefixes of the two learned audit attacks; other audits keep their registry names
AUDIT_SHORT = {"blackbox-nn": "bmia", "whitebox": "wmia"}


def summarise(rows: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    """Mean and sample standard deviation over seeds of every numeric column, per method."""
    summary = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        entry: dict = {"method": method, "seeds": len(mine)}
        for key in {k for r in mine for k, v in r.items() if isinstance(v, (int, float)) and k != "seed"}:
            values = [r[key] for r in mine if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if values:
                entry[key] = statistics.fmean(values)
                entry[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def paired_difference(rows: Sequence[dict], method: str, baseline: str, key: str,
                      confidence: float = 0.95) -> dict | None:
    """``method`` minus ``baseline`` on column ``key``, paired by seed (both runs of a seed share the split,
    initial weights and masks): per-seed differences, their mean, sample std, a Student-t ``confidence``
    interval of the mean, and the relative change mean(difference) / mean(baseline) with its interval on the
    same scale. None when fewer than two seeds have both runs."""
    from scipy.stats import t as student_t

    mine = {r["seed"]: r.get(key) for r in rows if r["method"] == method}
    base = {r["seed"]: r.get(key) for r in rows if r["method"] == baseline}
    seeds = sorted(s for s in mine if s in base and _finite(mine[s]) and _finite(base[s]))
    if len(seeds) < 2:
        return None
    diffs = [mine[s] - base[s] for s in seeds]
    mean, std = statistics.fmean(diffs), statistics.stdev(diffs)
    half = float(student_t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * std / math.sqrt(len(diffs))
    ref = statistics.fmean(base[s] for s in seeds)
    rel = (lambda v: v / ref) if ref > 0 else (lambda v: math.nan)
    return {"method": method, "baseline": baseline, "key": key, "seeds": seeds, "differences": diffs,
            "mean": mean, "std": std, "ci": [mean - half, mean + half], "baseline_mean": ref,
            "relative": rel(mean), "relative_ci": [rel(mean - half), rel(mean + half)],
            "excludes_zero": bool(mean + half < 0 or mean - half > 0)}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def format_table(summary: Sequence[dict]) -> str:
    """The Markdown table of :func:`summarise` rows: mean ± std (mean alone for one seed) of task accuracy,
    every audit's accuracy, advantage and AUC, the first audit's TPR at 0.1% FPR, density, size, time, ε."""

    def cell(entry: dict, key: str) -> str:
        if key == "method":
            return entry["method"]
        if key not in entry:
            return ""
        mean, std = entry[key], entry.get(key + "_std", 0.0)
        if key == "export_bytes":
            return f"{mean / 1024:.1f} KiB"
        if key == "seconds":
            return f"{mean:.0f} s"
        if key == "epsilon":
            return f"{mean:.2f}"
        return f"{mean:.3f} ± {std:.3f}" if entry["seeds"] > 1 else f"{mean:.3f}"

    audits = list(dict.fromkeys(k[:-len("_advantage")] for e in summary for k in e
                                if k.endswith("_advantage") and not k.endswith("_std")))
    audits.sort(key=lambda a: (a not in AUDIT_SHORT.values(), a))  # bmia, wmia first, then the others by name
    columns = ["method", "task_accuracy", *(f"{a}_{k}" for a in audits for k in ("accuracy", "advantage")),
               *(f"{a}_auc" for a in audits), *(f"{a}_tpr@0.1%" for a in audits[:1]),
               "density", "export_bytes", "seconds", "epsilon"]
    columns = [c for c in columns if c == "method" or any(c in e for e in summary)]
    return markdown_table([{c: cell(e, c) for c in columns} for e in summary], columns)


def plot_tradeoff(summary: Sequence[dict], path: str | os.PathLike) -> None:
    """Privacy-utility scatter: task accuracy against the black-box attack advantage (or, without a
    ``blackbox-nn`` audit, the first audit's), ±1 std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from modelsafe.storage.io import atomic_write

    keys = [k for e in summary for k in e if k.endswith("_advantage")]
    audit = "bmia" if "bmia_advantage" in keys else keys[0][:-len("_advantage")] if keys else None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for entry in summary:
        if audit is None or f"{audit}_advantage" not in entry:
            continue
        ax.errorbar(entry[f"{audit}_advantage"], entry["task_accuracy"], xerr=entry.get(f"{audit}_advantage_std", 0),
                    yerr=entry.get("task_accuracy_std", 0), fmt="o", capsize=3, label=entry["method"])
    name = {"bmia": "black-box MIA"}.get(audit, f"{audit} MIA")
    ax.set_xlabel(f"{name} advantage (2·acc − 1), lower is safer")
    ax.set_ylabel("task accuracy")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
