"""Inference FLOP counts of conv and linear layers, dense and with masks."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from modelsafe.sparse.layers import PRUNABLE_TYPES
from modelsafe.utils import eval_mode, model_device


@torch.no_grad()
def count_flops(model: nn.Module, example: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None) -> dict:
    """FLOPs for one sample (2 per multiply-accumulate) of every conv/linear weight, found by running
    ``example`` (a batch of inputs; only its first sample is used) through ``model`` in eval mode.

    Per layer: ``dense`` counts every weight; ``sparse`` counts the active weights (``masks``, keyed by
    parameter name; layers without a mask count their non-zero weights). Biases, normalisation and activations
    are not counted. Returns ``{"dense", "sparse", "ratio", "layers": {param_name: {"dense", "sparse"}}}``."""
    names = {id(p): n for n, p in model.named_parameters()}
    positions: dict[str, int] = {}

    def record(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        # output positions per sample at which each weight is used once
        per_channel = output.shape[1] if isinstance(module, nn.modules.conv._ConvNd) else output.shape[-1]
        positions[names[id(module.weight)]] = output[:1].numel() // per_channel

    hooks = [m.register_forward_hook(record) for m in model.modules()
             if isinstance(m, PRUNABLE_TYPES) and isinstance(getattr(m, "weight", None), nn.Parameter)]
    try:
        with eval_mode(model):
            model(example[:1].to(model_device(model)))
    finally:
        for hook in hooks:
            hook.remove()
    params = dict(model.named_parameters())
    layers = {}
    for name, uses in positions.items():
        weight = params[name]
        active = int(masks[name].sum()) if masks is not None and name in masks else int((weight != 0).sum())
        layers[name] = {"dense": 2 * weight.numel() * uses, "sparse": 2 * active * uses}
    dense = sum(v["dense"] for v in layers.values())
    sparse = sum(v["sparse"] for v in layers.values())
    return {"dense": dense, "sparse": sparse, "ratio": sparse / max(1, dense), "layers": layers}
