"""Compare compression methods on one membership split per seed, then audit each result afresh.

For every (seed, method): a fresh model (same initialisation for every method of a seed) is compressed on the
split's members; the result is scored for task accuracy on the test split and audited by *fresh* attackers
fitted on the attacker-known sets and evaluated on the held-out evaluation sets (``eval_members`` /
``eval_nonmembers``), which no attacker used during training ever saw. Each run lives in
``out/<method>/seed<k>/`` (checkpoints, ``result.json``, exported sparse weights), so an interrupted comparison
resumes where it stopped. The table (Markdown, CSV, JSON) reports mean ± std over seeds.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from modelsafe._checks import check_seeds
from modelsafe.compress.methods import CompressOptions, check_method, compress, get_method
from modelsafe.data import Dataset, MembershipSplit, SplitSpec
from modelsafe.errors import ModelsafeError
from modelsafe.report.io import markdown_table, read_json, write_csv, write_json, write_text
from modelsafe.targets import init_model
from modelsafe.training import evaluate
from modelsafe.utils import derive_seed, resolve_device

AUDIT_ATTACKS = ("blackbox-nn", "whitebox")
_SHORT = {"blackbox-nn": "bmia", "whitebox": "wmia"}


def audit_model(model: torch.nn.Module, dataset: Dataset, split: MembershipSplit, attacks: Sequence[str] = AUDIT_ATTACKS,
                *, seed: int = 0, device: str | torch.device | None = None, attack_options: dict | None = None,
                n_bootstrap: int = 200) -> dict[str, dict]:
    """Fresh attackers fitted on the attacker-known sets, evaluated on the evaluation sets.

    ``attack_options[name]`` go to :func:`~modelsafe.privacy.create_mia`, except ``repeats`` (default 1): the
    number of attackers fitted with different seeds, whose figures are averaged (a learned attacker's result
    varies with its initialisation; the single fits are kept under ``fits``). Each entry records the
    ``options`` it was made with."""
    from modelsafe.privacy import create_mia

    pool = dataset.pool()
    known = split.data(dataset, "attack_known_members", pool)
    reference = split.data(dataset, "attack_reference", pool)
    members = split.data(dataset, "eval_members", pool)
    nonmembers = split.data(dataset, "eval_nonmembers", pool)
    out = {}
    for name in attacks:
        options = dict((attack_options or {}).get(name, {}))
        repeats = _repeats(name, options.pop("repeats", 1))
        fits = []
        for r in range(repeats):
            attack_seed = derive_seed(seed, "audit", name) if r == 0 else derive_seed(seed, "audit", name, r)
            attack = create_mia(name, seed=attack_seed, device=device, **options)
            attack.fit(model, known, reference)
            report = attack.evaluate(model, members, nonmembers, n_bootstrap=n_bootstrap)
            fits.append({"accuracy": report.accuracy, "advantage": report.advantage, "auc": report.auc,
                         "tpr_at_fpr": {str(k): v for k, v in report.tpr_at_fpr.items()},
                         "seconds": report.seconds})
        entry = {key: statistics.fmean(f[key] for f in fits) for key in ("accuracy", "advantage", "auc", "seconds")}
        entry["tpr_at_fpr"] = {k: statistics.fmean(f["tpr_at_fpr"][k] for f in fits) for k in fits[0]["tpr_at_fpr"]}
        entry["options"] = _jsonable((attack_options or {}).get(name, {}))
        if repeats > 1:
            entry["fits"] = fits
        out[name] = entry
    return out


def _repeats(attack: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelsafeError(f"audit attack {attack!r}: repeats must be a positive integer, got {value!r}")
    return value


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _row(method: str, seed: int, task_accuracy: float, info: dict, export, seconds: float) -> dict:
    return {"method": method, "seed": seed, "task_accuracy": task_accuracy, "density": info.get("density"),
            "export_bytes": export.sparse_bytes, "dense_bytes": export.dense_bytes, "seconds": seconds,
            "epsilon": info.get("epsilon")}


def _add_audit(row: dict, audit: dict[str, dict]) -> None:
    for name, figures in audit.items():
        short = _SHORT.get(name, name)
        row[f"{short}_accuracy"], row[f"{short}_advantage"] = figures["accuracy"], figures["advantage"]
        row[f"{short}_auc"] = figures["auc"]
        row[f"{short}_tpr@0.1%"] = figures["tpr_at_fpr"].get("0.001")


def run_one(method: str, dataset: Dataset, split: MembershipSplit, model_name: str, options: CompressOptions, *,
            width: float, seed: int, device: str | torch.device | None, out: Path, audit_attacks: Sequence[str],
            attack_options: dict | None, progress: bool) -> dict:
    """Compress, evaluate and audit one (method, seed).

    A finished run (``out/result.json``) is reused when it was made with the same settings (otherwise an error
    names the folder); audit attacks it lacks, or made with other attack options, are (re-)run on its saved
    weights."""
    from modelsafe.sparse import export_sparse, load_sparse

    settings = {"method": method, "model": model_name, "width": width, "dataset": dataset.info.name,
                "seed": seed, "options": options.to_dict(), "split": {"spec": asdict(split.spec), "seed": split.seed}}
    settings = _relevant(_jsonable(settings), get_method(method).extras)
    result_path, weights_path = out / "result.json", out / "model.sparse.safetensors"
    dev = resolve_device(device)
    if result_path.is_file():
        result = read_json(result_path)
        saved = _relevant(result.get("settings", settings), get_method(method).extras)
        if saved != settings:
            change = _difference(saved, settings)
            raise ModelsafeError(f"{out} holds a run made with other settings ({change}); use another output folder "
                                 "or delete it")
        wanted = {a: _jsonable((attack_options or {}).get(a, {})) for a in audit_attacks}
        # attacks the run lacks, or that were made with other options (or before options were recorded)
        missing = [a for a in audit_attacks if result["audit"].get(a, {}).get("options") != wanted[a]]
        if missing:
            model = init_model(model_name, dataset, width, seed)
            model.load_state_dict(load_sparse(weights_path))
            extra = audit_model(model.to(dev).eval(), dataset, split, missing, seed=seed, device=dev,
                                attack_options=attack_options)
            result["audit"].update(extra)
            _add_audit(result["row"], extra)
            write_json(result_path, result)
        return result
    model = init_model(model_name, dataset, width, seed)
    pool = dataset.pool()
    members = split.data(dataset, "members", pool)
    start = time.perf_counter()
    compressed, info = compress(method, model, members, options, seed=seed, device=dev, run_dir=out / "train",
                                progress=progress, dataset=dataset, split=split)
    seconds = time.perf_counter() - start
    export = export_sparse(compressed, weights_path)
    audit = audit_model(compressed, dataset, split, audit_attacks, seed=seed, device=dev,
                        attack_options=attack_options)
    row = _row(method, seed, evaluate(compressed, dataset.test, device=dev)["accuracy"], info, export, seconds)
    _add_audit(row, audit)
    result = {"row": row, "audit": audit, "settings": settings,
              "info": {k: v for k, v in info.items() if k != "history"}, "history": info.get("history")}
    write_json(result_path, result)
    return result


def _relevant(settings: dict, extras: tuple[str, ...] | None) -> dict:
    """``settings`` with ``options.extra`` cut to the keys the method reads (all of them when unknown), so that
    e.g. a SafeCompress option does not invalidate a finished RigL run."""
    if extras is None or "extra" not in settings.get("options", {}):
        return settings
    extra = {k: v for k, v in settings["options"]["extra"].items() if k in extras}
    return {**settings, "options": {**settings["options"], "extra": extra}}


def _difference(old: dict, new: dict, prefix: str = "") -> str:
    """The first setting that differs, as ``key: old -> new``."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return _difference(a, b, f"{prefix}{key}.")
        elif a != b:
            return f"{prefix}{key}: {a!r} -> {b!r}"
    return "none"


def compare(methods: Sequence[str], dataset: Dataset, model_name: str = "cnn", *, options: CompressOptions,
            split: SplitSpec | str = "small", seeds: Sequence[int] = (0,), width: float = 1.0,
            out: str | os.PathLike = "runs/compare", device: str | torch.device | None = None,
            audit_attacks: Sequence[str] = AUDIT_ATTACKS, attack_options: dict | None = None,
            progress: bool = True) -> dict:
    """Run every method for every seed and write ``table.md``, ``results.csv``, ``results.json`` and
    ``tradeoff.png`` into ``out``. Returns {"rows": per-run rows, "summary": mean/std rows}."""
    if not methods:
        raise ModelsafeError("compare needs at least one method")
    options = options.validate()
    for name in methods:
        check_method(name, options)  # unknown names and bad method options fail here, before any training
    if not seeds:
        raise ModelsafeError("compare needs at least one seed")
    check_seeds("seeds", list(seeds))
    from modelsafe.privacy.registry import mia_entry

    for name in audit_attacks:
        mia_entry(name)  # unknown audit attacks, stray options and bad repeat counts fail here too
    stray = sorted(set(attack_options or {}) - set(audit_attacks))
    if stray:
        raise ModelsafeError(f"attack options given for {', '.join(stray)}, which the audit does not run "
                             f"(audit attacks: {', '.join(audit_attacks)})")
    for name, given in (attack_options or {}).items():
        _repeats(name, given.get("repeats", 1))
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
    audits.sort(key=lambda a: (a not in _SHORT.values(), a))  # bmia, wmia first, then the others by name
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

    from modelsafe.report.io import atomic_write

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
