"""Compare compression methods on one membership split per seed, then audit each result afresh.

For every (seed, method): a fresh model (same initialisation for every method of a seed) is compressed on the
split's members; the result is scored for task accuracy on the test split and audited by *fresh* attackers
fitted on the attacker-known sets and evaluated on the held-out evaluation sets (``eval_members`` /
``eval_nonmembers``), which no attacker used during training ever saw. Each run lives in
``out/<method>/seed<k>/`` (checkpoints, ``result.json``, exported sparse weights), so an interrupted comparison
resumes where it stopped. The table (Markdown, CSV, JSON) reports mean ± std over seeds
(:mod:`modelsafe.report.compare`).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from modelsafe import distributed
from modelsafe._checks import check_seeds
from modelsafe.compress.methods import CompressOptions, check_method, compress, get_method
from modelsafe.data import Dataset, MembershipSplit, SplitSpec
from modelsafe.errors import ModelsafeError
from modelsafe.report.compare import AUDIT_SHORT, format_table, plot_tradeoff, summarise
from modelsafe.storage.io import read_json, write_csv, write_json, write_text
from modelsafe.training import evaluate
from modelsafe.utils import derive_seed, resolve_device
from modelsafe.workflows.recipe import Recipe
from modelsafe.workflows.targets import init_model

AUDIT_ATTACKS = ("blackbox-nn", "whitebox")


def audit_figures(model: torch.nn.Module, dataset: Dataset, split: MembershipSplit,
                  attacks: Sequence[str] = AUDIT_ATTACKS, *, seed: int = 0, device: str | torch.device | None = None,
                  attack_options: dict | None = None, n_bootstrap: int = 200, recipe: Recipe | None = None,
                  reference_store: str | os.PathLike | None = None) -> dict[str, dict]:
    """:func:`modelsafe.privacy.audit` of ``model`` by fresh attackers, as plain figures per attack.

    ``attack_options[name]`` go to :func:`~modelsafe.privacy.create_mia`, except ``repeats`` (default 1): the
    number of attackers fitted with different seeds, whose figures are averaged (a learned attacker's result
    varies with its initialisation; the single fits are kept under ``fits``). Each entry records the
    ``options`` it was made with. Attacks built on reference models (``lira``, ``rmia``, their online forms,
    ``shadow``) train them with ``recipe`` (the target's own, so a SafeCompress target is compared with
    SafeCompress references) and keep them in ``reference_store``."""
    from modelsafe.privacy import audit, create_mia
    from modelsafe.privacy.registry import mia_entry

    refs = {}
    if any(mia_entry(name).needs_references for name in attacks):
        if recipe is None:
            raise ModelsafeError(f"attacks {', '.join(a for a in attacks if mia_entry(a).needs_references)} train "
                                 "reference models: give the target's recipe=")
        refs = {"model_factory": recipe.model_factory(dataset), "reference_store": reference_store,
                "trainer": recipe.trainer(device, dataset=dataset, split=split)}

    out = {}
    for name in attacks:
        options = dict((attack_options or {}).get(name, {}))
        repeats = _repeats(name, options.pop("repeats", 1))
        fits = []
        for r in range(repeats):
            attack_seed = derive_seed(seed, "audit", name) if r == 0 else derive_seed(seed, "audit", name, r)
            attack = create_mia(name, seed=attack_seed, device=device, **options)
            reports = audit(model, dataset, split, [attack], n_bootstrap=n_bootstrap, device=device, progress=False,
                            num_reference_models=getattr(attack, "num_models", 4), seed=seed, **refs)
            report = next(iter(reports.values()))
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
        short = AUDIT_SHORT.get(name, name)
        row[f"{short}_accuracy"], row[f"{short}_advantage"] = figures["accuracy"], figures["advantage"]
        row[f"{short}_auc"] = figures["auc"]
        row[f"{short}_tpr@1%"] = figures["tpr_at_fpr"].get("0.01")
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
    dev = distributed.local_device(resolve_device(device))
    recipe = Recipe(model_name, width, options.train, method, options)
    finished = distributed.broadcast_object(read_json(result_path) if result_path.is_file() else None)
    if finished is not None:  # (rank 0 reads it: every rank takes the same branch)
        result = finished
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
            extra = audit_figures(model.to(dev), dataset, split, missing, seed=seed, device=dev,
                                  attack_options=attack_options, recipe=recipe, reference_store=out / "references")
            result["audit"].update(extra)
            _add_audit(result["row"], extra)
            if distributed.is_main():
                write_json(result_path, result)
        return result
    model = init_model(model_name, dataset, width, seed)
    members = split.data(dataset, "members")
    start = time.perf_counter()
    compressed, info = compress(method, model, members, options, seed=seed, device=dev, run_dir=out / "train",
                                progress=progress, dataset=dataset, split=split)
    seconds = time.perf_counter() - start
    audit = audit_figures(compressed, dataset, split, audit_attacks, seed=seed, device=dev,
                          attack_options=attack_options, recipe=recipe, reference_store=out / "references")
    if not distributed.is_main():
        return distributed.broadcast_object()  # rank 0's result, written by rank 0
    export = export_sparse(compressed, weights_path)
    row = _row(method, seed, evaluate(compressed, dataset.test, device=dev)["accuracy"], info, export, seconds)
    _add_audit(row, audit)
    result = {"row": row, "audit": audit, "settings": settings,
              "info": {k: v for k, v in info.items() if k != "history"}, "history": info.get("history")}
    write_json(result_path, result)
    return distributed.broadcast_object(result)


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


COMPARE_FILES = ("results.json", "results.csv", "table.md", "tradeoff.png")


def compare_run(methods: Sequence[str], dataset: str | Dataset, model_name: str = "cnn", *, options: CompressOptions,
                split: SplitSpec | str = "small", seeds: Sequence[int] = (0,), width: float = 1.0,
                out: str | os.PathLike = "runs/compare", device: str | torch.device | None = None,
                audit_attacks: Sequence[str] = AUDIT_ATTACKS, attack_options: dict | None = None,
                data_root: str | None = None, dataset_options: dict | None = None, progress: bool = True) -> dict:
    """Run every method for every seed and write ``table.md``, ``results.csv``, ``results.json`` and
    ``tradeoff.png`` into ``out`` (locked while it runs; an interrupted comparison resumes). Every setting is
    checked before any data is loaded. Returns {"rows": per-run rows, "summary": mean/std rows}.

    Under ``torchrun`` every run is data-parallel (compression as in :func:`~modelsafe.workflows.compress_run`,
    the audits' reference models split across ranks); rank 0 alone claims ``out``, writes every file and shows
    progress."""
    from modelsafe.data import load_dataset
    from modelsafe.storage.folder import OwnedFolder

    options = _check_compare(methods, options, seeds, audit_attacks, attack_options)
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, root=data_root,
                                                                    **(dataset_options or {}))
    out = Path(out)
    entries = [*COMPARE_FILES, *methods, *(f"split-seed{s}.json" for s in seeds)]
    progress = progress and distributed.is_main()
    runs = [(seed, method) for seed in seeds for method in methods]

    def run_all() -> list[dict]:
        rows = []
        for seed, method in tqdm(runs, desc="compare", unit="run", disable=not progress):
            split_obj = MembershipSplit.create(data, split, seed=seed)
            if distributed.is_main():
                split_obj.save(out / f"split-seed{seed}.json")
            result = run_one(method, data, split_obj, model_name, options, width=width, seed=seed, device=device,
                             out=out / method / f"seed{seed}", audit_attacks=audit_attacks,
                             attack_options=attack_options, progress=progress)
            rows.append(result["row"])
        return rows

    if not distributed.is_main():  # run alongside rank 0 once it holds the folder; write nothing
        distributed.broadcast_object()
        rows = run_all()
        return {"rows": rows, "summary": summarise(rows, methods)}
    with OwnedFolder(out, "compare", entries).claim():
        distributed.broadcast_object(True)
        rows = run_all()
        summary = summarise(rows, methods)
        write_json(out / "results.json", {"rows": rows, "summary": summary, "options": options.to_dict(),
                                          "model": model_name, "dataset": data.info.name, "seeds": list(seeds)})
        write_csv(out / "results.csv", rows)
        write_text(out / "table.md", format_table(summary))
        plot_tradeoff(summary, out / "tradeoff.png")
    return {"rows": rows, "summary": summary}


def _check_compare(methods: Sequence[str], options: CompressOptions, seeds: Sequence[int],
                   audit_attacks: Sequence[str], attack_options: dict | None) -> CompressOptions:
    """Unknown methods, bad method options, seeds, unknown audit attacks, stray attack options and bad repeat
    counts fail here, before any training; returns the validated options."""
    from modelsafe.privacy.registry import create_mia, mia_entry

    if not methods:
        raise ModelsafeError("compare needs at least one method")
    for name in methods:
        check_method(name, options)
    if not seeds:
        raise ModelsafeError("compare needs at least one seed")
    check_seeds("seeds", list(seeds))
    for name in audit_attacks:
        mia_entry(name)
    stray = sorted(set(attack_options or {}) - set(audit_attacks))
    if stray:
        raise ModelsafeError(f"attack options given for {', '.join(stray)}, which the audit does not run "
                             f"(audit attacks: {', '.join(audit_attacks)})")
    for name in audit_attacks:
        given = dict((attack_options or {}).get(name, {}))
        _repeats(name, given.pop("repeats", 1))
        create_mia(name, **given)  # bad attack options fail now, not after the first compression
    return options
