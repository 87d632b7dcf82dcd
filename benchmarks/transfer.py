"""Transfer-attack benchmark on Fashion-MNIST: every preset, one surrogate, a zoo of differently built targets.

Prints (1) the transfer-success matrix (Markdown), (2) the MI-FGSM black-box check (eps should put it in
20-60 %) and the S-FGRM gain over MI-FGSM, (3) seconds per 100 images: SMI-FGRM as implemented (chunked)
against a straightforward loop of N+1 separate forward/backward calls, (4) with ``--evidence``, diagnostics
for the size of the gain: rescale/sampling ablations, gradient alignment between surrogate and targets, and
how far the depth-first walk leaves the image range.

    .venv/bin/python benchmarks/transfer.py --cache runs/transfer-zoo --images 500
    .venv/bin/python benchmarks/transfer.py --budget 130 --plot runs/transfer-cost.png --no-evidence

``--budget K`` also runs every attack scaled to K gradient evaluations per image by one rule for all
(:func:`modelsafe.adversarial.plan_budget`: sample counts scaled by a common factor at T = 10, or T scaled for
attacks without sample counts), and ``--plot`` draws black-box success against gradient evaluations per image
for both runs. Every attack's count is the library's own.

Trained weights are cached in ``--cache`` (safetensors), so later runs only attack.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from modelsafe.adversarial import (
    PRESETS,
    TransferAttack,
    create_attack,
    depth_first_walk,
    plan_budget,
    rescale_official,
    transfer_matrix,
)
from modelsafe.data import load_dataset
from modelsafe.errors import ModelsafeError
from modelsafe.models import create_model_for
from modelsafe.report import transfer_table
from modelsafe.storage.io import load_weights, save_weights
from modelsafe.training import TrainConfig, evaluate, fit

# name -> (architecture, width, learning rate): four differently built models
ZOO = {
    "cnn": ("cnn", 1.0, 0.05),          # conv32-conv64-fc128 (surrogate)
    "mlp": ("mlp", 1.0, 0.05),          # 784-512-256-10
    "vgg11": ("vgg11", 0.25, 0.02),     # CIFAR-style VGG-11 with BatchNorm, widths 16..128
    "resnet18": ("resnet18", 0.125, 0.05),  # CIFAR-style ResNet-18, widths 8..64
}


def build_zoo(data, args) -> dict:
    cache = Path(args.cache)
    train = data.train.subset(range(args.train_size))
    zoo = {}
    for name, (arch, width, lr) in ZOO.items():
        torch.manual_seed(args.seed)
        model = create_model_for(arch, data.info, width=width)
        path = cache / f"{name}-n{args.train_size}-e{args.epochs}-s{args.seed}.safetensors"
        if path.is_file():
            load_weights(path, model)
        else:
            t0 = time.perf_counter()
            fit(model, train, TrainConfig(epochs=args.epochs, lr=lr, batch_size=128), seed=args.seed,
                device=args.device, progress=args.progress)
            save_weights(path, model)
            print(f"trained {name} in {time.perf_counter() - t0:.0f} s")
        zoo[name] = model.to(args.device).eval()
    return zoo


def naive_smi_fgrm(model, x0, y, eps, steps=10, samples=12, beta=1.5, gamma=1.0, seed=0):
    """SMI-FGRM written the straightforward way: N+1 separate forward/backward calls per iteration. Draws the
    walk from the same generator stream as modelsafe (one block per iteration), so outputs are comparable."""
    gen = torch.Generator().manual_seed(seed)
    alpha, x, mom = eps / steps, x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        walk = torch.empty((samples, *x.shape), dtype=x.dtype).uniform_(-beta * eps, beta * eps, generator=gen)
        walk = walk.to(x.device)
        total, point = torch.zeros_like(x), x
        for i in range(samples + 1):
            if i:
                point = point + walk[i - 1]
            leaf = point.detach().requires_grad_(True)
            grad = torch.autograd.grad(F.cross_entropy(model(leaf), y, reduction="sum"), leaf)[0]
            total += (gamma if i == 0 else 1.0) * grad
        avg = total / (samples + gamma)
        mom = mom + avg / avg.abs().mean((1, 2, 3), keepdim=True)
        x = torch.clamp(x0 + torch.clamp(x + alpha * rescale_official(mom) - x0, -eps, eps), 0, 1)
    return x


def best_time(fn, repeats: int) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def speed(zoo, x, eps, args) -> list[dict]:
    surrogate = zoo["cnn"]
    with torch.no_grad():
        y = surrogate(x).argmax(1)
    rows, per100 = [], 100 / x.shape[0]
    naive = best_time(lambda: naive_smi_fgrm(surrogate, x, y, eps), args.repeats)
    rows.append({"method": "straightforward loop, N+1 calls of 100 images", "s_per_100": naive * per100})
    for chunk in (50, 100, 260, 1300):
        attack = create_attack("smi-fgrm", surrogate, eps=eps, chunk_size=chunk)
        rows.append({"method": f"modelsafe smi-fgrm, chunk_size={chunk}",
                     "s_per_100": best_time(lambda a=attack: a(x, y), args.repeats) * per100})
    mi = create_attack("mi-fgsm", surrogate, eps=eps)
    rows.append({"method": "modelsafe mi-fgsm (reference cost)", "s_per_100": best_time(lambda: mi(x, y),
                                                                                         args.repeats) * per100})
    return rows


def same_as_loop(surrogate, x, eps) -> dict:
    """Max |modelsafe smi-fgrm − the straightforward loop| over 10 steps, in float64 (where rounding cannot flip
    the step direction of near-zero momentum entries) and in float32 (where it can)."""
    out = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        model = copy.deepcopy(surrogate).to(dtype).eval()
        xd = x.to(dtype)
        with torch.no_grad():
            y = model(xd).argmax(1)
        diff = create_attack("smi-fgrm", model, eps=eps, chunk_size=50)(xd, y) - naive_smi_fgrm(model, xd, y, eps)
        out[name] = {"max_abs_diff": diff.abs().max().item(),
                     "pixels_off_by_1e-4": diff.abs().gt(1e-4).double().mean().item()}
    return out


def gradient_alignment(zoo, x, y, eps, args) -> list[dict]:
    """Mean cosine similarity between each target's input gradient at the clean image and the surrogate's
    gradient estimate: plain, or the DFS average (N=12) for several beta."""
    def grad(model, points):
        leaf = points.detach().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(model(leaf), y, reduction="sum"), leaf)[0]

    surrogate = zoo["cnn"]
    truth = {name: grad(m, x).flatten(1) for name, m in zoo.items() if name != "cnn"}
    gen = torch.Generator(device=x.device).manual_seed(args.seed)
    estimates = {"plain gradient": grad(surrogate, x)}
    for beta in (0.25, 0.5, 1.0, 1.5, 3.0):
        walk = depth_first_walk(x, 12, beta * eps, gen)
        total = grad(surrogate, x) + sum(grad(surrogate, p) for p in walk)
        estimates[f"DFS N=12, beta={beta}"] = total / 13
        if beta == 1.5:
            outside = ((walk < 0) | (walk > 1)).double().mean().item()
    rows = []
    for label, est in estimates.items():
        row = {"surrogate estimate": label}
        for name, g in truth.items():
            row[name] = F.cosine_similarity(est.flatten(1), g, dim=1).mean().item()
        row["mean"] = sum(row[n] for n in truth) / len(truth)
        rows.append(row)
    rows.append({"surrogate estimate": f"(walk pixels outside [0, 1] at beta=1.5: {100 * outside:.1f} %)"})
    return rows


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                     for c in cols) + " |")
    return "\n".join(out)


def _planned(name: str, plan, device: str, model):
    return TransferAttack(model, plan.spec, name=f"{name}@{plan.budget}", device=device)


def budget_section(args, zoo: dict, evalset, names: list[str]):
    """Every attack of ``names`` at ``args.budget`` gradient evaluations per image (planned once each); the
    attacks the rule cannot scale (single-step ones) are listed with the reason."""
    shape = tuple(evalset.features(torch.arange(1)).shape[1:])
    factories, skipped = {}, {}
    for name in names:
        try:
            plan = plan_budget(name, args.budget, shape, eps=args.eps, quantize=True)
        except ModelsafeError as exc:
            skipped[name] = str(exc)
            continue
        factories[name] = functools.partial(_planned, name, plan, args.device)
    result = transfer_matrix(factories, {"cnn": zoo["cnn"]}, zoo, evalset, eps=args.eps, batch_size=100,
                             labels="predicted", seed=args.seed, device=args.device, progress=args.progress)
    return result, skipped


def paired_rows(matrix, reference: str) -> list[dict]:
    """Every attack's black-box success minus ``reference``'s on the same images (paired by image), best first,
    with a 95% bootstrap interval over images of the per-image difference."""
    rows = []
    for r in sorted(matrix.attacks, key=lambda r: -r["black_box_mean"]):
        if r["attack"] == reference:
            continue
        d = matrix.paired_difference(r["attack"], reference, "cnn")
        rows.append({"attack": r["attack"], "black-box mean (%)": 100 * r["black_box_mean"],
                     f"minus {reference} (points)": 100 * d["mean"],
                     "95% CI": f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]",
                     "CI excludes 0": d["ci"][0] > 0 or d["ci"][1] < 0})
    return rows


def print_paired(runs: list[tuple[str, object]], reference: str, figures: dict) -> None:
    for label, matrix in runs:
        if (reference, "cnn") not in matrix.black_box_hits:
            print(f"\n(no paired comparison for {label}: {reference} was not run)")
            continue
        rows = paired_rows(matrix, reference)
        print(f"\n## Paired by image against {reference}, {label} ({matrix.settings['n_images']} images)\n")
        print(table(rows))
        figures.setdefault("paired", {})[label] = rows


def plot_cost(runs: list[tuple[str, object]], path: str) -> None:
    """Black-box mean success (with its bootstrap interval) against gradient evaluations per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for (label, result), marker in zip(runs, ("o", "s")):
        for row in result.attacks:
            x, y, ci = row["gradient_evaluations_per_image"], 100 * row["black_box_mean"], row["black_box_ci"]
            ax.errorbar(x, y, yerr=[[y - 100 * ci[0]], [100 * ci[1] - y]], fmt=marker, capsize=2,
                        color="C0" if marker == "o" else "C1", label=label if row is result.attacks[0] else None)
            ax.annotate(row["attack"], (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("gradient evaluations per image (counted)")
    ax.set_ylabel("black-box success, mean over targets (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default="runs/transfer-zoo", help="folder for trained zoo weights")
    p.add_argument("--images", type=int, default=500, help="test images to attack")
    p.add_argument("--eps", type=float, default=0.1, help="L-inf budget in [0, 1] units")
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=2, help="timing repeats (best of)")
    p.add_argument("--evidence", action=argparse.BooleanOptionalAction, default=True,
                   help="ablations and gradient-alignment diagnostics")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    p.add_argument("--attacks", nargs="+", default=None, help="presets to run (default: every preset)")
    p.add_argument("--budget", type=int, default=None,
                   help="also run every attack scaled to K gradient evaluations per image (130: S-FGRM's own cost)")
    p.add_argument("--paired", default="smi-fgrm", help="attack every other one is compared with, image by image")
    p.add_argument("--plot", default=None, help="PNG: black-box success against gradient evaluations per image")
    p.add_argument("--device", default="cpu", help="where the zoo trains and every section runs (speed and "
                   "alignment included)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_dataset("fashion-mnist")
    zoo = build_zoo(data, args)
    evalset = data.test.subset(range(args.images))
    print("\n## Zoo (accuracy on the full 10,000-image test split)\n")
    print(table([{"model": n, "architecture": f"{ZOO[n][0]} width {ZOO[n][1]}",
                  "parameters": sum(q.numel() for q in m.parameters()),
                  "test accuracy": evaluate(m, data.test)["accuracy"]} for n, m in zoo.items()]))

    in_table_order = args.attacks or [p.name for p in PRESETS.entries()]
    result = transfer_matrix(in_table_order, {"cnn": zoo["cnn"]}, zoo, evalset, eps=args.eps, steps=None,
                             batch_size=100, quantize=True, labels="predicted", seed=args.seed,
                             device=args.device, progress=args.progress)
    print(f"\n## Transfer success (%), surrogate cnn, eps={args.eps}, T=10, {args.images} test images, "
          "8-bit outputs, labels = surrogate prediction\n")
    print(transfer_table(result, "all"))
    print("Over images the target classified correctly:\n")
    print(transfer_table(result, "correct"))
    mi = smi = None
    if {"mi-fgsm", "smi-fgrm"} <= set(in_table_order):
        mi, smi = result.black_box_mean("mi-fgsm"), result.black_box_mean("smi-fgrm")
        print(f"MI-FGSM black-box mean: {100 * mi:.1f} % -> eps is "
              + ("inside" if 0.2 <= mi <= 0.6 else "OUTSIDE") + " the 20-60 % band")
        print(f"SMI-FGRM black-box mean: {100 * smi:.1f} %, gain over MI-FGSM {100 * (smi - mi):+.1f} points "
              f"(target >= +10: {'met' if smi - mi >= 0.10 else 'not met'})")
    figures = {"matrix": result.to_dict(), "mi_black_box": mi, "smi_black_box": smi}
    runs = [("paper defaults", result)]
    if args.budget:
        at_budget, skipped = budget_section(args, zoo, evalset, in_table_order)
        print(f"\n## Transfer success (%) at {args.budget} gradient evaluations per image (same images, surrogate "
              "and seed)\n")
        print(transfer_table(at_budget, "all"))
        for name, reason in skipped.items():
            print(f"{name}: not run at this budget ({reason})")
        ranked = sorted(at_budget.attacks, key=lambda r: -r["black_box_mean"])
        print("ranking by black-box mean: " + ", ".join(f"{r['attack']} {100 * r['black_box_mean']:.1f}"
                                                         for r in ranked))
        figures["budget"] = {"matrix": at_budget.to_dict(), "skipped": skipped}
        runs.append((f"{args.budget} evaluations per image", at_budget))
    print_paired(runs, args.paired, figures)
    if args.plot:
        plot_cost(runs, args.plot)
        print(f"plot: {args.plot}")

    x_speed = evalset.features(torch.arange(min(100, args.images))).to(args.device)
    rows = speed(zoo, x_speed, args.eps, args)
    print(f"\n## Speed: seconds per 100 images (best of {args.repeats}), smi-fgrm N=12, T=10, "
          f"torch threads {torch.get_num_threads()}\n")
    print(table(rows))
    figures["speed"] = rows
    same = same_as_loop(zoo["cnn"], x_speed[:20], args.eps)
    print("\nsmi-fgrm against the straightforward loop on 20 images, same random walk: max |difference| "
          f"{same['float64']['max_abs_diff']:.1e} in float64; {same['float32']['max_abs_diff']:.3f} in float32 "
          f"({100 * same['float32']['pixels_off_by_1e-4']:.1f} % of pixels), where rounding flips the step of "
          "near-zero momentum entries")
    figures["same_as_loop"] = same

    if args.evidence:
        ablations = {
            "mi-fgsm": lambda m: create_attack("mi-fgsm", m, eps=args.eps, quantize=True),
            "fgrm official (no sampling)": lambda m: create_attack("fgrm", m, eps=args.eps, quantize=True),
            "fgrm paper (no sampling)": lambda m: create_attack("fgrm", m, eps=args.eps, quantize=True,
                                                                rescale="paper"),
            "sampling + sign step": lambda m: create_attack("smi-fgrm", m, eps=args.eps, quantize=True, step="sign"),
            "smi-fgrm official": lambda m: create_attack("smi-fgrm", m, eps=args.eps, quantize=True),
            "smi-fgrm paper": lambda m: create_attack("smi-fgrm", m, eps=args.eps, quantize=True, rescale="paper"),
            "smi-fgrm beta=0.5": lambda m: create_attack("smi-fgrm", m, eps=args.eps, quantize=True, beta=0.5),
        }
        ab = transfer_matrix(ablations, {"cnn": zoo["cnn"]}, zoo, evalset, batch_size=100, seed=args.seed,
                             progress=args.progress)
        print("\n## Evidence 1: which part of S-FGRM moves black-box success (same images and surrogate)\n")
        print(transfer_table(ab, "all"))
        figures["ablations"] = ab.to_dict()
        x_al = evalset.features(torch.arange(min(200, args.images))).to(args.device)
        y_al = evalset.y[: x_al.shape[0]].to(args.device)
        align = gradient_alignment(zoo, x_al, y_al, args.eps, args)
        print("\n## Evidence 2: cosine similarity of the surrogate's gradient estimate with each target's true "
              "input gradient (clean images)\n")
        print(table(align))
        figures["alignment"] = align
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
