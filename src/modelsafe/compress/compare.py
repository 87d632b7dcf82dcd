"""Compare compression methods on one membership split per seed, then audit each result afresh.

For every (seed, method): a fresh model (same initialisation for every method of a seed) is compressed on the
split's members; the result is scored for task accuracy on the test split and audited by *fresh* attackers
fitted on the attacker-known sets and evaluated on the held-out evaluation sets (``eval_members`` /
``eval_nonmembers``), which no attacker used during training ever saw. Each run lives in
``out/<method>/seed<k>/`` (checkpoints, ``result.json``, exported sparse weights), so an interrupted comparison
resumes where it stopped. The table (Markdown, CSV, JSON) reports mean ± std over seeds.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from modelsafe.compress.methods import CompressOptions, compress, get_method
from modelsafe.data import Dataset, MembershipSplit, SplitSpec
from modelsafe.errors import ModelsafeError
from modelsafe.report.io import markdown_table, read_json, write_csv, write_json, write_text
from modelsafe.targets import init_model
from modelsafe.training import evaluate
from modelsafe.utils import derive_seed, resolve_device

AUDIT_ATTACKS = ("blackbox-nn", "whitebox")
COLUMNS = ("method", "task_accuracy", "bmia_accuracy", "bmia_advantage", "wmia_accuracy", "wmia_advantage",
           "bmia_auc", "bmia_tpr@0.1%", "density", "export_bytes", "seconds", "epsilon")
_SHORT = {"blackbox-nn": "bmia", "whitebox": "wmia"}


def audit_model(model: torch.nn.Module, dataset: Dataset, split: MembershipSplit, attacks: Sequence[str] = AUDIT_ATTACKS,
                *, seed: int = 0, device: str | torch.device | None = None, attack_options: dict | None = None,
                n_bootstrap: int = 200) -> dict[str, dict]:
    """Fresh attackers fitted on the attacker-known sets, evaluated on the evaluation sets."""
    from modelsafe.privacy import create_mia

    pool = dataset.pool()
    known = split.data(dataset, "attack_known_members", pool)
    reference = split.data(dataset, "attack_reference", pool)
    members = split.data(dataset, "eval_members", pool)
    nonmembers = split.data(dataset, "eval_nonmembers", pool)
    out = {}
    for name in attacks:
        attack = create_mia(name, seed=derive_seed(seed, "audit", name), device=device,
                            **(attack_options or {}).get(name, {}))
        attack.fit(model, known, reference)
        report = attack.evaluate(model, members, nonmembers, n_bootstrap=n_bootstrap)
        out[name] = {"accuracy": report.accuracy, "advantage": report.advantage, "auc": report.auc,
                     "tpr_at_fpr": {str(k): v for k, v in report.tpr_at_fpr.items()}, "seconds": report.seconds}
    return out


def run_one(method: str, dataset: Dataset, split: MembershipSplit, model_name: str, options: CompressOptions, *,
            width: float, seed: int, device: str | torch.device | None, out: Path, audit_attacks: Sequence[str],
            attack_options: dict | None, progress: bool) -> dict:
    """Compress, evaluate and audit one (method, seed); reuses ``out/result.json`` when it exists."""
    from modelsafe.sparse import export_sparse

    result_path = out / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    dev = resolve_device(device)
    model = init_model(model_name, dataset, width, seed)
    pool = dataset.pool()
    members = split.data(dataset, "members", pool)
    start = time.perf_counter()
    compressed, info = compress(method, model, members, options, seed=seed, device=dev, run_dir=out / "train",
                                progress=progress, dataset=dataset, split=split)
    seconds = time.perf_counter() - start
    export = export_sparse(compressed, out / "model.sparse.safetensors")
    audit = audit_model(compressed, dataset, split, audit_attacks, seed=seed, device=dev,
                        attack_options=attack_options)
    row = {"method": method, "seed": seed, "task_accuracy": evaluate(compressed, dataset.test, device=dev)["accuracy"],
           "density": info.get("density"), "export_bytes": export.sparse_bytes, "dense_bytes": export.dense_bytes,
           "seconds": seconds, "epsilon": info.get("epsilon")}
    for name, figures in audit.items():
        short = _SHORT.get(name, name)
        row[f"{short}_accuracy"], row[f"{short}_advantage"] = figures["accuracy"], figures["advantage"]
        row[f"{short}_auc"] = figures["auc"]
        row[f"{short}_tpr@0.1%"] = figures["tpr_at_fpr"].get("0.001")
    result = {"row": row, "audit": audit, "info": {k: v for k, v in info.items() if k != "history"},
              "history": info.get("history")}
    write_json(result_path, result)
    return result


def compare(methods: Sequence[str], dataset: Dataset, model_name: str = "cnn", *, options: CompressOptions,
            split: SplitSpec | str = "small", seeds: Sequence[int] = (0,), width: float = 1.0,
            out: str | os.PathLike = "runs/compare", device: str | torch.device | None = None,
            audit_attacks: Sequence[str] = AUDIT_ATTACKS, attack_options: dict | None = None,
            progress: bool = True) -> dict:
    """Run every method for every seed and write ``table.md``, ``results.csv``, ``results.json`` and
    ``tradeoff.png`` into ``out``. Returns {"rows": per-run rows, "summary": mean/std rows}."""
    if not methods:
        raise ModelsafeError("compare needs at least one method")
    for name in methods:
        get_method(name)  # unknown names fail here, before any training
    if not seeds:
        raise ModelsafeError("compare needs at least one seed")
    from modelsafe.privacy.registry import mia_entry

    for name in audit_attacks:
        mia_entry(name)  # as are unknown audit attacks (the audit runs only after the first training)
    options = options.validate()
    out = Path(out)
    rows = []
    runs = [(seed, method) for seed in seeds for method in methods]
    for seed, method in tqdm(runs, desc="compare", unit="run", disable=not progress):
        split_obj = MembershipSplit.create(dataset, split, seed=seed)
        split_obj.save(out / f"split-seed{seed}.json")
        result = run_one(method, dataset, split_obj, model_name, options, width=width, seed=seed, device=device,
                         out=out / method / f"seed{seed}", audit_attacks=audit_attacks,
                         attack_options=attack_options, progress=progress)
        rows.append(result["row"])
    summary = summarise(rows, methods)
    write_json(out / "results.json", {"rows": rows, "summary": summary, "options": options.to_dict(),
                                      "model": model_name, "dataset": dataset.info.name, "seeds": list(seeds)})
    write_csv(out / "results.csv", rows)
    write_text(out / "table.md", format_table(summary))
    plot_tradeoff(summary, out / "tradeoff.png")
    return {"rows": rows, "summary": summary}


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


def format_table(summary: Sequence[dict]) -> str:
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

    columns = [c for c in COLUMNS if any(c in e for e in summary) or c == "method"]
    return markdown_table([{c: cell(e, c) for c in columns} for e in summary], columns)


def plot_tradeoff(summary: Sequence[dict], path: str | os.PathLike) -> None:
    """Privacy-utility scatter: task accuracy against black-box attack advantage, ±1 std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from modelsafe.report.io import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for entry in summary:
        if "bmia_advantage" not in entry:
            continue
        ax.errorbar(entry["bmia_advantage"], entry["task_accuracy"], xerr=entry.get("bmia_advantage_std", 0),
                    yerr=entry.get("task_accuracy_std", 0), fmt="o", capsize=3, label=entry["method"])
    ax.set_xlabel("black-box MIA advantage (2·acc − 1), lower is safer")
    ax.set_ylabel("task accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
