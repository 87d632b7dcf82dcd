"""Membership-inference attacks on a Fashion-MNIST CNN trained on a small member set (so it overfits), and the
speed of the white-box features' per-sample gradients (torch.func vmap vs per-sample loops).

    python benchmarks/mia.py                              # the tables in docs/privacy.md (~25 min on 2 cores)
    python benchmarks/mia.py --members 500 --epochs 10 --reference-models 2 --attack-epochs 20   # a quick look
    python benchmarks/mia.py --speed-only --grad-batch 512 --threads 1 2   # the gradient-speed table alone

Protocol (SafeCompress, Zhu et al. 2022): attacks are fitted on ``known`` members vs ``reference`` non-members and
evaluated on held-out members vs 5,000 held-out non-members (so that TPR at 0.1% FPR is resolvable); shadow,
LiRA and RMIA share reference models trained like the target on population data. Writes the audit report
(report.md, ROC plots, per-sample scores) and results.json to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
from modelsafe.privacy import (
    audit,
    create_mia,
    last_weight_names,
    offline_reference_models,
    per_sample_grads,
    per_sample_grads_loop,
)
from modelsafe.privacy.references import FitTrainer
from modelsafe.report.audit import write_audit_report
from modelsafe.storage.io import write_json
from modelsafe.training import TrainConfig, evaluate, fit
from modelsafe.workflows import init_model


def attack_list(epochs: int, online_models: int = 0, skip: tuple[str, ...] = ()) -> list:
    """Every attack of the table, without those whose registry name is in ``skip``."""
    return [a for a in _all_attacks(epochs, online_models) if (a if isinstance(a, str) else a.name) not in skip]


def _all_attacks(epochs: int, online_models: int) -> list:
    learned = {"epochs": epochs}
    online = []
    if online_models:
        online = [create_mia("lira-online", num_models=online_models),
                  create_mia("rmia-online", num_models=online_models)]
    if online_models >= 4:  # per-sample variances need 2 IN and 2 OUT values per sample
        online.insert(1, create_mia("lira-online", num_models=online_models, fixed_variance=False))
    return online + [
        "correctness", "confidence", "entropy", "modified-entropy", "loss",
        create_mia("loss", per_class=True), create_mia("modified-entropy", per_class=True),
        create_mia("blackbox-nn", **learned), create_mia("blackbox-nn", prediction="logits", **learned),
        create_mia("whitebox", **learned),
        create_mia("shadow", **learned), create_mia("shadow", attack_model="per-class", **learned),
        create_mia("lira"), create_mia("lira", fixed_variance=False), create_mia("rmia"),
        create_mia("blackbox-nn", select_on="eval", **learned),  # the official code's optimistic epoch choice
    ]


def grad_speed(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> dict:
    """Seconds per sample for the white-box features (logits, loss and the last layer's per-sample gradient) of
    ``model``: modelsafe's default (the output layer's closed form); torch.func vmap; a minimal loop (per sample: forward, ``autograd.grad`` of the last weight only);
    a plain loop (per sample: forward, ``loss.backward()`` through the whole model, as a user would write it);
    the official code's loop (one batched forward, then one full backward per sample with ``retain_graph``,
    the SafeCompress code); and a batched forward with no gradient (the floor of any method that needs the logits)."""
    names = last_weight_names(model)
    weight = dict(model.named_parameters())[names[0]]

    def default_run():
        per_sample_grads(model, x, y, names)

    def vmap_run():
        per_sample_grads(model, x, y, names, method="vmap")

    def minimal_run():
        per_sample_grads_loop(model, x, y, names)

    def plain_run():
        rows = []
        for i in range(x.shape[0]):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
            rows.append(weight.grad.clone())
        return torch.stack(rows)

    def official_run():
        losses = F.cross_entropy(model(x), y, reduction="none")
        rows = []
        for i in range(x.shape[0]):
            model.zero_grad(set_to_none=True)
            losses[i].backward(retain_graph=True)
            rows.append(weight.grad.clone())
        return torch.stack(rows)

    def forward_run():
        with torch.no_grad():
            model(x)

    out = {}
    model.eval()
    vmap_run()  # warm-up (torch.func traces once)
    default_run()
    for name, fn in (("default", default_run), ("vmap", vmap_run), ("loop", minimal_run), ("plain", plain_run),
                     ("official", official_run), ("forward", forward_run)):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = min(times) / x.shape[0]
    model.zero_grad(set_to_none=True)
    return out


def print_speed(speed: dict, batch: int) -> None:
    print(f"\nwhite-box features (cnn last layer, {batch} samples, {torch.get_num_threads()} threads):")
    print(f"  modelsafe (closed form)    {1e3 * speed['default']:.3f} ms/sample")
    for key, label in (("vmap", "torch.func vmap"), ("loop", "minimal loop (last layer)"), ("plain", "plain loop (full backward)"),
                       ("official", "official-code loop"), ("forward", "batched forward, no grad")):
        print(f"  {label:<26} {1e3 * speed[key]:.3f} ms/sample  (modelsafe is {speed[key] / speed['default']:.1f}x "
              "faster)")


def speed_only(args) -> None:
    """The gradient-speed table alone, for each thread count (a trained and an untrained CNN cost the same)."""
    data = load_dataset("fashion-mnist")
    model = init_model("cnn", data, 1.0, args.seed).to(args.device)
    x, y = data.test.features(slice(0, args.grad_batch)).to(args.device), data.test.y[:args.grad_batch].to(args.device)
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        results[threads] = grad_speed(model, x, y)
        print_speed(results[threads], args.grad_batch)
    write_json(Path(args.out) / "grad_speed.json", {"args": vars(args), "ms_per_sample": {
        t: {k: 1e3 * v for k, v in r.items()} for t, r in results.items()}})


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=1000, help="target training-set size")
    p.add_argument("--epochs", type=int, default=60, help="target (and reference model) training epochs")
    p.add_argument("--reference-models", type=int, default=4)
    p.add_argument("--few-models", type=int, nargs="*", default=[2, 4],
                   help="also run lira and rmia with the first K of the offline reference models (K < "
                        "--reference-models), and lira-online/rmia-online with K balanced models of their own")
    p.add_argument("--online-models", type=int, default=0,
                   help="IN/OUT reference models of lira-online and rmia-online (even; 0: skip them, they train "
                        "on halves of every audited sample)")
    p.add_argument("--attack-epochs", type=int, default=100, help="epochs of the learned attack models")
    p.add_argument("--skip", nargs="*", default=[], help="attacks (registry names) to leave out, e.g. shadow")
    p.add_argument("--reference", type=int, default=None,
                   help="attacker-known non-members (default: half the members)")
    p.add_argument("--eval-nonmembers", type=int, default=5000)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--grad-batch", type=int, default=128, help="samples in the gradient-speed measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/bench-mia")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--speed-only", action="store_true", help="only the white-box gradient-speed table")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts for --speed-only")
    return p.parse_args()


def train_target(args, data) -> tuple:
    """The split, the trained target, its training settings, accuracies and seconds."""
    half = args.members // 2
    spec = SplitSpec(members=args.members, validation=1000, known_fraction=0.5, nonmember_source="train",
                     reference=half if args.reference is None else args.reference,
                     eval_nonmembers=args.eval_nonmembers, population=4 * args.members)
    split = MembershipSplit.create(data, spec, seed=args.seed)
    train = TrainConfig(epochs=args.epochs, lr=0.05, batch_size=128)
    model = init_model("cnn", data, 1.0, args.seed)
    start = time.perf_counter()
    fit(model, split.data(data, "members"), train, seed=args.seed, device=args.device, progress=args.progress)
    seconds = time.perf_counter() - start
    task = {"members": evaluate(model, split.data(data, "members"), device=args.device)["accuracy"],
            "test": evaluate(model, data.test, device=args.device)["accuracy"]}
    print(f"target: cnn on {args.members} members, {args.epochs} epochs ({seconds:.0f} s); "
          f"member accuracy {task['members']:.4f}, test accuracy {task['test']:.4f}")
    return split, model, train, task, seconds


def few_model_reports(args, model, data, split, kwargs: dict, refs) -> dict:
    """lira and rmia with the first K offline reference models, and the online attacks with K balanced models
    of their own, for every K of ``--few-models``; reports keyed by attack and K."""
    reports = {}
    for k in sorted(set(args.few_models)):
        if k < len(refs):
            sub = refs.first(k)
            got = audit(model, data, split, [create_mia("lira", references=sub), create_mia("rmia", references=sub)],
                        **{**kwargs, "out_dir": Path(args.out) / f"few-{k}"})
            reports.update({f"{name} ({k} models)": r for name, r in got.items()})
        if args.online_models and k < args.online_models and k % 2 == 0:
            got = audit(model, data, split, ["lira-online", "rmia-online"],
                        options={"lira-online": {"num_models": k}, "rmia-online": {"num_models": k}},
                        **{**kwargs, "out_dir": Path(args.out) / f"few-online-{k}",
                           "reference_store": Path(args.out) / "references"})
            reports.update({f"{name} ({k} models)": r for name, r in got.items()})
    for name, r in reports.items():
        r.attack = name
    return reports


def print_table(reports: dict) -> list:
    print("| attack | models | balanced acc | AUC [95% CI] | TPR@1% FPR [95% CI] | TPR@0.1% FPR [95% CI] | seconds |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name, r in reports.items():
        cells = [f"{v:.3f} [{r.intervals.get(key, (float('nan'),) * 2)[0]:.3f}, "
                 f"{r.intervals.get(key, (float('nan'),) * 2)[1]:.3f}]"
                 for key, v in (("auc", r.auc), ("tpr@1%", r.tpr_at_fpr[0.01]), ("tpr@0.1%", r.tpr_at_fpr[0.001]))]
        models = r.details.get("num_models", "")
        print(f"| {name} | {models} | {r.accuracy:.3f} | {' | '.join(cells)} | {r.seconds:.1f} |")
        rows.append(r.summary())
    return rows


def main() -> None:
    args = parse_args()
    if args.speed_only:
        speed_only(args)
        return
    data = load_dataset("fashion-mnist")
    split, model, train, task, target_seconds = train_target(args, data)
    out = Path(args.out)
    factory = lambda s: init_model("cnn", data, 1.0, s)
    kwargs = dict(model_factory=factory, trainer=FitTrainer(train, device=args.device),
                  num_reference_models=args.reference_models, n_bootstrap=args.bootstrap, out_dir=out,
                  device=args.device, seed=args.seed, progress=args.progress)
    refs = offline_reference_models(data, split, factory, trainer=kwargs["trainer"], num_models=args.reference_models,
                                    store_root=out / "references", device=args.device, seed=args.seed,
                                    progress=args.progress)
    start = time.perf_counter()
    reports = audit(model, data, split, attack_list(args.attack_epochs, args.online_models, tuple(args.skip)),
                    **kwargs)
    first_seconds = time.perf_counter() - start + (refs.train_seconds or 0.0)
    ref_seconds = refs.train_seconds
    reuse = ["lira", "rmia"] + (["lira-online", "rmia-online"] if args.online_models else [])
    options = {n: {"num_models": args.online_models} for n in reuse if n.endswith("-online")}
    start = time.perf_counter()
    audit(model, data, split, reuse, options=options, **{**kwargs, "out_dir": out / "again",
                                                        "reference_store": out / "references"})
    print(f"audit with every attack: {first_seconds:.0f} s; a second audit of {', '.join(reuse)} with the stored "
          f"reference models: {time.perf_counter() - start:.1f} s")
    reports.update(few_model_reports(args, model, data, split, kwargs, refs))

    print(f"\n{len(reports['loss'].scores)} evaluation samples: {reports['loss'].n_members} members, "
          f"{reports['loss'].n_nonmembers} non-members; {args.reference_models} offline reference models "
          f"({ref_seconds or 0:.0f} s to train, shared by shadow/lira/rmia and not in their seconds)\n")
    rows = print_table(reports)
    x = split.data(data, "eval_members").subset(range(args.grad_batch))
    speed = grad_speed(model, x.features().to(args.device), x.y.to(args.device))
    print_speed(speed, args.grad_batch)

    context = {"dataset": "fashion-mnist", "model": "cnn", "members": args.members, "epochs": args.epochs,
               "member accuracy": task["members"], "test accuracy": task["test"],
               "reference models": args.reference_models, "reference training seconds": ref_seconds}
    write_audit_report(reports, out, title="Membership-inference benchmark: Fashion-MNIST CNN", context=context)
    write_json(out / "results.json", {"args": vars(args), "task": task, "target_seconds": target_seconds,
                                      "reference_seconds": ref_seconds, "first_audit_seconds": first_seconds,
                                      "attacks": rows, "grad_speed": speed})
    print(f"\nreport: {out / 'report.md'}")


if __name__ == "__main__":
    main()
