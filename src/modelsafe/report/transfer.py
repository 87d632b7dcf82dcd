"""Reports of transfer attacks: the success table of a :class:`~modelsafe.adversarial.TransferMatrix`
(Markdown), the example grid (PNG: clean, adversarial and perturbation images) and the files an attack run
writes (``transfer.json``, ``transfer.csv``, ``transfer.md``, ``examples.png``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from modelsafe._checks import check_choice, check_images
from modelsafe.adversarial.matrix import TransferMatrix
from modelsafe.errors import ModelsafeError
from modelsafe.storage.io import write_csv, write_json, write_text


def transfer_table(result: TransferMatrix, over: str = "all") -> str:
    """One row per (surrogate, attack), one column per target (success %, ``*`` = white-box), then the
    black-box mean (with its 95% bootstrap interval over images, for ``over="all"``), white-box rate,
    perturbation sizes, time and gradient evaluations per image. ``over``: ``"all"`` images or ``"correct"``
    (images the target classified correctly)."""
    check_choice("over", over, ("all", "correct"))
    key = "success" if over == "all" else "success_on_correct"
    targets = result.target_names()
    head = ["surrogate", "attack", *targets, "black-box mean", "white-box", "L∞", "L2", "s / 100 img",
            "grad evals / img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    cell = {(c["attack"], c["surrogate"], c["target"]): c for c in result.cells}
    for row in result.attacks:
        a, s = row["attack"], row["surrogate"]
        values = []
        for t in targets:
            c = cell[(a, s, t)]
            v = c[key]
            values.append("n/a" if v is None else f"{100 * v:.1f}" + ("*" if c["white_box"] else ""))
        bb = row["black_box_mean"] if over == "all" else row["black_box_mean_on_correct"]
        wb = row["white_box_success"] if over == "all" else row["white_box_success_on_correct"]
        ci = row.get("black_box_ci") if over == "all" else None
        bb_text = "n/a" if bb is None else f"{100 * bb:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
        lines.append("| " + " | ".join([
            s, a, *values, bb_text, "n/a" if wb is None else f"{100 * wb:.1f}",
            f"{row['mean_linf']:.4f}", f"{row['mean_l2']:.3f}", f"{row['seconds_per_100']:.2f}",
            f"{row.get('gradient_evaluations_per_image', float('nan')):g}"]) + " |")
    return "\n".join(lines) + "\n"


def write_transfer_report(folder: Path, result: TransferMatrix, dataset: str, described: dict, names: list[str],
                          n: int, settings: str, eps: str, examples: int) -> None:
    """transfer.json / .csv / .md and the example grid (of the first surrogate) of one attack run."""
    write_json(folder / "transfer.json", {**result.to_dict(), "dataset": dataset, "models": described})
    per_attack = {(r["attack"], r["surrogate"]): r for r in result.attacks}
    write_csv(folder / "transfer.csv", [
        {**c, **{k: v for k, v in per_attack[(c["attack"], c["surrogate"])].items() if k != "spec"}}
        for c in result.cells])
    clean = "\n".join(f"| {k} | {100 * v:.1f} |" for k, v in result.clean_accuracy.items())
    text = (f"# Transfer attacks on {dataset}\n\n{n} test images, {settings}. Cells: attack success rate (%); "
            f"`*` = white-box.\n\n## Success over all images\n\n{transfer_table(result, 'all')}\n"
            f"## Success over images the target classified correctly\n\n{transfer_table(result, 'correct')}\n"
            f"## Clean accuracy (%)\n\n| model | accuracy |\n|---|---:|\n{clean}\n")
    write_text(folder / "transfer.md", text)
    if examples and result.examples:
        first = result.settings["surrogates"][0]
        keys = [(a, first) for a in names if (a, first) in result.examples]
        clean_imgs = result.examples[keys[0]][0]
        example_grid(clean_imgs, [result.examples[k][1] for k in keys], [k[0] for k in keys],
                     folder / "examples.png", eps=result.settings["eps"], title=f"surrogate {first}, eps {eps}")


def example_grid(clean: torch.Tensor, adversarial: Sequence[torch.Tensor], names: Sequence[str],
                 path: str | os.PathLike, eps: float | None = None, title: str | None = None) -> Path:
    """Save a PNG grid: one column per image; the first row the clean images, then for each attack one row
    of adversarial images and one of the perturbation (grey = 0, white/black = +/- ``eps``, or the largest
    perturbation when ``eps`` is None). ``clean`` and each ``adversarial`` entry are (N, C, H, W) in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_images(clean, "clean")
    if len(adversarial) != len(names):
        raise ModelsafeError(f"{len(adversarial)} adversarial batches but {len(names)} names")
    for adv in adversarial:
        check_images(adv, "adversarial")
        if adv.shape != clean.shape:
            raise ModelsafeError(f"adversarial shape {tuple(adv.shape)} differs from clean {tuple(clean.shape)}")
    n = clean.shape[0]
    rows = [("clean", clean)]
    for name, adv in zip(names, adversarial):
        delta = (adv - clean).float()
        scale = eps if eps else float(delta.abs().max()) or 1.0
        rows += [(name, adv), (f"{name}: δ", (0.5 + delta / (2 * scale)).clamp(0, 1))]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n + 1.6, 1.2 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            img = imgs[c].detach().cpu().float()
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img[:3].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
