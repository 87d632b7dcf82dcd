"""The figures a GPU run should record, in one short script: attack speed (batched depth-first samples against
the straightforward loop, with and without bfloat16 autocast), host synchronisations per attack step,
reference models per hour, and seconds per epoch of SafeCompress against plain RigL. Run it on the device and
again with ``--device cpu`` for the CPU -> GPU speed-up; it prints Markdown and writes ``--json``.

    python benchmarks/device_figures.py --device cuda --json device.json
    python benchmarks/device_figures.py --device cpu --threads 2 --json cpu.json

Every figure is measured here (nothing entered by hand): times are the best of ``--repeats`` calls after a
warm-up call, with the device synchronised around each. Host synchronisations are counted by CUDA's
synchronisation debug mode (``torch.cuda.set_sync_debug_mode``) over 1 and over 3 attack steps; the difference
over 2 steps is what the iterations themselves cost. On a CPU that column is empty.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tested loops of attack_speed.py
from attack_speed import LOOPS

from modelsafe.adversarial import create_attack
from modelsafe.compress import CompressOptions
from modelsafe.compress.methods import compress
from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
from modelsafe.training import TrainConfig, fit
from modelsafe.workflows import init_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(call, repeats: int, device: torch.device) -> float:
    """Best wall time of ``call()`` over ``repeats`` calls, after one warm-up call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def attack_rows(model, x, y, device: torch.device, repeats: int) -> list[dict]:
    """Images per second of the loop and of the library (float32 and bfloat16 autocast), per attack."""
    rows = []
    for name in ("mi-fgsm", "smi-fgrm", "pgn"):
        calls = {"loop": lambda n=name: LOOPS[n](model, x, y, 0.1, 10, 0),
                 "modelsafe": lambda n=name: create_attack(n, model, eps=0.1)(x, y, seed=0),
                 "modelsafe, bf16 autocast": lambda n=name: create_attack(n, model, eps=0.1, autocast=True)(x, y, seed=0)}
        for label, call in calls.items():
            seconds = best_seconds(call, repeats, device)
            rows.append({"attack": name, "how": label, "images / s": x.shape[0] / seconds,
                         "host syncs per step": syncs_per_step(name, model, x, y, device, "autocast" in label)
                         if label != "loop" else None})
    return rows


def syncs_per_step(name: str, model, x, y, device: torch.device, autocast: bool) -> float | None:
    """Host synchronisations per attack step (CUDA only): counted over 3 steps minus over 1 step, halved."""
    if device.type != "cuda":
        return None
    counts = []
    for steps in (1, 3):
        attack = create_attack(name, model, eps=0.1, steps=steps, autocast=autocast)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                attack(x, y, seed=0)
                torch.cuda.synchronize(device)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in seen))
    return (counts[1] - counts[0]) / 2


def training_rows(data, device: torch.device, members: int, epochs: int, seed: int) -> list[dict]:
    """Reference models per hour (one CNN trained like a reference model) and seconds per epoch of
    bmia-safecompress against rigl, on ``members`` samples."""
    split = MembershipSplit.create(data, SplitSpec(members=members, validation=members // 5,
                                                   reference=members // 2, eval_nonmembers=members // 2), seed=seed)
    train, members_data = TrainConfig(epochs=epochs, batch_size=128, lr=0.05), split.data(data, "members")
    start = time.perf_counter()
    fit(init_model("cnn", data, 1.0, seed), members_data, train, seed=seed, device=device, progress=False)
    _sync(device)
    rows = [{"figure": f"reference models per hour (cnn, {members} samples, {epochs} epochs)",
             "value": 3600 / (time.perf_counter() - start)}]
    options = CompressOptions(density=0.05, update_interval=50, train=train)
    for method in ("rigl", "bmia-safecompress"):
        start = time.perf_counter()
        compress(method, init_model("cnn", data, 1.0, seed), members_data, options, seed=seed, device=device,
                 progress=False, dataset=data, split=split)
        _sync(device)
        rows.append({"figure": f"{method}: seconds per epoch ({members} members, density 0.05)",
                     "value": (time.perf_counter() - start) / epochs})
    return rows


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [("–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--images", type=int, default=500, help="test images attacked")
    p.add_argument("--members", type=int, default=5000, help="training samples of the training figures")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_dataset(args.dataset)
    model = init_model("cnn", data, 1.0, args.seed).to(device).eval()
    x = data.test.features(torch.arange(args.images)).to(device)
    with torch.no_grad():
        y = model(x).argmax(1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {name}, torch {torch.__version__}\n")
    attacks = attack_rows(model, x, y, device, args.repeats)
    print(table(attacks) + "\n")
    training = training_rows(data, device, args.members, args.epochs, args.seed)
    print(table(training))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "attacks": attacks,
                                               "training": training, "settings": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
