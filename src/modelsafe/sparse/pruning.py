"""Gradual magnitude pruning (GMP, Zhu & Gupta 2017): training starts dense and each sparse layer is pruned by
weight magnitude every ``interval`` steps from ``begin`` to ``end`` along the cubic schedule
``s_t = s_f (1 - (1 - (t - begin) / (end - begin)) ** 3)``, reaching its exact final count at ``end``; pruned
weights never come back. Per-layer final densities follow ``distribution`` (Zhu & Gupta prune every layer to
the same sparsity: ``uniform``, the default). Same drop-in use as :class:`DynamicSparsity`: ``step()`` after
each optimizer step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from modelsafe._checks import check_density, check_fraction, check_positive_int
from modelsafe.errors import ModelsafeError
from modelsafe.sparse.distribution import exact_counts, layer_densities, target_count
from modelsafe.sparse.layers import PRUNABLE_TYPES, select_layers
from modelsafe.sparse.masks import MaskedWeights
from modelsafe.sparse.rules import pick
from modelsafe.sparse.schedule import cubic_sparsity
from modelsafe.sparse.stats import count_flops

STATE_FORMAT = 1


class GradualPruning:
    """GMP to ``density`` over ``total_steps`` optimizer steps; ``begin``/``end`` are fractions of training
    (defaults 0.1 and 0.75: prune from 10% to 75%, then train the final mask)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, density: float, *, total_steps: int,
                 begin: float = 0.1, end: float = 0.75, interval: int = 100, distribution: str = "uniform",
                 erk_power: float = 1.0, dense_first: bool = False, dense_layers: Sequence[str] = (),
                 layer_types: Sequence[type[nn.Module]] = PRUNABLE_TYPES):
        self.density = check_density(density)
        check_positive_int("total_steps", total_steps)
        check_positive_int("interval", interval)
        check_fraction("begin", begin, closed_high=False)
        check_fraction("end", end, closed_low=False)
        if end <= begin:
            raise ModelsafeError(f"pruning must end after it begins (begin {begin}, end {end})")
        self.model = model
        self.interval = interval
        self.begin = round(begin * total_steps)
        self.end = max(self.begin + 1, round(end * total_steps))
        layers = select_layers(model, layer_types=layer_types, dense_first=dense_first, dense_layers=dense_layers)
        numels = {layer.name: layer.numel for layer in layers}
        densities = layer_densities({layer.name: layer.shape for layer in layers}, density, distribution, erk_power)
        self.final_counts = exact_counts(densities, numels, target_count(density, sum(numels.values())))
        full = {layer.name: torch.ones(layer.shape, dtype=torch.bool, device=layer.param.device) for layer in layers}
        self.masked = MaskedWeights(layers, full, optimizer)
        self.step_count = 0
        self.prunings = 0

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return self.masked.masks

    @property
    def nnz(self) -> int:
        return self.masked.nnz

    def due(self, step: int) -> bool:
        return self.begin <= step <= self.end and (step % self.interval == 0 or step == self.end)

    def counts_at(self, step: int) -> dict[str, int]:
        """Per-layer active counts the schedule asks for at ``step`` (exactly the final counts from ``end``)."""
        counts = {}
        for name, layer in self.masked.layers.items():
            final, numel = self.final_counts[name], layer.numel
            if step >= self.end:
                counts[name] = final
                continue
            sparsity = cubic_sparsity(step, 1.0 - final / numel, self.begin, self.end)
            counts[name] = max(final, numel - round(sparsity * numel))
        return counts

    def step(self) -> None:
        """Call after every ``optimizer.step()``: re-applies the masks and prunes when the schedule says so."""
        self.masked.enforce()
        self.step_count += 1
        if not self.due(self.step_count):
            return
        new = {}
        for name, count in self.counts_at(self.step_count).items():
            mask = self.masks[name]
            k = int(mask.sum()) - count
            weight = self.masked.layers[name].param.detach()
            new[name] = mask & ~pick(weight.abs(), mask, k, largest=False) if k > 0 else mask
        self.masked.set_masks(new)
        self.prunings += 1

    def flops(self, example: torch.Tensor) -> dict:
        return count_flops(self.model, example, self.masks)

    def summary(self) -> dict:
        return {"density": self.nnz / self.masked.total, "target_density": self.density, "nnz": self.nnz,
                "target_nnz": sum(self.final_counts.values()), "layer_densities": self.masked.layer_densities(),
                "prunings": self.prunings, "params": self.masked.param_counts(self.model),
                "seconds": {"masking": self.masked.seconds}}

    def remove(self) -> None:
        self.masked.remove_hooks()

    def state_dict(self) -> dict:
        return {"format": STATE_FORMAT, "step": self.step_count, "prunings": self.prunings,
                "masks": self.masked.masks_cpu(), "begin": self.begin, "end": self.end, "interval": self.interval}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ModelsafeError(f"unsupported pruning state format {state.get('format')!r}")
        saved = (state["begin"], state["end"], state["interval"])
        if saved != (self.begin, self.end, self.interval):
            raise ModelsafeError(f"the saved pruning state has schedule (begin, end, interval) {saved}, "
                                 f"this one {(self.begin, self.end, self.interval)}")
        self.masked.set_masks(state["masks"])
        self.step_count, self.prunings = int(state["step"]), int(state["prunings"])
