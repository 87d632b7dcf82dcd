"""Figures for attack reports (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from modelsafe._checks import check_images
from modelsafe.errors import ModelsafeError


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
