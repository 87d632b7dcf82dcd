"""Surrogate wrappers: model combinations (:class:`~modelsafe.adversarial.parts.ModelCombination`: one model,
or a logit-averaging ensemble) and input resizing for models of other resolutions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modelsafe._checks import check_choice, check_positive_int
from modelsafe.adversarial.parts import Loss, ModelCombination
from modelsafe.errors import ModelsafeError

RESIZE_MODES = ("bilinear", "bicubic", "nearest", "area")


class Resized(nn.Module):
    """Runs ``model`` on inputs resized to ``size`` (int or (H, W)), differentiably. Lets models with other
    native resolutions share one attack or one ensemble. Input (N, C, h, w) in [0, 1]; output: the logits."""

    def __init__(self, model: nn.Module, size: int | tuple[int, int], mode: str = "bilinear"):
        super().__init__()
        self.model = model
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        for s in self.size:
            check_positive_int("size", s)
        self.mode = check_choice("mode", mode, RESIZE_MODES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size:
            align = False if self.mode in ("bilinear", "bicubic") else None
            x = F.interpolate(x, size=self.size, mode=self.mode, align_corners=align)
        return self.model(x)


class SingleModel(ModelCombination):
    """One surrogate ``model`` as a combination (what an attack makes of a plain ``nn.Module``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.members = [model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def input_gradient(self, leaf: torch.Tensor, inputs: Callable[[int], torch.Tensor], y: torch.Tensor,
                       loss: Loss) -> torch.Tensor:
        return torch.autograd.grad(loss(self.model(inputs(0)), y), leaf)[0]


class Ensemble(ModelCombination):
    """Logit averaging: ``forward(x) = sum_m w_m f_m(x)`` with weights normalised to sum 1 (equal by
    default), the S-FGRM ensemble. Members must accept the same input; wrap others in :class:`Resized`
    (or pass ``input_sizes``, one size or None per member).

    ``memory_saving=True`` changes only how attacks take gradients: instead of one graph through every
    member, a first pass computes the averaged logits without a graph, the loss gradient with respect to
    those logits is formed, and then each member in turn is run with a graph and back-propagated with its
    weighted share of that logit gradient. By the chain rule this is exactly the gradient of the loss of the
    averaged logits (not a sum of per-member losses), at the cost of one extra forward pass per member, and
    only one member's activations are held at a time."""

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None,
                 memory_saving: bool = False, input_sizes: Sequence[int | tuple[int, int] | None] | None = None):
        super().__init__()
        models = list(models)
        if not models:
            raise ModelsafeError("an ensemble needs at least one model")
        if input_sizes is not None:
            if len(input_sizes) != len(models):
                raise ModelsafeError(f"input_sizes has {len(input_sizes)} entries for {len(models)} models")
            models = [m if s is None else Resized(m, s) for m, s in zip(models, input_sizes)]
        if weights is None:
            weights = [1.0] * len(models)
        weights = [float(w) for w in weights]
        if len(weights) != len(models):
            raise ModelsafeError(f"weights has {len(weights)} entries for {len(models)} models")
        if any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ModelsafeError(f"ensemble weights must be >= 0 with a positive sum, got {weights}")
        total = sum(weights)
        self.members = nn.ModuleList(models)
        self.weights = [w / total for w in weights]
        self.memory_saving = bool(memory_saving)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(w * m(x) for w, m in zip(self.weights, self.members))

    def input_gradient(self, leaf: torch.Tensor, inputs: Callable[[int], torch.Tensor], y: torch.Tensor,
                       loss: Loss) -> torch.Tensor:
        """Gradient of ``loss(sum_m w_m f_m(inputs(m)), y)``: one graph through every member, or with
        ``memory_saving`` one member at a time (see the class docstring)."""
        pairs = list(zip(self.weights, self.members))
        if not self.memory_saving:
            logits = sum(w * m(inputs(j)) for j, (w, m) in enumerate(pairs))
            return torch.autograd.grad(loss(logits, y), leaf)[0]
        with torch.no_grad():
            mean_logits = sum(w * m(inputs(j)) for j, (w, m) in enumerate(pairs))
        mean_logits.requires_grad_(True)
        logit_grad = torch.autograd.grad(loss(mean_logits, y), mean_logits)[0]
        grad = torch.zeros_like(leaf)
        for j, (w, m) in enumerate(pairs):
            grad += torch.autograd.grad(m(inputs(j)), leaf, grad_outputs=w * logit_grad)[0]
        return grad
