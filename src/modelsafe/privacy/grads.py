"""Per-sample gradients of the cross-entropy loss with respect to chosen weights: in closed form for the output
layer, otherwise with ``torch.func`` (``vmap`` over ``grad`` of a ``functional_call``). Either way one batched
pass instead of one backward pass per sample."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from modelsafe.errors import ModelsafeError


def last_weight_names(model: nn.Module, count: int = 1) -> list[str]:
    """The last ``count`` weight tensors of ``model`` (names ending in ``weight`` with at least 2 dimensions,
    i.e. linear/conv/embedding weights, not norm layers), last one first. SafeCompress takes the last name
    containing "weight"; skipping 1-D norm weights is a deliberate departure so BN-final models still work."""
    names = [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]
    if not names:
        raise ModelsafeError("the target has no weight matrix (no parameter named '*weight' with >= 2 dims)")
    if count > len(names):
        raise ModelsafeError(f"asked for the gradients of the last {count} weight layers; the target has {len(names)}")
    return names[::-1][:count]


def grad_image_shape(shape: Sequence[int]) -> tuple[int, int]:
    """How a weight gradient is shown to the attack net: (out_features, rest) as a 1×H×W image."""
    return int(shape[0]), int(math.prod(shape[1:]))


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str], *,
                     method: str = "auto") -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-sample ∇_W CE(f(x_i), y_i) for each weight in ``names``, plus the per-sample loss and logits.

    ``x``: (N, ...) model inputs; ``y``: (N,) int64. Returns ``(grads, loss, logits)`` with ``grads[name]`` of
    shape (N, *W.shape), ``loss`` (N,), ``logits`` (N, C); nothing is differentiable. The model's current mode
    is used: call it in eval mode (batch norm with batch statistics is not per-sample).

    When ``names`` is the weight of the ``nn.Linear`` that produces the model's output (the default white-box
    feature), ``method="auto"`` uses the closed form ∇_W = (softmax(z_i) − e_{y_i}) a_iᵀ (a_i: the layer's
    input): one batched forward pass. Otherwise, or with ``method="vmap"``, ``torch.func.vmap`` over ``grad`` of
    a ``functional_call``."""
    if method not in ("auto", "vmap"):
        raise ModelsafeError(f"unknown per-sample gradient method {method!r}; valid: 'auto', 'vmap'")
    params = {n: p.detach() for n, p in model.named_parameters()}
    missing = [n for n in names if n not in params]
    if missing:
        raise ModelsafeError(f"the target has no parameter(s) {missing}")
    closed = _output_layer_grads(model, x, y, names) if method == "auto" else None
    if closed is not None:
        return closed
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    selected = {n: params.pop(n) for n in names}

    def sample_loss(chosen: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor):
        logits = functional_call(model, ({**params, **chosen}, buffers), (xi.unsqueeze(0),))
        loss = F.cross_entropy(logits, yi.unsqueeze(0))
        return loss, logits.squeeze(0)

    try:
        grads, (loss, logits) = vmap(grad_and_value(sample_loss, has_aux=True), in_dims=(None, 0, 0))(selected, x, y)
    except RuntimeError as exc:
        raise ModelsafeError(f"per-sample gradients failed under torch.func.vmap ({exc}); the target must be a "
                             "functional PyTorch module (no data-dependent Python control flow, no .item())") from None
    return grads, loss.detach(), logits.detach()


def _output_layer_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str]
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor] | None:
    """The closed form for the output layer's weight, or None where it does not apply: more than one name, a
    layer that is not exactly ``nn.Linear``, a layer called more or less than once, or an output that is not
    the layer's output unchanged (scaled logits, say)."""
    if len(names) != 1 or not names[0].endswith(".weight"):
        return None
    try:
        layer = model.get_submodule(names[0][:-len(".weight")])
    except AttributeError:
        return None
    if type(layer) is not nn.Linear:
        return None
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    if len(seen) != 1 or seen[0][1] is not logits or seen[0][0].dim() != 2 or logits.dim() != 2:
        return None
    inputs = seen[0][0]
    delta = torch.softmax(logits, dim=1)
    delta[torch.arange(len(y), device=y.device), y] -= 1.0
    grads = {names[0]: delta[:, :, None] * inputs[:, None, :]}
    return grads, F.cross_entropy(logits, y, reduction="none"), logits


def per_sample_grads_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str]
                          ) -> dict[str, torch.Tensor]:
    """Reference implementation: one forward and one ``autograd.grad`` per sample (slow; for tests and the
    speed benchmark). Same output layout as :func:`per_sample_grads`'s first element."""
    params = dict(model.named_parameters())
    chosen = [params[n] for n in names]
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        for n, g in zip(names, torch.autograd.grad(loss, chosen)):
            rows[n].append(g)
    return {n: torch.stack(v) for n, v in rows.items()}
