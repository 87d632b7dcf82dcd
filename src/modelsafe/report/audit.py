"""The audit report: ``report.md`` (a summary table, then one table per attack) and ROC plots ``roc.png``
(linear axes) and ``roc_log.png`` (log-log axes, where low-FPR behaviour is visible)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from modelsafe.errors import ModelsafeError
from modelsafe.privacy.metrics import fpr_key
from modelsafe.privacy.report import MIAReport, file_stem
from modelsafe.report.tables import markdown_table
from modelsafe.storage.io import atomic_write, write_text


def summary_rows(reports: Mapping[str, MIAReport]) -> list[dict]:
    """One row per attack: accuracy, AUC, advantage, TPR at each FPR level, seconds."""
    rows = []
    for label, r in reports.items():
        row = {"attack": label, "balanced acc": r.accuracy, "AUC": r.auc, "advantage": r.advantage}
        row.update({fpr_key(lv).replace("tpr", "TPR"): v for lv, v in r.tpr_at_fpr.items()})
        row["seconds"] = r.seconds if r.seconds is not None else None
        rows.append(row)
    return rows


def _fmt_interval(r: MIAReport, key: str) -> str:
    lo_hi = r.intervals.get(key)
    return f"[{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else "n/a"


def attack_table(r: MIAReport) -> str:
    conf = f"{100 * r.confidence:g}% CI"
    rows = [{"metric": "balanced accuracy (threshold from attacker data)", "value": r.accuracy,
             conf: _fmt_interval(r, "accuracy")},
            {"metric": "advantage (2·acc − 1)", "value": r.advantage, conf: _fmt_interval(r, "advantage")},
            {"metric": "max advantage (oracle threshold, optimistic)", "value": r.max_advantage, conf: ""},
            {"metric": "AUC", "value": r.auc, conf: _fmt_interval(r, "auc")}]
    for lv, v in r.tpr_at_fpr.items():
        rows.append({"metric": f"TPR at {100 * lv:g}% FPR", "value": v, conf: _fmt_interval(r, fpr_key(lv))})
    rows.append({"metric": "threshold", "value": r.threshold if math.isfinite(r.threshold) else str(r.threshold),
                 conf: ""})
    rows.append({"metric": "members / non-members", "value": f"{r.n_members} / {r.n_nonmembers}", conf: ""})
    return markdown_table(rows, floatfmt=".4f")


def plot_rocs(reports: Mapping[str, MIAReport], path: Path, log: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    floor = 1.0 / max(max(r.n_nonmembers, r.n_members) for r in reports.values())
    for label, r in reports.items():
        fpr, tpr = r.fpr, r.tpr
        if log:
            fpr, tpr = np.maximum(fpr, floor / 2), np.maximum(tpr, floor / 2)
        ax.plot(fpr, tpr, label=f"{label} (AUC {r.auc:.3f})", lw=1.2)
    lo = floor / 2 if log else 0.0
    ax.plot([lo, 1], [lo, 1], "k--", lw=0.8, label="chance")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, 1)
        ax.set_ylim(lo, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (log-log)" if log else "ROC")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130))
    finally:
        plt.close(fig)


def write_audit_report(reports: Mapping[str, MIAReport], out_dir: str | os.PathLike, *,
                       title: str = "Membership-inference audit", context: Mapping[str, object] | None = None
                       ) -> Path:
    """Write ``report.md``, ``roc.png``, ``roc_log.png`` and per-attack scores (``scores/<attack>.json/.npz``)
    into ``out_dir``; returns the path of ``report.md``. ``context`` (e.g. target, dataset, task accuracy)
    is listed at the top."""
    out = Path(out_dir)
    if not reports:
        raise ModelsafeError("no reports to write")
    for r in reports.values():
        r.save(out / "scores")
    plot_rocs(reports, out / "roc.png", log=False)
    plot_rocs(reports, out / "roc_log.png", log=True)
    lines = [f"# {title}", ""]
    if context:
        lines += [markdown_table([{"item": k, "value": v} for k, v in context.items()], floatfmt=".4f"), ""]
    protocol = ("Protocol: each attack is fitted on attacker-known members vs non-members and evaluated on held-out "
                "members vs non-members. Balanced accuracy uses a threshold the attack chose on its own data; AUC "
                "and TPR at fixed FPR are threshold-free. A TPR at an FPR below 1/(number of non-members) equals "
                "the TPR at 0% FPR.")
    lines += [protocol, "", "## Summary", "", markdown_table(summary_rows(reports), floatfmt=".4f"),
              "![ROC](roc.png) ![ROC, log-log](roc_log.png)", ""]
    for label, r in reports.items():
        lines += [f"## {label}", "", attack_table(r), ""]
        details = ", ".join(f"{k}={v}" for k, v in r.details.items())
        if details:
            lines += [f"Settings: {details}", ""]
        lines += [f"Per-sample scores: `scores/{file_stem(label)}.npz` (scores, labels, sample_ids, ROC).", ""]
    return write_text(out / "report.md", "\n".join(lines))
