"""Prune and grow rules, as plain functions in two registries, and :class:`Strategy` (one prune rule plus one
grow rule) to name a way of updating a mask.

A prune rule ``prune(layer, k) -> removed`` returns a bool tensor marking exactly ``k`` currently active
positions to drop. A grow rule ``grow(layer, candidates, k) -> grown`` returns a bool tensor marking exactly
``k`` of the ``candidates`` (positions inactive after the drop) to activate. The engine checks both contracts,
so custom rules added with :func:`register_prune_rule` / :func:`register_grow_rule` cannot break the counts.

Built-in rules:

* prune ``magnitude``: drop the ``k`` active weights of smallest ``|w|``.
* prune ``magnitude-gap`` (modelsafe's privacy-aware rule): among the ``2k`` smallest ``|w|``, drop the ``k``
  that sustain the member/non-member loss gap most (largest ``w·∂gap/∂w``); needs the ``gap_grad`` signal.
* prune ``set`` (SET, Mocanu et al. 2018): drop the smallest positive weights and the negative weights closest to
  zero, ``k`` split between the signs in proportion to their counts (zeros count as positive). The official
  sparse_learning/ITOP ``SET`` branch mis-indexes its negative half (it keeps one weight too few); not
  reproduced.
* grow ``gradient`` (RigL): the ``k`` inactive positions of largest dense ``|grad|``.
* grow ``gradient-smallest``: the ``k`` inactive positions of smallest dense ``|grad|``. This is what the
  official SafeCompress ``gradient_growth`` runs (it sorts ascending); kept as a named option only. The
  official index arithmetic can re-select already active positions when gradients tie at zero and then grows
  fewer than ``k``; here exactly ``k`` inactive positions grow.
* grow ``random`` (SET): ``k`` inactive positions uniformly at random. The official code activates each
  inactive position with probability ``k / #inactive`` (a Binomial count); here the count is exact.
* grow ``momentum`` (SNFS / RigL's SparseMomentumOptimizer): the ``k`` inactive positions of largest
  ``|EMA of the dense gradient|``. The official code reads the optimizer's momentum buffer, which it has just
  multiplied by the mask, so that signal is zero at every inactive position; modelsafe keeps its own moving
  average of dense gradients instead.
* grow ``random-unfired`` (ITOP): random positions that were never active first, then random other inactive ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from modelsafe._checks import check_fraction
from modelsafe.errors import ModelsafeError
from modelsafe.registry import Registry


@dataclass(frozen=True)
class LayerView:
    """What a rule sees of one layer. Tensors are the live ones: rules must not modify them.

    ``weight``: the weight (detached). ``mask``: bool, the active positions before the update. ``grad``: the
    dense gradient (inactive positions included) of the backward pass(es) before this update, or None when
    it was not captured. ``grad_momentum``: moving average of dense gradients, or None when not tracked.
    ``fired``: bool, every position that has ever been active. ``generator``: a CPU generator private to
    this (update, layer, strategy), for random choices. ``signals``: extra per-weight signals the caller of
    :meth:`~modelsafe.sparse.DynamicSparsity.propose` supplied, by name (e.g. ``"gap_grad"``)."""

    name: str
    weight: torch.Tensor
    mask: torch.Tensor
    grad: torch.Tensor | None
    grad_momentum: torch.Tensor | None
    fired: torch.Tensor
    generator: torch.Generator
    signals: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def need_signal(self, name: str, rule: str) -> torch.Tensor:
        if name not in self.signals:
            raise ModelsafeError(f"prune rule {rule!r} needs the signal {name!r} for layer {self.name!r}; pass it "
                                 f"to propose(..., signals={{{name!r}: {{layer: tensor}}}})")
        return self.signals[name]

    def need_grad(self, rule: str) -> torch.Tensor:
        if self.grad is None:
            raise ModelsafeError(
                f"grow rule {rule!r} needs the dense gradient of layer {self.name!r}, which is captured only for "
                "the backward pass before a scheduled update; call propose() at an update step (from the "
                "selector, or when update_due() is True after backward), or pass capture_gradients=True")
        return self.grad

    def random_scores(self) -> torch.Tensor:
        return torch.rand(self.weight.shape, generator=self.generator).to(self.weight.device)


PruneRule = Callable[[LayerView, int], torch.Tensor]
GrowRule = Callable[[LayerView, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class GrowEntry:
    fn: GrowRule
    needs: frozenset[str]  # signals the rule reads: "grad" and/or "momentum"


PRUNE_RULES: Registry[PruneRule] = Registry("prune rule")
GROW_RULES: Registry[GrowEntry] = Registry("grow rule")


def register_prune_rule(name: str) -> Callable[[PruneRule], PruneRule]:
    """Decorator adding ``fn(layer, k) -> removed`` to the prune registry under ``name`` (a name already
    registered is refused)."""
    return PRUNE_RULES.register(name)


def register_grow_rule(name: str, needs: tuple[str, ...] = ()) -> Callable[[GrowRule], GrowRule]:
    """Decorator adding ``fn(layer, candidates, k) -> grown`` to the grow registry (a name already registered
    is refused). ``needs`` lists the signals it reads (``"grad"``, ``"momentum"``) so the engine captures
    them."""
    unknown = set(needs) - {"grad", "momentum"}
    if unknown:
        raise ModelsafeError(f"unknown grow-rule signal(s) {sorted(unknown)}; valid: 'grad', 'momentum'")
    return GROW_RULES.register(name, wrap=lambda fn: GrowEntry(fn, frozenset(needs)))


def pick(scores: torch.Tensor, allowed: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """Bool tensor marking the ``k`` positions of ``allowed`` with the largest (or smallest) ``scores``."""
    chosen = torch.zeros(allowed.numel(), dtype=torch.bool, device=allowed.device)
    if k > 0:
        idx = allowed.flatten().nonzero().squeeze(1)
        if k > idx.numel():
            raise ModelsafeError(f"cannot pick {k} positions from {idx.numel()}")
        top = torch.topk(scores.flatten()[idx].float(), k, largest=largest, sorted=False).indices
        chosen[idx[top]] = True
    return chosen.view_as(allowed)


@register_prune_rule("magnitude")
def prune_magnitude(layer: LayerView, k: int) -> torch.Tensor:
    return pick(layer.weight.abs(), layer.mask, k, largest=False)


@register_prune_rule("set")
def prune_set(layer: LayerView, k: int) -> torch.Tensor:
    positive = layer.mask & (layer.weight >= 0)
    negative = layer.mask & (layer.weight < 0)
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    k_neg = min(n_neg, round(k * n_neg / max(1, n_pos + n_neg)))
    k_pos = k - k_neg
    if k_pos > n_pos:
        k_pos, k_neg = n_pos, k - n_pos
    return (pick(layer.weight, positive, k_pos, largest=False)
            | pick(layer.weight, negative, k_neg, largest=True))


@register_prune_rule("magnitude-gap")
def prune_magnitude_gap(layer: LayerView, k: int) -> torch.Tensor:
    """Privacy-aware magnitude pruning: among the ``2k`` active weights of smallest ``|w|``, drop the ``k``
    whose removal is estimated (first-order Taylor, ΔG ≈ −w·∂G/∂w) to shrink the member/non-member loss gap
    G most, i.e. the largest ``w·∂G/∂w``. Needs the signal ``gap_grad`` (∂G/∂w)."""
    small = pick(layer.weight.abs(), layer.mask, min(int(layer.mask.sum()), 2 * k), largest=False)
    contribution = layer.weight * layer.need_signal("gap_grad", "magnitude-gap")
    return pick(contribution, small, k, largest=True)


@register_grow_rule("gradient", needs=("grad",))
def grow_gradient(layer: LayerView, candidates: torch.Tensor, k: int) -> torch.Tensor:
    return pick(layer.need_grad("gradient").abs(), candidates, k, largest=True)


@register_grow_rule("gradient-smallest", needs=("grad",))
def grow_gradient_smallest(layer: LayerView, candidates: torch.Tensor, k: int) -> torch.Tensor:
    return pick(layer.need_grad("gradient-smallest").abs(), candidates, k, largest=False)


@register_grow_rule("random")
def grow_random(layer: LayerView, candidates: torch.Tensor, k: int) -> torch.Tensor:
    return pick(layer.random_scores(), candidates, k, largest=True)


@register_grow_rule("momentum", needs=("momentum",))
def grow_momentum(layer: LayerView, candidates: torch.Tensor, k: int) -> torch.Tensor:
    if layer.grad_momentum is None:
        raise ModelsafeError(f"grow rule 'momentum' needs the gradient moving average of layer {layer.name!r}; "
                             "create the engine with grow='momentum' or track_momentum=True")
    return pick(layer.grad_momentum.abs(), candidates, k, largest=True)


@register_grow_rule("random-unfired")
def grow_random_unfired(layer: LayerView, candidates: torch.Tensor, k: int) -> torch.Tensor:
    scores = layer.random_scores() + (~layer.fired).to(layer.weight.dtype) * 2.0  # never-active first
    return pick(scores, candidates, k, largest=True)


@dataclass(frozen=True)
class Strategy:
    """One way to update a mask: a prune rule, a grow rule, a ``seed`` varying random choices (two strategies
    that differ only in ``seed`` give different random candidates), and an optional ``drop_fraction``
    overriding the schedule's fraction for this candidate."""

    prune: str = "magnitude"
    grow: str = "gradient"
    seed: int = 0
    drop_fraction: float | None = None

    def __post_init__(self) -> None:
        PRUNE_RULES.get(self.prune)  # unknown rule names fail here
        GROW_RULES.get(self.grow)
        if self.drop_fraction is not None:
            check_fraction("drop_fraction", self.drop_fraction)

    @property
    def needs(self) -> frozenset[str]:
        return GROW_RULES.get(self.grow).needs

    @classmethod
    def coerce(cls, value: Strategy | tuple | str) -> Strategy:
        """Accept a Strategy, a tuple ``(prune, grow[, seed[, drop_fraction]])`` or a string ``"prune/grow"``."""
        if isinstance(value, Strategy):
            return value
        if isinstance(value, str):
            parts = value.split("/")
            if len(parts) != 2:
                raise ModelsafeError(f"a strategy string must look like 'magnitude/gradient', got {value!r}")
            return cls(*parts)
        if isinstance(value, tuple) and 2 <= len(value) <= 4:
            return cls(*value)
        raise ModelsafeError(f"a strategy must be a Strategy, a (prune, grow[, seed[, drop_fraction]]) tuple or "
                             f"a 'prune/grow' string, got {value!r}")

    def describe(self) -> str:
        text = f"{self.prune}/{self.grow}"
        if self.seed:
            text += f"#{self.seed}"
        return text if self.drop_fraction is None else f"{text}@{self.drop_fraction:g}"
