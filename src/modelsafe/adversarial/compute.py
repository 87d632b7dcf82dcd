"""Compute accounting: forward and backward passes through the surrogate models, counted where the models are
called (forward hooks on every member during an attack call), never entered by hand.

Units: one image through one model is one forward; one image's gradient back-propagated through one model is
one backward; one gradient evaluation is one loss gradient of one image at one point and one input-transform
view, whatever the number of ensemble members (an ensemble of M models costs M forwards and M backwards for it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ComputeCount:
    """Counts of one or more attack calls: ``images`` attacked, and ``forward``, ``backward`` and
    ``gradient_evaluations`` in image rows (see the module docstring for the units)."""

    images: int = 0
    forward: int = 0
    backward: int = 0
    gradient_evaluations: int = 0

    def __add__(self, other: ComputeCount) -> ComputeCount:
        return ComputeCount(self.images + other.images, self.forward + other.forward,
                            self.backward + other.backward, self.gradient_evaluations + other.gradient_evaluations)

    def _per_image(self, rows: int) -> float:
        return rows / self.images if self.images else 0.0

    @property
    def forward_per_image(self) -> float:
        return self._per_image(self.forward)

    @property
    def backward_per_image(self) -> float:
        return self._per_image(self.backward)

    @property
    def gradient_evaluations_per_image(self) -> float:
        return self._per_image(self.gradient_evaluations)

    def per_image(self) -> dict[str, float]:
        """``forward_per_image``, ``backward_per_image`` and ``gradient_evaluations_per_image`` as a dict."""
        return {"forward_per_image": self.forward_per_image, "backward_per_image": self.backward_per_image,
                "gradient_evaluations_per_image": self.gradient_evaluations_per_image}


@contextmanager
def counting(models: Sequence[nn.Module], count: ComputeCount) -> Iterator[ComputeCount]:
    """Count every forward of ``models`` (each module once, however often it is listed) into ``count``
    while the block runs, and every backward through an output made with a graph."""

    def backward_hook(rows: int):
        def hook(grad: torch.Tensor) -> None:
            count.backward += rows
        return hook

    def forward_hook(module: nn.Module, args: tuple, output) -> None:
        rows = int(output.shape[0]) if isinstance(output, torch.Tensor) else 0
        count.forward += rows
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(backward_hook(rows))

    unique = list({id(m): m for m in models}.values())
    handles = [m.register_forward_hook(forward_hook) for m in unique]
    try:
        yield count
    finally:
        for h in handles:
            h.remove()
