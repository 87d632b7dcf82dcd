"""SafeCompress benchmark on Fashion-MNIST: does test-driven selection (plus the min-max phase) lower the
membership leakage of a 5%-density model without costing accuracy, and does the *selection itself* help?

Every method of a seed runs on the same membership split and starts from bit-identical initial weights and
masks, with the same data order (a small member set, so that the model overfits); every result is audited
afresh on held-out evaluation members / non-members. Methods:

* ``rigl``: the same dynamic sparse training without safety tests;
* ``bmia-safecompress``: black-box safety test driving the selection, plus the min-max phase;
* ``accuracy-safecompress``: identical to ``bmia-safecompress`` (attackers, refreshes, probes, min-max) except
  that the selection looks at task accuracy only (objective weight 0): the paired difference between the two
  is the selection's own contribution;
* ``mia-safecompress``: selection without the min-max phase; ``advreg-sparse``: the min-max phase without
  selection (its attacker refreshed on the same schedule); ``mmia-safecompress``: both attackers.

The SafeCompress-family methods use min-max weight λ = 1.0 (``--minmax-lambda``), chosen on development seeds
100 and 101; every other setting was also chosen on development seeds, never on the reported ones. Audits: the
learned black-box (``bmia``, the papers' judge; three 100-epoch attackers averaged) and white-box (``wmia``)
attacks, plus the loss-threshold attack (``loss``), which no training-time attacker resembles. Prints the
table, then each method's paired per-seed difference against ``rigl`` and against ``accuracy-safecompress``
with a 95% confidence interval.

    python benchmarks/safecompress.py --seeds 0 1 2 3 4 --out runs/bench-safecompress

``--objective-weight W`` sets the selection weight of the selecting methods (``accuracy-safecompress`` stays at
0). ``--keep-probe`` with candidates carrying probe defence weights selects among 50-step continuations that
train against the attackers by different amounts (the kept-probe setting of the docs):

    python benchmarks/safecompress.py --methods rigl bmia-safecompress accuracy-safecompress \
        --seeds 10 11 12 13 14 --probe-steps 50 --keep-probe --tests bmia loss \
        --candidates magnitude/gradient magnitude/gradient~2 magnitude/gradient~5 magnitude/gradient~10

Adding ``--objective-weight 2`` (chosen on the development seeds 100 and 101) gives the setting in which the
selection's own effect was measured below zero with a CI excluding zero, before kept probes carried the
run's min-max term; with that fix it is not yet established (docs, *Kept probes with objective weight 2*).

Runs are resumable: re-running the command skips finished (method, seed) pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from modelsafe.compress import CompressOptions
from modelsafe.data import get_recipe, load_dataset
from modelsafe.report.compare import format_table, paired_difference
from modelsafe.training import TrainConfig
from modelsafe.workflows import compare_run as compare

METHODS = ["rigl", "bmia-safecompress", "accuracy-safecompress", "mmia-safecompress", "mia-safecompress",
           "advreg-sparse"]
SELECTING = ("bmia-safecompress", "mmia-safecompress", "mia-safecompress", "wmia-safecompress")
AUDITS = ("bmia", "wmia", "loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                        help="run seeds (the reported ones; settings were chosen on seeds 100 and 101)")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--width", type=float, default=4.0)
    parser.add_argument("--members", type=int, default=2500)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--update-interval", type=int, default=100)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--minmax-lambda", type=float, default=1.0,
                        help="λ of the min-max phase of every SafeCompress-family method (advreg-sparse included); "
                             "1.0 was chosen on dev seeds 100 and 101, never on the benchmark seeds (docs)")
    parser.add_argument("--objective-weight", type=float, default=None,
                        help="selection weight w of accuracy − w·risk for the selecting methods (0 = accuracy only; "
                             "default: the library's)")
    parser.add_argument("--risk", default=None, choices=["advantage", "auc", "gap"],
                        help="how the selecting methods' safety tests turn their held-out scores into a risk (default: "
                             "the library's; accuracy-safecompress ignores risks)")
    parser.add_argument("--holdout-fraction", type=float, default=None,
                        help="share of the attacker-known sets held out to score candidates (default: the library's)")
    parser.add_argument("--tests", nargs="+", default=None,
                        help="safety tests of bmia-/accuracy-/mia-safecompress (default: the library's)")
    parser.add_argument("--audits", nargs="+", default=["blackbox-nn", "whitebox", "loss"],
                        help="final audit attacks")
    parser.add_argument("--lira-models", type=int, default=0,
                        help="also audit with offline LiRA on K reference models trained by each method's own "
                             "recipe (kept in each run's references/ folder; 0: no LiRA)")
    parser.add_argument("--probe-steps", type=int, default=None,
                        help="fine-tuning steps of each candidate before it is scored (library default 5)")
    parser.add_argument("--candidates", nargs="+", default=None,
                        help="candidate strategies of the selecting methods and accuracy-safecompress, "
                             "'prune/grow[#seed][@xM][~L]' (default: the library's)")
    parser.add_argument("--keep-probe", action="store_true",
                        help="the chosen candidate's probed weights continue (the selecting methods and "
                             "accuracy-safecompress); needed by candidates with a probe defence weight '~L'")
    parser.add_argument("--bmia-audit-epochs", type=int, default=100,
                        help="epochs of each fresh black-box audit attacker (best epoch chosen on its validation part)")
    parser.add_argument("--bmia-audit-repeats", type=int, default=3,
                        help="black-box audit attackers fitted per run with different seeds; figures are averaged")
    parser.add_argument("--wmia-audit-epochs", type=int, default=30, help="epochs of the white-box audit attacker")
    parser.add_argument("--out", default="runs/bench-safecompress")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    if args.objective_weight is not None and args.objective_weight < 0:
        parser.error("--objective-weight must be >= 0")
    if args.lira_models < 0:
        parser.error("--lira-models must be >= 0")
    if args.probe_steps is not None and args.probe_steps < 1:
        parser.error("--probe-steps must be >= 1 (the selecting methods probe every candidate)")
    data = load_dataset("fashion-mnist")
    split = get_recipe("small", members=args.members)
    options = CompressOptions(
        density=args.density, update_interval=args.update_interval,
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4),
        extra=_method_options(args))
    print(f"Fashion-MNIST, {args.model} width {args.width}, {args.members} members, density {args.density}, "
          f"{args.epochs} epochs (batch {args.batch_size}, lr {args.lr}), mask update every "
          f"{args.update_interval} steps, seeds {args.seeds}, min-max λ {args.minmax_lambda}, black-box audit "
          f"{args.bmia_audit_repeats} × {args.bmia_audit_epochs} epochs, white-box audit {args.wmia_audit_epochs} "
          f"epochs; method options {dict(options.extra)}")
    start = time.perf_counter()
    attack_options = {"blackbox-nn": {"epochs": args.bmia_audit_epochs, "repeats": args.bmia_audit_repeats},
                      "whitebox": {"epochs": args.wmia_audit_epochs}}
    if args.lira_models:
        attack_options["lira"] = {"num_models": args.lira_models}
        args.audits = list(dict.fromkeys([*args.audits, "lira"]))
    result = compare(args.methods, data, args.model, options=options, split=split, seeds=args.seeds,
                     width=args.width, out=args.out, device=args.device, progress=args.progress,
                     audit_attacks=tuple(args.audits),
                     attack_options={k: v for k, v in attack_options.items() if k in args.audits})
    print(format_table(result["summary"]))
    print(paired_report(result["rows"], args.methods))
    print(resolution_report(Path(args.out), args.methods, args.seeds))
    print(f"total wall time {time.perf_counter() - start:.0f} s; results in {args.out}")


def _method_options(args: argparse.Namespace) -> dict:
    shared = {"minmax_lambda": args.minmax_lambda}
    if args.holdout_fraction is not None:
        shared["holdout_fraction"] = args.holdout_fraction
    extra = {"safecompress": shared, "dp": {"noise_multiplier": args.noise_multiplier, "max_grad_norm": 1.0}}
    for name in ("bmia-safecompress", "accuracy-safecompress", "mia-safecompress"):
        if args.tests:
            extra.setdefault(f"safecompress:{name}", {})["tests"] = tuple(args.tests)
    probing = {"probe_steps": args.probe_steps, "keep_probe": args.keep_probe or None,
               "candidates": tuple(args.candidates) if args.candidates else None}
    for key, value in probing.items():  # the selecting methods and their accuracy-only ablation alike
        if value is not None:
            for name in (*SELECTING, "accuracy-safecompress"):
                extra.setdefault(f"safecompress:{name}", {})[key] = value
    for key in ("objective_weight", "risk"):  # the selection rule: accuracy-safecompress ignores both
        if getattr(args, key) is not None:
            for name in SELECTING:
                extra.setdefault(f"safecompress:{name}", {})[key] = getattr(args, key)
    return extra


def resolution_report(out: Path, methods: list[str], seeds: list[int]) -> str:
    """Per selecting method and safety test, from the selection logs: how far apart the candidates' risks are
    at an update (spread), the paired and unpaired bootstrap standard errors, how many updates resolve the
    candidates (spread > 2 paired SE) and how often the choice differs from the most accurate candidate."""
    lines = ["", ("| method | test | statistic | updates | mean spread | mean paired SE | mean unpaired SE | resolved | "
             "choice ≠ most accurate |"), "|---|---|---|---|---|---|---|---|---|"]
    for method in methods:
        logs = [json.loads(p.read_text())["log"] for s in seeds
                if (p := out / method / f"seed{s}" / "train" / "selection.json").is_file()]
        entries = [e for log in logs for e in log if "resolution" in e]
        if not entries:
            continue
        differs = sum(e["differs_from_most_accurate"] for e in entries)
        for test in entries[0]["resolution"]:
            for stat in entries[0]["resolution"][test]:
                res = [e["resolution"][test][stat] for e in entries]
                lines.append(f"| {method} | {test} | {stat} | {len(res)} | {statistics.fmean(r['spread'] for r in res):.4f} | "
                             f"{statistics.fmean(max(r['paired_se']) for r in res):.4f} | "
                             f"{statistics.fmean(statistics.fmean(r['se']) for r in res):.4f} | "
                             f"{sum(r['resolved'] for r in res)} | {differs} |")
    return "\n".join(lines)


def paired_report(rows: list[dict], methods: list[str]) -> str:
    """Paired per-seed differences (method − baseline) with 95% CIs, against rigl and the accuracy-only
    selection, for task accuracy and every audit's advantage."""
    lines = ["", "| method | vs | figure | per-seed differences | mean difference [95% CI] | relative [95% CI] |",
             "|---|---|---|---|---|---|"]
    for baseline in ("rigl", "accuracy-safecompress"):
        for method in methods:
            if method in (baseline, "rigl") or baseline not in methods:
                continue
            for key in ("task_accuracy", *(f"{a}_advantage" for a in AUDITS), "lira_tpr@1%"):
                d = paired_difference(rows, method, baseline, key)
                if d is None:
                    continue
                per_seed = " ".join(f"{v:+.3f}" for v in d["differences"])
                rel = "" if key == "task_accuracy" else (f"{d['relative']:+.0%} [{d['relative_ci'][0]:+.0%}, "
                                                         f"{d['relative_ci'][1]:+.0%}]")
                lines.append(f"| {method} | {baseline} | {key} | {per_seed} | {d['mean']:+.4f} "
                             f"[{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]{' *' if d['excludes_zero'] else ''} | {rel} |")
    lines.append("(* the 95% CI excludes zero; relative = mean difference / baseline mean)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
