"""Keeping masks exact: :class:`MaskedWeights` holds one bool mask per sparse weight and makes sure inactive
positions are exactly zero in the weight, its gradient and every optimizer state tensor shaped like it.

Mechanism (both halves, so any optimizer and any gradient post-processing is covered):

* a gradient hook on each sparse weight zeroes inactive entries during ``backward`` (so gradient clipping and
  the optimizer never see them), after showing the dense gradient to an observer (RigL growth needs it);
* :meth:`enforce`, called after each ``optimizer.step()``, zero-fills inactive entries of the weight and of
  every floating optimizer-state tensor of the same shape (SGD ``momentum_buffer``, Adam/AdamW ``exp_avg``,
  ``exp_avg_sq``, ``max_exp_avg_sq``, RMSprop ``square_avg``...). With zero gradient and zero state, weight decay
  (coupled or decoupled) cannot revive an inactive weight either.

Inactive entries are filled with ``+0.0`` (not multiplied, which would leave ``-0.0``), so masked weights are
bit-identical zeros. Departure from the official SafeCompress/ITOP code, which multiplies only the weights
and the SGD momentum buffer after the step and leaves gradients and Adam moments dense.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

from modelsafe.errors import ModelsafeError
from modelsafe.sparse.layers import SparseLayer

GradObserver = Callable[[str, torch.Tensor], None]


def check_optimizer_holds(optimizer: torch.optim.Optimizer, layers: list[SparseLayer]) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ModelsafeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [layer.name for layer in layers if id(layer.param) not in held]
    if missing:
        raise ModelsafeError(f"the optimizer does not hold the model's parameter(s) {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''}; build it from this model's parameters")


class MaskedWeights:
    """Bool masks (same shape and device as each weight) kept exact on weights, gradients and optimizer state.
    ``observer(name, dense_grad)`` is called from the gradient hook before the gradient is masked."""

    def __init__(self, layers: list[SparseLayer], masks: Mapping[str, torch.Tensor],
                 optimizer: torch.optim.Optimizer, observer: GradObserver | None = None):
        check_optimizer_holds(optimizer, layers)
        self.layers = {layer.name: layer for layer in layers}
        self.optimizer = optimizer
        self.observer = observer
        self.seconds = 0.0  # wall time spent masking (hooks + enforce), for overhead reports
        self.masks: dict[str, torch.Tensor] = {}
        self._dead: dict[str, torch.Tensor] = {}
        self.set_masks(masks)
        self._hooks = [layer.param.register_hook(self._hook(layer.name)) for layer in layers]

    def _hook(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def mask_grad(grad: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            if self.observer is not None:
                self.observer(name, grad)
            out = grad.masked_fill(self._dead[name], 0.0)
            self.seconds += time.perf_counter() - start
            return out

        return mask_grad

    def validate(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Bool copies of ``masks`` on the weights' devices; names and shapes must match the layers."""
        if set(masks) != set(self.layers):
            missing, extra = sorted(set(self.layers) - set(masks)), sorted(set(masks) - set(self.layers))
            raise ModelsafeError(f"masks must cover exactly the sparse layers; missing {missing}, unexpected {extra}")
        out = {}
        for name, layer in self.layers.items():
            mask = torch.as_tensor(masks[name])
            if tuple(mask.shape) != layer.shape:
                raise ModelsafeError(f"mask for {name!r} has shape {tuple(mask.shape)}, the weight {layer.shape}")
            if mask.dtype != torch.bool:
                if not torch.all((mask == 0) | (mask == 1)):
                    raise ModelsafeError(f"mask for {name!r} must hold only 0/1 or booleans")
                mask = mask != 0
            out[name] = mask.to(layer.param.device).clone()
        return out

    def set_masks(self, masks: Mapping[str, torch.Tensor], survive: Mapping[str, torch.Tensor] | None = None) -> None:
        """Adopt new masks. Weights and optimizer state are kept only where ``survive`` (default: the new mask)
        is True and zeroed elsewhere, so newly active positions start at zero with fresh state."""
        masks = self.validate(masks)
        self.masks = masks
        self._dead = {name: ~mask for name, mask in masks.items()}
        self.enforce(None if survive is None else {name: ~keep for name, keep in survive.items()}, grads=True)

    @torch.no_grad()
    def enforce(self, zero: Mapping[str, torch.Tensor] | None = None, grads: bool = False) -> None:
        """Zero inactive positions (or the positions in ``zero``) of weights and optimizer state, and of the
        stored gradients with ``grads`` (the hook already masks them as they are computed)."""
        start = time.perf_counter()
        for name, layer in self.layers.items():
            dead = self._dead[name] if zero is None else zero[name]
            param = layer.param
            param.masked_fill_(dead, 0.0)
            if grads and param.grad is not None:
                param.grad.masked_fill_(dead, 0.0)
            for value in self.optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.is_floating_point():
                    value.masked_fill_(dead, 0.0)
        self.seconds += time.perf_counter() - start

    def remove_hooks(self) -> None:
        """Detach the gradient hooks (training is over, or the masks are handed to another engine)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    # -- counts ------------------------------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        """Active weights over all sparse layers."""
        return sum(int(mask.sum()) for mask in self.masks.values())

    @property
    def total(self) -> int:
        """All weights of the sparse layers."""
        return sum(layer.numel for layer in self.layers.values())

    def layer_counts(self) -> dict[str, int]:
        return {name: int(mask.sum()) for name, mask in self.masks.items()}

    def layer_densities(self) -> dict[str, float]:
        return {name: int(mask.sum()) / mask.numel() for name, mask in self.masks.items()}

    def param_counts(self, model: nn.Module) -> dict[str, int | float]:
        """``total``: every parameter of ``model``; ``active``: those not masked out; ``sparse_layers`` and
        ``sparse_active``: the same restricted to the sparse layers."""
        total = sum(p.numel() for p in model.parameters())
        masked_out = self.total - self.nnz
        return {"total": total, "active": total - masked_out, "sparse_layers": self.total,
                "sparse_active": self.nnz, "overall_density": (total - masked_out) / max(1, total)}

    def masks_cpu(self) -> dict[str, torch.Tensor]:
        return {name: mask.cpu().clone() for name, mask in self.masks.items()}
