"""Dynamic sparse training: :class:`DynamicSparsity`, a mask engine that drops into any training loop.

    sparsity = DynamicSparsity(model, optimizer, density=0.05, total_steps=epochs * len(loader))
    ...
    loss.backward(); optimizer.step(); sparsity.step()

At construction each sparse layer gets an exact number of active weights (``erk``/``er``/``uniform``
distribution) and inactive weights are zeroed. ``step()`` keeps the masks exact (see :mod:`.masks`) and, when
the :class:`UpdateSchedule` says so, replaces a fraction of each layer's active weights: prune ``k`` by one
rule, grow ``k`` by another, so every layer (and the whole model) keeps its count exactly. Grown weights start
at zero with zero optimizer state; a weight dropped and regrown in the same update restarts at zero too
(as in RigL). Layers that are fully dense are left alone.

For test-driven methods (SafeCompress) the update is open: :meth:`propose` computes candidate masks from
the live weights and gradients without changing anything, :meth:`apply` adopts one. Either pass a
``selector`` that picks among the candidates of ``strategies`` at each scheduled update, or pass
``auto_update=False`` and, after ``step()``, do ``if sparsity.update_due(): sparsity.apply(...)`` yourself.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from modelsafe._checks import check_choice, check_density, check_fraction
from modelsafe.errors import ModelsafeError
from modelsafe.sparse.distribution import exact_counts, layer_densities, target_count
from modelsafe.sparse.layers import ALL_PRUNABLE, LayerSelection, SparseLayer
from modelsafe.sparse.masks import MaskedWeights
from modelsafe.sparse.rules import GROW_RULES, PRUNE_RULES, LayerView, Strategy, pick
from modelsafe.sparse.schedule import UpdateSchedule
from modelsafe.sparse.stats import count_flops
from modelsafe.utils import derive_seed, make_generator

INITS = ("random", "magnitude")
STATE_FORMAT = 1


@dataclass
class Candidate:
    """A proposed mask update. ``masks``: bool per sparse layer (the masks after the update). ``reset``: bool
    per layer, positions dropped and regrown in this update (they restart at zero). ``removed``/``grown``:
    per-layer counts (equal by construction)."""

    strategy: Strategy
    step: int
    drop_fraction: float
    masks: dict[str, torch.Tensor]
    reset: dict[str, torch.Tensor]
    removed: dict[str, int] = field(default_factory=dict)
    grown: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        """Weights grown (= weights removed) over all layers."""
        return sum(self.grown.values())


Selector = Callable[[list[Candidate], "DynamicSparsity"], "Candidate | int"]


def initial_masks(layers: Sequence[SparseLayer], counts: Mapping[str, int], init: str, seed: int) -> dict:
    """Exactly ``counts[name]`` active positions per layer: uniformly at random (``random``) or the largest
    ``|w|`` of the current weights (``magnitude``, for one-shot pruning of a trained model)."""
    masks = {}
    for layer in layers:
        everything = torch.ones(layer.shape, dtype=torch.bool, device=layer.param.device)
        if init == "magnitude":
            scores = layer.param.detach().abs()
        else:
            gen = make_generator(derive_seed(seed, "init", layer.name))
            scores = torch.rand(layer.shape, generator=gen).to(layer.param.device)
        masks[layer.name] = pick(scores, everything, counts[layer.name], largest=True)
    return masks


class DynamicSparsity:
    """Sparse training with exact per-layer counts and scheduled prune/grow updates.

    Args:
        model: the network whose conv/linear weights are made sparse.
        optimizer: it must hold every sparse weight of ``model``.
        density: fraction of the sparse layers' weights kept, in (0, 1].
        schedule: when masks are updated and how many weights each update replaces (see
            :meth:`UpdateSchedule.for_training`); ``None``: RigL's schedule from the two shorthands below.
        total_steps: optimizer steps of the whole run (for the shorthand schedule).
        update_interval: steps between mask updates of the shorthand schedule (``None``: static masks).
        layers: which layers are sparse (:class:`LayerSelection`; default every conv/linear weight).
        distribution: ``erk`` (default), ``er`` or ``uniform`` per-layer densities.
        erk_power: exponent that scales the ERK densities.
        prune: the prune rule of the update (see :mod:`.rules`); default ``magnitude`` (RigL).
        grow: the grow rule; default ``gradient`` (RigL).
        strategies: the candidates proposed at each update (default: the one ``prune``/``grow``).
        selector: ``selector(candidates, engine) -> Candidate | index`` picks one of several candidates.
        auto_update: False leaves scheduled updates to the caller (``update_due()`` + ``propose``/``apply``).
        init: ``random`` initial positions, or ``magnitude`` (keep the largest current weights).
        track_momentum: keep a moving average of dense gradients for ``momentum`` growth (default: on when a
            strategy grows by momentum).
        momentum_beta: the moving average's decay.
        capture_gradients: keep the dense gradient of every backward pass, not just before updates, so
            gradient-based :meth:`propose` works at any step (costs a copy of the gradients).
        seed: initial positions and random growth.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, density: float, *,
                 schedule: UpdateSchedule | None = None, total_steps: int | None = None,
                 update_interval: int | None = 100, layers: LayerSelection = ALL_PRUNABLE,
                 distribution: str = "erk", erk_power: float = 1.0, prune: str = "magnitude", grow: str = "gradient",
                 strategies: Sequence[Strategy | tuple | str] | None = None, selector: Selector | None = None,
                 auto_update: bool = True, init: str = "random", track_momentum: bool | None = None,
                 momentum_beta: float = 0.9, capture_gradients: bool = False, seed: int = 0):
        self.density = check_density(density)
        check_choice("init", init, INITS)
        check_fraction("momentum_beta", momentum_beta, closed_high=False)
        if not isinstance(model, nn.Module):
            raise ModelsafeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.seed = int(seed)
        self.strategies = [Strategy.coerce(s) for s in (strategies or [Strategy(prune, grow)])]
        if selector is None and len(self.strategies) > 1 and auto_update:
            raise ModelsafeError("several strategies need a selector to choose among their candidates")
        self.selector = selector
        self.auto_update = auto_update
        self.schedule = schedule or self._default_schedule(total_steps, update_interval)
        layers = layers.select(model)
        self.target_densities = layer_densities({layer.name: layer.shape for layer in layers}, density,
                                                distribution, erk_power)
        total = sum(layer.numel for layer in layers)
        self.target_counts = exact_counts(self.target_densities, {layer.name: layer.numel for layer in layers},
                                          target_count(density, total))
        self.distribution = distribution
        self.momentum_beta = momentum_beta
        self.capture_gradients = capture_gradients
        self.track_momentum = (any("momentum" in s.needs for s in self.strategies)
                               if track_momentum is None else track_momentum)
        self.step_count = 0
        self.updates = 0
        self.history: list[dict] = []
        self.update_seconds = 0.0
        self._dense_grads: dict[str, torch.Tensor] = {}
        self._grad_step = -1  # step_count at which _dense_grads were captured
        self._in_trial = False
        self._grad_momentum: dict[str, torch.Tensor] = (
            {layer.name: torch.zeros_like(layer.param, memory_format=torch.contiguous_format) for layer in layers}
            if self.track_momentum else {})
        masks = initial_masks(layers, self.target_counts, init, self.seed)
        self.masked = MaskedWeights(layers, masks, optimizer, observer=self._observe_grad)
        self.fired = {name: mask.clone() for name, mask in self.masked.masks.items()}

    @staticmethod
    def _default_schedule(total_steps: int | None, interval: int | None) -> UpdateSchedule | None:
        """RigL's schedule (cosine 0.5 → 0.005 from the start to 75% of ``total_steps``) every ``interval``
        steps; None (static masks) without an interval."""
        if interval is None:
            return None
        if total_steps is None:
            raise ModelsafeError("total_steps is needed to place the mask-update schedule (its end defaults to "
                                 "75% of training); pass total_steps=, schedule=, or update_interval=None for "
                                 "static masks")
        return UpdateSchedule.for_training(total_steps, interval=interval)

    # -- the training-loop side ------------------------------------------------------------------------
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.masked.optimizer

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """The live bool masks by parameter name (do not modify them in place; use :meth:`apply`)."""
        return self.masked.masks

    @property
    def layer_names(self) -> list[str]:
        return list(self.masked.layers)

    def _capturing(self) -> bool:
        """Whether the backward pass of the coming step must keep dense gradients."""
        return self.capture_gradients or (self.schedule is not None and self.schedule.due(self.step_count + 1))

    def _observe_grad(self, name: str, grad: torch.Tensor) -> None:
        if self._in_trial:  # gradients of a trial evaluation are no training signal
            return
        if self.track_momentum:
            self._grad_momentum[name].mul_(self.momentum_beta).add_(grad, alpha=1.0 - self.momentum_beta)
        if self._capturing():
            if self._grad_step != self.step_count:
                self._dense_grads, self._grad_step = {}, self.step_count
            held = self._dense_grads.get(name)
            self._dense_grads[name] = grad.detach().clone() if held is None else held + grad

    def step(self) -> Candidate | None:
        """Call after every ``optimizer.step()``. Re-applies the masks and, at a scheduled update (with
        ``auto_update``), proposes, selects and applies a new mask. Returns the applied candidate or None."""
        self.masked.enforce()
        self.step_count += 1
        if self._grad_step < self.step_count - 1:
            self._dense_grads = {}  # older than the step just taken
        if not (self.auto_update and self.update_due()):
            return None
        candidates = self.propose()
        chosen = candidates[0] if self.selector is None else self.selector(candidates, self)
        if isinstance(chosen, int) and not isinstance(chosen, bool):
            if not 0 <= chosen < len(candidates):
                raise ModelsafeError(f"selector returned index {chosen} for {len(candidates)} candidates")
            chosen = candidates[chosen]
        if not isinstance(chosen, Candidate):
            raise ModelsafeError(f"selector must return a Candidate or an index, got {type(chosen).__name__}")
        self.apply(chosen)
        return chosen

    def update_due(self) -> bool:
        """True right after ``step()`` when the step just taken is a scheduled mask update."""
        return self.schedule is not None and self.schedule.due(self.step_count)

    def drop_fraction(self) -> float | None:
        """The schedule's drop fraction at the current step (None for static masks)."""
        return None if self.schedule is None else self.schedule.fraction(self.step_count)

    # -- candidates ----------------------------------------------------------------------------------------
    def _view(self, layer: SparseLayer, strategy: Strategy, signals: Mapping[str, Mapping] | None) -> LayerView:
        grads = self._dense_grads if self._grad_step == self.step_count - 1 or self.capture_gradients else {}
        extra = {key: per_layer[layer.name] for key, per_layer in (signals or {}).items() if layer.name in per_layer}
        return LayerView(layer.name, layer.param.detach(), self.masks[layer.name], grads.get(layer.name),
                         self._grad_momentum.get(layer.name), self.fired[layer.name],
                         make_generator(derive_seed(self.seed, "update", self.step_count, layer.name, strategy.seed)),
                         extra)

    @torch.no_grad()
    def propose(self, strategies: Sequence[Strategy | tuple | str] | None = None,
                signals: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> list[Candidate]:
        """One candidate mask per strategy (default: the engine's ``strategies``), computed from the current
        weights, dense gradients, gradient moving average and fired masks, plus any extra per-weight
        ``signals`` ({signal: {layer: tensor}}) that rules read. Nothing live changes: not the model, not the
        optimizer, not the masks. Per layer, ``k = ceil(f * active)`` weights are removed and ``k`` grown,
        ``f`` being the strategy's ``drop_fraction`` or else the schedule's."""
        chosen = [Strategy.coerce(s) for s in (strategies if strategies is not None else self.strategies)]
        if not chosen:
            raise ModelsafeError("propose() needs at least one strategy")
        return [self._propose_one(strategy, signals) for strategy in chosen]

    def _propose_one(self, strategy: Strategy, signals: Mapping[str, Mapping] | None = None) -> Candidate:
        fraction = strategy.drop_fraction if strategy.drop_fraction is not None else self.drop_fraction()
        if fraction is None:
            raise ModelsafeError("static masks have no drop-fraction schedule; give the strategy a drop_fraction")
        prune, grow = PRUNE_RULES.get(strategy.prune), GROW_RULES.get(strategy.grow).fn
        candidate = Candidate(strategy, self.step_count, fraction, {}, {})
        for layer in self.masked.layers.values():
            mask = self.masks[layer.name]
            active = int(mask.sum())
            k = min(active, math.ceil(fraction * active)) if active < mask.numel() else 0
            if k == 0:
                candidate.masks[layer.name] = mask.clone()
                candidate.reset[layer.name] = torch.zeros_like(mask)
                candidate.removed[layer.name] = candidate.grown[layer.name] = 0
                continue
            view = self._view(layer, strategy, signals)
            removed = _checked(prune(view, k), mask, k, f"prune rule {strategy.prune!r}", layer.name)
            kept = mask & ~removed
            grown = _checked(grow(view, ~kept, k), ~kept, k, f"grow rule {strategy.grow!r}", layer.name)
            candidate.masks[layer.name] = kept | grown
            candidate.reset[layer.name] = removed & grown
            candidate.removed[layer.name] = candidate.grown[layer.name] = k
        return candidate

    @torch.no_grad()
    def apply(self, candidate: Candidate | Mapping[str, torch.Tensor]) -> None:
        """Adopt a candidate (or a plain ``{param_name: bool mask}``): weights and optimizer state survive only
        where a weight was active before and after (and was not reset); everything else, including newly
        grown weights, is zero. Plain masks are not required to keep the counts."""
        start = time.perf_counter()
        if isinstance(candidate, Candidate):
            new, reset, record = candidate.masks, candidate.reset, candidate
        else:
            new, reset, record = self.masked.validate(candidate), None, None
        old = self.masks
        survive = {name: old[name] & new[name].to(old[name].device) for name in old}
        if reset is not None:
            survive = {name: keep & ~reset[name].to(keep.device) for name, keep in survive.items()}
        self.masked.set_masks(new, survive)
        for name, mask in self.masks.items():
            self.fired[name] |= mask
        self.updates += 1
        grown = record.changed if record else sum(int((self.masks[n] & ~old[n]).sum()) for n in old)
        self.history.append({"step": self.step_count, "strategy": record.strategy.describe() if record else "custom",
                             "drop_fraction": record.drop_fraction if record else None, "grown": grown,
                             "nnz": self.nnz})
        self.update_seconds += time.perf_counter() - start

    @contextmanager
    def trial(self, candidate: Candidate | Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
        """Temporarily give the live model a candidate's weights (for evaluation only), then restore the
        sparse weights bit for bit. The optimizer, masks and other parameters are not touched, and backward
        passes inside the block (e.g. a white-box attack) feed neither the captured gradients nor the
        gradient moving average."""
        masks = candidate.masks if isinstance(candidate, Candidate) else self.masked.validate(candidate)
        reset = candidate.reset if isinstance(candidate, Candidate) else None
        saved = {name: layer.param.detach().clone() for name, layer in self.masked.layers.items()}
        self._in_trial = True
        try:
            with torch.no_grad():
                for name, layer in self.masked.layers.items():
                    keep = self.masks[name] & masks[name]
                    if reset is not None:
                        keep &= ~reset[name]
                    layer.param.masked_fill_(~keep, 0.0)
            yield self.model
        finally:
            self._in_trial = False
            with torch.no_grad():
                for name, layer in self.masked.layers.items():
                    layer.param.copy_(saved[name])

    def candidate_model(self, candidate: Candidate | Mapping[str, torch.Tensor]) -> nn.Module:
        """A deep copy of the model carrying the candidate's weights (no hooks, no optimizer)."""
        with self.trial(candidate) as model:
            return copy.deepcopy(model)

    # -- reporting ----------------------------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        return self.masked.nnz

    @property
    def target_nnz(self) -> int:
        return sum(self.target_counts.values())

    def layer_densities(self) -> dict[str, float]:
        return self.masked.layer_densities()

    def itop_rate(self) -> float:
        """ITOP exploration rate: the share of sparse-layer weights that have ever been active."""
        return sum(int(f.sum()) for f in self.fired.values()) / self.masked.total

    def flops(self, example: torch.Tensor) -> dict:
        """Dense and sparse inference FLOPs per sample (see :func:`count_flops`)."""
        return count_flops(self.model, example, self.masks)

    def summary(self) -> dict:
        """Density, counts, ITOP rate, update count and time spent masking/updating (seconds)."""
        return {"density": self.nnz / self.masked.total, "target_density": self.density, "nnz": self.nnz,
                "target_nnz": self.target_nnz, "distribution": self.distribution,
                "layer_densities": self.layer_densities(), "itop_rate": self.itop_rate(), "updates": self.updates,
                "params": self.masked.param_counts(self.model),
                "seconds": {"masking": self.masked.seconds, "updates": self.update_seconds}}

    def remove(self) -> None:
        """Detach the gradient hooks; the weights keep their zeros."""
        self.masked.remove_hooks()

    # -- resume ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Masks, fired masks, gradient moving average, step and update counters, history; loadable with
        ``torch.load(weights_only=True)``."""
        return {"format": STATE_FORMAT, "step": self.step_count, "updates": self.updates,
                "masks": self.masked.masks_cpu(), "fired": {n: f.cpu().clone() for n, f in self.fired.items()},
                "grad_momentum": {n: m.cpu().clone() for n, m in self._grad_momentum.items()},
                "schedule": None if self.schedule is None else self.schedule.to_dict(),
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue a run: masks, schedule position and statistics come back exactly; weights and optimizer
        state (loaded separately) are re-masked."""
        if state.get("format") != STATE_FORMAT:
            raise ModelsafeError(f"unsupported sparsity state format {state.get('format')!r}")
        mine = None if self.schedule is None else self.schedule.to_dict()
        if state["schedule"] != mine:
            raise ModelsafeError(f"the saved sparsity state has schedule {state['schedule']}, this engine {mine}")
        self.masked.set_masks(state["masks"])
        self.fired = {n: f.to(self.masks[n].device).clone() for n, f in self.masked.validate(state["fired"]).items()}
        if self.track_momentum:
            if set(state["grad_momentum"]) != set(self._grad_momentum):
                raise ModelsafeError("the saved sparsity state has no gradient moving average to resume from")
            for name, value in state["grad_momentum"].items():
                self._grad_momentum[name].copy_(value)
        self.step_count, self.updates = int(state["step"]), int(state["updates"])
        self.history = [dict(h) for h in state["history"]]
        self._dense_grads, self._grad_step = {}, -1


def _checked(picked: torch.Tensor, allowed: torch.Tensor, k: int, rule: str, layer: str) -> torch.Tensor:
    """A rule's output must be a bool tensor selecting exactly ``k`` allowed positions."""
    if not isinstance(picked, torch.Tensor) or picked.dtype != torch.bool or picked.shape != allowed.shape:
        raise ModelsafeError(f"{rule} must return a bool tensor shaped like the weight of {layer!r}")
    if bool((picked & ~allowed).any()) or int(picked.sum()) != k:
        raise ModelsafeError(f"{rule} must select exactly {k} allowed positions in {layer!r}, "
                             f"got {int(picked.sum())} ({int((picked & ~allowed).sum())} not allowed)")
    return picked
