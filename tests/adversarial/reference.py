"""Pieces the hand-written reference loops share: a tiny float64 conv model, its loss gradient by autograd on
one point at a time, the L-infinity projection, and the paper's FGRM rescaling written out (none of them call
the library's attack parts)."""

import torch
from torch import nn

SHAPE = (2, 8, 8)  # (C, H, W): 2 x 2 blocks of 4 x 4 pixels


def tiny_model() -> nn.Module:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 64, 4))
    with torch.no_grad():
        model[0].weight.mul_(5)  # saturating units: gradients change enough between steps to flip signs
    return model.double().eval()


def tiny_images(n: int = 3) -> torch.Tensor:
    return 0.2 + 0.6 * torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, view=lambda v: v) -> torch.Tensor:
    """d sum CE(model(view(x)), y) / dx for one point x (N, C, H, W)."""
    leaf = x.detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(view(leaf)), y, reduction="sum")
    return torch.autograd.grad(loss, leaf)[0]


def l1_normalised(g: torch.Tensor) -> torch.Tensor:
    return g / g.abs().mean((1, 2, 3), keepdim=True)


def project(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.clamp(x0 + torch.clamp(x - x0, -eps, eps), 0, 1)


def fgrm_paper(g: torch.Tensor, c: float = 2.0) -> torch.Tensor:
    """c * sign(g) * sigmoid(z), z the per-image z-score of log2|g| (unbiased std); g has no zeros here."""
    logs = torch.log2(g.abs())
    z = (logs - logs.mean((1, 2, 3), keepdim=True)) / logs.std((1, 2, 3), keepdim=True)
    return c * torch.sign(g) * torch.sigmoid(z)
