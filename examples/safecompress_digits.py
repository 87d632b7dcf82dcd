"""SafeCompress on scikit-learn digits: compress an MLP to 5% of its weights, with and without safety tests.

``rigl`` is plain dynamic sparse training. ``bmia-safecompress`` (Zhu, Wang, Han, ASE 2022; Zhu, Wang, Han,
Liu, Xie, IEEE TSE 2024) trains the same sparse model, but at every mask update it proposes several candidate
masks, probes each, puts them through a simulated black-box membership-inference attack (the safety test)
and keeps the one with the best accuracy − risk; in the last third of training the model is also trained
against that attacker (min-max). Both runs start from the same weights and masks. A fresh attacker, fitted
after training on data the training-time attacker never used, then audits each compressed model.

One seed on 600 members is noisy: read the printed figures as a walk-through of the API, and the benchmark
in docs/safecompress.md (5 seeds, Fashion-MNIST) for what the method achieves.

    python examples/safecompress_digits.py --out runs/example-safecompress
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from modelsafe.compress import CompressOptions, compress
from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
from modelsafe.models import create_model_for
from modelsafe.privacy import audit
from modelsafe.sparse import export_sparse
from modelsafe.storage import write_json
from modelsafe.training import TrainConfig, evaluate

# digits has 1,438 training images: 600 members (half of them known to the attacker), 150 for validation,
# 300 attacker-known and 300 evaluation non-members
SPLIT = SplitSpec(members=600, validation=150, reference=300, eval_nonmembers=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the results (default: a new temp dir)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="modelsafe-safecompress-"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = load_dataset("digits")
    split = MembershipSplit.create(data, SPLIT, seed=args.seed)
    members = split.data(data, "members")
    options = CompressOptions(
        density=0.05, update_interval=30,                   # 19 steps per epoch: a mask update every 30 steps
        train=TrainConfig(epochs=args.epochs, batch_size=32, lr=0.05),
        # SafeCompressConfig fields, scaled down to this small problem (the defaults suit 10,000s of images)
        extra={"safecompress": {"minmax_lambda": 1.0, "refresh_steps": 20, "validation_samples": 150,
                                "bootstrap_rounds": 50}})

    results = {}
    for method in ("rigl", "bmia-safecompress"):
        torch.manual_seed(args.seed)                          # the same initial weights for both methods
        model = create_model_for("mlp", data.info)
        small, info = compress(method, model, members, options, seed=args.seed, dataset=data, split=split,
                               progress=False)
        reports = audit(small, data, split, ["blackbox-nn", "loss"], options={"blackbox-nn": {"epochs": 30}},
                        n_bootstrap=200, seed=args.seed, progress=False)
        packed = export_sparse(small, out / f"{method}.sparse.safetensors")
        results[method] = {
            "test_accuracy": evaluate(small, data.test)["accuracy"],
            "nonzero_params": info["params"]["nonzero"], "total_params": info["params"]["total"],
            "bmia_advantage": reports["blackbox-nn"].advantage, "loss_advantage": reports["loss"].advantage,
            "packed_bytes": packed.sparse_bytes, "seconds": info["seconds"],
            "mask_updates_with_selection": info.get("selections", 0),
        }

    print(f"{'method':<18} {'test acc':>8} {'non-zero':>9} {'bmia adv':>8} {'loss adv':>8} {'packed':>9}")
    for method, r in results.items():
        print(f"{method:<18} {r['test_accuracy']:8.3f} {r['nonzero_params']:9,} {r['bmia_advantage']:8.3f} "
              f"{r['loss_advantage']:8.3f} {r['packed_bytes']:9,}")
    print("advantage = 2 x balanced accuracy - 1 of a fresh attacker on held-out members / non-members; "
          "lower is safer")
    write_json(out / "results.json", results)
    print(f"results in {out} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
