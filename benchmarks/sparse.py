"""Sparse-training baselines on Fashion-MNIST: test accuracy, time per epoch, mask-update overhead and real
file size of dense, static, set, rigl, itop, gmp and oneshot, for a small CNN and a narrow VGG-11, at
densities 0.05 and 0.1.

    python benchmarks/sparse.py                       # the table in docs/sparse.md (~15 min on 2 cores)
    python benchmarks/sparse.py --epochs 1 --train-size 2000 --models cnn   # a quick look

``mask %`` is the wall time spent by the mask engine (gradient hooks, re-masking weights and optimizer state
after each step, mask updates) as a share of the run's training time; the target is below 10%. ``size x`` is
dense safetensors bytes / packed sparse bytes of the trained model (:func:`modelsafe.sparse.export_sparse`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from modelsafe.compress import CompressOptions, compress
from modelsafe.data import load_dataset
from modelsafe.models import create_model_for
from modelsafe.sparse import export_sparse
from modelsafe.training import TrainConfig, evaluate
from modelsafe.utils import derive_seed, make_generator

METHODS = ["dense", "static", "set", "rigl", "itop", "gmp", "oneshot"]
MODELS = {"cnn": 1.0, "vgg11": 0.25}  # model name -> width


def run_one(method: str, model_name: str, density: float, data, train, test, args) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = create_model_for(model_name, data.info, width=MODELS[model_name])
    options = CompressOptions(
        density=density, update_interval=args.update_interval, finetune_epochs=args.finetune_epochs,
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr))
    start = time.perf_counter()
    model, info = compress(method, model, train, options, seed=args.seed, device=args.device, progress=args.progress)
    seconds = time.perf_counter() - start
    epochs = args.epochs + (info.get("finetune_epochs") or 0)
    with tempfile.TemporaryDirectory() as tmp:
        size = export_sparse(model, Path(tmp) / "w.safetensors")
    return {"model": model_name, "density": 1.0 if method == "dense" else density, "method": method,
            "test_accuracy": evaluate(model, test, device=args.device)["accuracy"],
            "seconds": seconds, "epochs": epochs, "seconds_per_epoch": seconds / epochs,
            "mask_share": info.get("mask_seconds", 0.0) / seconds, "updates": info.get("updates"),
            "itop_rate": info.get("itop_rate"), "nonzero_params": info["params"]["nonzero"],
            "total_params": info["params"]["total"], "size_ratio": size.ratio,
            "flops_ratio": info["flops"]["ratio"]}


def format_table(rows: list[dict]) -> str:
    header = ("| model | density | method | test acc | s/epoch | mask % | updates | ITOP rate | non-zero params "
              "| size x |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        itop = "" if r["itop_rate"] is None else f"{r['itop_rate']:.3f}"
        updates = "" if r["updates"] is None else str(r["updates"])
        lines.append(f"| {r['model']} | {r['density']:g} | {r['method']} | {r['test_accuracy']:.4f} | "
                     f"{r['seconds_per_epoch']:.1f} | {100 * r['mask_share']:.1f} | {updates} | {itop} | "
                     f"{r['nonzero_params']:,} / {r['total_params']:,} | {r['size_ratio']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--densities", nargs="+", type=float, default=[0.05, 0.1])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--train-size", type=int, default=10_000, help="training images (a seeded subset)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1, help="oneshot fine-tuning after pruning")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--update-interval", type=int, default=25, help="steps between mask updates")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("fashion-mnist")
    order = torch.randperm(len(data.train), generator=make_generator(derive_seed(args.seed, "bench-subset")))
    train = data.train.subset(order[:args.train_size])
    steps = -(-len(train) // args.batch_size) * args.epochs
    print(f"Fashion-MNIST: {len(train)} training images, {len(data.test)} test images; {args.epochs} epochs "
          f"({steps} steps) of SGD (momentum 0.9, wd 5e-4, lr {args.lr}, cosine), batch {args.batch_size}; "
          f"masks: ERK, drop fraction 0.5 -> 0.005 (cosine), update every {args.update_interval} steps until 75% "
          f"(itop: 100%); gmp prunes from 10% to 75%; oneshot fine-tunes {args.finetune_epochs} epoch(s); "
          f"{args.threads} threads, seed {args.seed}, torch {torch.__version__}", flush=True)
    rows = []
    for model_name in args.models:
        for method in args.methods:
            for density in ([1.0] if method == "dense" else args.densities):
                row = run_one(method, model_name, density, data, train, data.test, args)
                rows.append(row)
                print(f"  {model_name} d={row['density']:g} {method}: acc {row['test_accuracy']:.4f}, "
                      f"{row['seconds_per_epoch']:.1f} s/epoch, mask {100 * row['mask_share']:.1f}%", flush=True)
    print()
    print(format_table(rows))
    worst = max((r["mask_share"] for r in rows if r["method"] != "dense"), default=0.0)
    print(f"\nlargest mask-engine overhead: {100 * worst:.1f}% of training time (target < 10%)")
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
