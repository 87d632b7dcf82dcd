"""Probing candidate sparse models: a short fine-tuning of a copy before it is scored.

Regrown weights start at zero, so candidates that prune alike compute the same function at the moment of a
mask update; a few steps of training show what each mask leads to. Every candidate of one update is probed
with the run's own optimizer (class, hyper-parameters, current learning rate and state, zeroed where the
candidate's mask is off) on the *same* batches in the same order, so two candidates with identical masks end
with identical weights: the differences the selection sees come from the masks alone (and from a
candidate's own probe defence term, when it has one). A kept probe (``keep_probe``) hands the chosen copy's
weights and optimizer state back to the live run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.utils import batch_layout, is_channels_last, make_generator


def probe_batches(data: TensorData, steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``steps`` index batches (``batch_size`` each, without replacement within a batch) drawn from ``seed``:
    the common batches of every candidate of one update."""
    gen = make_generator(seed)
    size = min(batch_size, len(data))
    return [torch.randperm(len(data), generator=gen)[:size] for _ in range(steps)]


def probe_optimizer(live: torch.optim.Optimizer, model: nn.Module,
                    masks: dict[str, torch.Tensor]) -> torch.optim.Optimizer:
    """An optimizer of ``live``'s class and settings over ``model``'s trainable parameters (``model`` is a
    copy of the live model, parameters in the same order), carrying ``live``'s state with every
    weight-shaped buffer (momentum, Adam moments) zeroed where ``masks`` are off."""
    params = [p for p in model.parameters() if p.requires_grad]
    defaults = {k: v for k, v in live.defaults.items() if k not in ("params", "differentiable", "foreach",
                                                                    "fused", "capturable")}
    opt = type(live)(params, **defaults)
    if sum(len(g["params"]) for g in live.param_groups) != len(params):
        raise ModelsafeError("the probe model's parameters do not match the live optimizer's")
    opt.load_state_dict(copy.deepcopy(live.state_dict()))  # a copy: probing must not touch the live state
    names = {id(p): n for n, p in model.named_parameters()}
    for p in params:
        mask = masks.get(names[id(p)])
        if mask is None:
            continue
        for value in opt.state.get(p, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                value.mul_(mask.to(value.device, value.dtype))
    return opt


DefenceTerm = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def probe(model: nn.Module, masks: dict[str, torch.Tensor], live: torch.optim.Optimizer, data: TensorData,
          batches: list[torch.Tensor], *, device: torch.device, label_smoothing: float = 0.0,
          autocast: bool = False, defence: DefenceTerm | None = None) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Fine-tune ``model`` (a candidate copy) in place on ``batches`` of ``data`` with a probe optimizer made
    from ``live``, re-applying ``masks`` (bool, by parameter name) after every step; returns the model in eval
    mode and the probe optimizer (whose state a kept probe hands back to the live run). ``autocast``: forward
    and loss under bfloat16 autocast, as the run's own steps. ``defence(model, inputs, labels, logits)``: a
    term added to each step's cross-entropy (a frozen attacker's weighted min-max term)."""
    params = dict(model.named_parameters())
    masks = {name: mask.to(params[name].device) for name, mask in masks.items()}
    opt = probe_optimizer(live, model, masks)
    nhwc = is_channels_last(model)
    model.train()
    for idx in batches:
        x, y = batch_layout(data.features(idx).to(device), nhwc), data.y[idx].to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if defence is not None:
            with torch.autocast(device.type, enabled=False):
                loss = loss + defence(model, x, y, logits.float())
        loss.backward()
        opt.step()
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
    return model.eval(), opt
