"""Membership-inference audit of a small model: which training samples can an attacker recognise?

An MLP is trained on 400 ``digits`` images (its members) long enough to overfit. ``audit`` then fits each
attack on members and non-members the attacker knows and evaluates it on held-out members and non-members
(the SafeCompress protocol, Zhu et al., ASE 2022). LiRA (Carlini et al., S&P 2022) and RMIA (Zarifzadeh
et al., ICML 2024) use reference models trained on population data the target never saw.

    python examples/membership_audit.py --out runs/example-audit
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
from modelsafe.models import create_model_for
from modelsafe.privacy import FitTrainer, audit
from modelsafe.report import write_audit_report
from modelsafe.training import TrainConfig, evaluate, fit

# digits has 1,438 training images: 400 members (half known to the attacker), 100 for validation, 200 + 200
# non-members (attacker-known / evaluation) and the remaining 538 as population for the reference models
SPLIT = SplitSpec(members=400, validation=100, reference=200, eval_nonmembers=200, population=None)
TRAIN = TrainConfig(epochs=40, batch_size=32, lr=0.05)


def new_mlp(data, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # module constructors draw from the global generator
    return create_model_for("mlp", data.info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the report (default: a new temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="modelsafe-audit-"))
    start = time.perf_counter()

    data = load_dataset("digits")
    split = MembershipSplit.create(data, SPLIT, seed=args.seed)
    members = split.data(data, "members")
    model = new_mlp(data, args.seed)
    fit(model, members, TRAIN, seed=args.seed, progress=False)
    print(f"target: member accuracy {evaluate(model, members)['accuracy']:.3f}, "
          f"test accuracy {evaluate(model, data.test)['accuracy']:.3f}")

    attacks = ["loss", "modified-entropy", "blackbox-nn", "whitebox", "lira", "rmia"]
    reports = audit(model, data, split, attacks,
                    options={"blackbox-nn": {"epochs": 30}, "whitebox": {"epochs": 30}},
                    model_factory=lambda seed: new_mlp(data, seed), trainer=FitTrainer(TRAIN),
                    num_reference_models=4, n_bootstrap=200, seed=args.seed, out_dir=out, progress=False)
    print(f"{'attack':<18} {'bal. acc':>8} {'AUC':>6} {'TPR@1%FPR':>10}")
    for name, r in reports.items():
        print(f"{name:<18} {r.accuracy:8.3f} {r.auc:6.3f} {r.tpr_at_fpr[0.01]:10.3f}")
    report = write_audit_report(reports, out, context={"target": "mlp", "dataset": "digits"})
    print(f"report: {report} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
