"""The gradient oracle an estimator calls: loss gradients at (K, N, C, H, W) points, each the weighted mean
over the views of the input transforms, evaluated through a model combination in chunks of rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from modelsafe.adversarial.compute import ComputeCount
from modelsafe.adversarial.parts import InputTransform, Loss, ModelCombination
from modelsafe.errors import ModelsafeError
from modelsafe.utils import host_to_device

TRANSFORM_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


class PointGradients:
    """``grad_fn`` of one attack call on labels ``y`` (N,). Row order: gradient point, then view (the first
    transform's index most significant), then image; at most ``chunk`` rows per model call. Input-transform
    randomness is drawn from ``generator`` (CPU), once per call, in the order of ``transforms``. With
    ``autocast`` the model calls run under bfloat16 autocast on the points' device type."""

    def __init__(self, combination: ModelCombination, transforms: Sequence[InputTransform], y: torch.Tensor,
                 loss: Loss, chunk: int, count: ComputeCount, generator: torch.Generator, *, autocast: bool = False):
        self.combination, self.transforms, self.y, self.loss = combination, list(transforms), y, loss
        self.autocast = autocast
        self.chunk, self.count, self.generator = chunk, count, generator
        self.counts = [int(t.views()) for t in self.transforms]
        joint = torch.ones(1, dtype=torch.float64)
        for t, v in zip(self.transforms, self.counts):
            joint = torch.outer(joint, _view_weights(t, v)).reshape(-1)
        self.views = math.prod(self.counts)
        self.weights, self.total_weight = joint, float(joint.sum())
        self.checked = not self.transforms  # the first model call on transformed inputs is checked

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        if not isinstance(points, torch.Tensor) or points.dim() != 5 or points.shape[1] != self.y.shape[0]:
            got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            raise ModelsafeError(f"grad_fn takes (K, {self.y.shape[0]}, C, H, W) points, got {got}")
        k_points, batch = points.shape[:2]
        members = len(self.combination.members)
        draws = [t.prepare(k_points, members, points.shape[2:], self.generator,
                           **({"images": batch} if _per_image(t) else {})) for t in self.transforms]
        flat = points.reshape(k_points * batch, *points.shape[2:])
        out = torch.zeros_like(flat)
        total = k_points * self.views * batch
        weights = host_to_device(self.weights / self.total_weight, points.device, points.dtype)
        for start in range(0, total, self.chunk):
            stop = min(start + self.chunk, total)
            k, view, image = self._indices(torch.arange(start, stop), batch)  # CPU, for the transforms
            rows = torch.arange(start, stop, device=points.device)
            b = rows % batch
            if self.views == 1:  # rows are the points' own rows: slices, no gather or scatter
                leaf = flat[start:stop].detach().requires_grad_(True)
                out[start:stop] += self._gradient(leaf, self._inputs(leaf, view, k, image, draws), self.y[b])
            else:
                index = rows // (self.views * batch) * batch + b
                leaf = flat[index].detach().requires_grad_(True)
                grad = self._gradient(leaf, self._inputs(leaf, view, k, image, draws), self.y[b])
                grad = grad * weights[(rows // batch) % self.views].view(-1, *[1] * (grad.dim() - 1))
                out.index_add_(0, index, grad)
            self.count.gradient_evaluations += stop - start
        return out.view_as(points)

    def _indices(self, rows: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gradient point, the joint view index and the image of each row (CPU long tensors)."""
        return rows // (self.views * batch), (rows // batch) % self.views, rows % batch

    def _inputs(self, leaf: torch.Tensor, view: torch.Tensor, k: torch.Tensor, image: torch.Tensor,
                draws: list[Any]) -> Callable[[int], torch.Tensor]:
        """``inputs(j)``: the chunk as member j sees it, every transform applied with its own view index."""
        own, rest = [], self.views
        for v in self.counts:
            rest //= v
            own.append((view // rest) % v)
        self.shapes: list[tuple[str, tuple, tuple]] = []

        def inputs(j: int) -> torch.Tensor:
            x = leaf
            for t, v, draw in zip(self.transforms, own, draws):
                out = _apply(t, x, v, k, j, draw, image)
                if not self.checked:
                    self.shapes.append((type(t).__name__, tuple(x.shape), tuple(out.shape)))
                x = out
            return x

        return inputs

    def _gradient(self, leaf: torch.Tensor, inputs: Callable[[int], torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """d loss / d leaf (the leaf's dtype), under bfloat16 autocast when asked."""
        with torch.autocast(leaf.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            grad = self._checked_gradient(leaf, inputs, y)
        return grad.to(leaf.dtype)

    def _checked_gradient(self, leaf: torch.Tensor, inputs: Callable[[int], torch.Tensor],
                          y: torch.Tensor) -> torch.Tensor:
        if self.checked:
            return self.combination.input_gradient(leaf, inputs, y, self.loss)
        try:
            grad = self.combination.input_gradient(leaf, inputs, y, self.loss)
        except ModelsafeError:
            raise
        except TRANSFORM_ERRORS as err:
            changed = [f"{name} {a} -> {b}" for name, a, b in self.shapes if a != b]
            names = "; ".join(changed) or ", ".join(dict.fromkeys(name for name, _, _ in self.shapes))
            raise ModelsafeError(f"the surrogate cannot take the output of input transform(s) {names}: "
                                 f"{type(err).__name__}: {err}") from err
        self.checked = True
        return grad


def _view_weights(transform: InputTransform, views: int) -> torch.Tensor:
    """The (views,) float64 weights of ``transform``, checked: non-negative with a positive sum."""
    name = type(transform).__name__
    if views < 1:
        raise ModelsafeError(f"input transform {name} must give at least one view, got {views}")
    w = torch.as_tensor(transform.weights(), dtype=torch.float64).reshape(-1)
    if w.numel() != views or not bool((w >= 0).all()) or not float(w.sum()) > 0:
        raise ModelsafeError(f"input transform {name} must give {views} non-negative weights with a positive "
                             f"sum, got {w.tolist()}")
    return w


def _per_image(transform: InputTransform) -> bool:
    return bool(getattr(transform, "per_image", False))


def _apply(transform: InputTransform, x: torch.Tensor, view: torch.Tensor, point: torch.Tensor, member: int,
           draw: Any, image: torch.Tensor) -> torch.Tensor:
    """``transform.apply`` (with ``image=`` for a per-image transform), with a ModelsafeError naming the
    transform when it fails or returns other rows."""
    name = type(transform).__name__
    try:
        if _per_image(transform):
            out = transform.apply(x, view, point, member, draw, image=image)
        else:
            out = transform.apply(x, view, point, member, draw)
    except ModelsafeError:
        raise
    except TRANSFORM_ERRORS as err:
        raise ModelsafeError(f"input transform {name} failed on {tuple(x.shape)} rows: "
                             f"{type(err).__name__}: {err}") from err
    if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != x.shape[0]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelsafeError(f"input transform {name} must return {x.shape[0]} rows (one per input row), got {got}")
    return out
