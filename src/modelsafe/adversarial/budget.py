"""Attacks at an equal compute budget: a preset's sample counts (or, without any, its iteration count) scaled so
that it spends a given number of gradient evaluations per image.

The rule, the same for every attack (no attack gets hand-picked settings):

* an attack with sample counts (the estimator's ``samples``: depth-first sampling, variance tuning, PGN, GRA;
  SI's ``copies``; BSR's and SIA's ``copies``) keeps its T iterations and scales all of its counts by one
  common factor (each rounded, at least 1), the factor chosen so that the counted cost is the closest to the
  budget (ties: the cheaper one);
* an attack without sample counts (MI-FGSM, NI-FGSM, DI, TI, FGRM) runs ``budget / cost-per-iteration``
  iterations, rounded, with the step size eps/T unless one was given.

Costs are never entered by hand: each candidate is run once on one random image of the attacked shape through
a small linear stand-in model, and its gradient evaluations are counted by :mod:`modelsafe.adversarial.compute`
(the count does not depend on the model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from modelsafe.adversarial.attack import AttackSpec, TransferAttack
from modelsafe.adversarial.presets import PRESETS, preset_spec
from modelsafe.errors import ModelsafeError

SAMPLE_COUNTS = (("estimator", "samples"), ("scales", "copies"), ("diversity", "copies"))
"""(part, field) of the sample counts a budget scales."""


@dataclass(frozen=True)
class BudgetPlan:
    """``spec`` spends ``evaluations`` gradient evaluations per image (counted), the closest the rule gets to
    ``budget``; ``counts`` are its scaled sample counts ("part.field" -> value) and ``steps`` its T."""

    name: str
    budget: int
    spec: AttackSpec
    steps: int
    counts: dict[str, int]
    evaluations: float

    def describe(self) -> dict:
        return {"attack": self.name, "budget": self.budget, "steps": self.steps, "counts": dict(self.counts),
                "gradient_evaluations_per_image": self.evaluations}


def counted_evaluations(spec: AttackSpec, image_shape: tuple[int, ...]) -> float:
    """Gradient evaluations per image of one call of ``spec`` on one (C, H, W) image, counted."""
    features = math.prod(image_shape)
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, 2))
    generator = torch.Generator().manual_seed(0)
    attack = TransferAttack(model, spec, device="cpu")
    attack(torch.rand(1, *image_shape, generator=generator))
    return attack.last_compute.gradient_evaluations_per_image


def _counts(spec: AttackSpec) -> dict[str, int]:
    out = {}
    for part, field in SAMPLE_COUNTS:
        value = getattr(getattr(spec, part), field, None)
        if isinstance(value, int) and not isinstance(value, bool):
            out[f"{part}.{field}"] = value
    return out


def _with_counts(spec: AttackSpec, counts: dict[str, int]) -> AttackSpec:
    changes = {}
    for key, value in counts.items():
        part, field = key.split(".")
        changes[part] = replace(getattr(spec, part), **{field: value})
    return replace(spec, **changes)


def plan_budget(name: str, budget: int, image_shape: tuple[int, ...], *, eps: float = 16 / 255,
                steps: int | None = None, **overrides) -> BudgetPlan:
    """The preset ``name`` (with ``steps`` and ``overrides`` as :func:`create_attack` takes them) scaled to
    ``budget`` gradient evaluations per image on (C, H, W) images, by the rule of the module docstring. A
    budget below the cheapest setting the rule allows is an error naming the attack."""
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ModelsafeError(f"budget must be a positive integer (gradient evaluations per image), got {budget!r}")
    preset = PRESETS.get(name)
    if preset.steps == 1 and steps in (None, 1):
        raise ModelsafeError(f"{name!r} is a single-step attack: it has no form at another budget")
    base = preset_spec(preset, eps, steps, dict(overrides))
    counts = _counts(base)
    if not counts:
        return _scale_steps(name, budget, base, image_shape)
    primary = max(counts, key=counts.get)
    best = None
    for value in range(1, max(1, budget // base.steps) + 1):
        factor = value / counts[primary]
        scaled = {k: max(1, round(v * factor)) for k, v in counts.items()}
        spec = _with_counts(base, scaled)
        cost = counted_evaluations(spec, image_shape)
        if best is None and cost > budget:
            raise ModelsafeError(f"budget {budget} is below the cheapest {name!r} at T={base.steps} (every sample "
                                 f"count 1: {cost:g} gradient evaluations per image)")
        if best is None or abs(cost - budget) < abs(best[2] - budget):
            best = (spec, scaled, cost)
        if cost >= budget:
            break
    if best is None:
        raise ModelsafeError(f"budget {budget} is below one sample per iteration of {name!r} at T={base.steps}")
    spec, scaled, cost = best
    return BudgetPlan(name, budget, spec, spec.steps, scaled, cost)


def _scale_steps(name: str, budget: int, base: AttackSpec, image_shape: tuple[int, ...]) -> BudgetPlan:
    """An attack without sample counts: T = round(budget / cost of one iteration)."""
    per_step = counted_evaluations(replace(base, steps=1), image_shape)
    if budget < per_step:
        raise ModelsafeError(f"budget {budget} is smaller than one iteration of {name!r} ({per_step:g} gradient "
                             "evaluations per image)")
    spec = replace(base, steps=max(1, round(budget / per_step)))
    return BudgetPlan(name, budget, spec, spec.steps, {}, counted_evaluations(spec, image_shape))


def create_attack_at_budget(name: str, model: nn.Module, budget: int, image_shape: tuple[int, ...], *,
                            eps: float = 16 / 255, steps: int | None = None, seed: int = 0,
                            device: str | torch.device | None = None, **overrides) -> TransferAttack:
    """:func:`create_attack` of ``name`` on ``model``, scaled to ``budget`` gradient evaluations per image
    (:func:`plan_budget`); the plan is in ``attack.budget_plan``."""
    plan = plan_budget(name, budget, image_shape, eps=eps, steps=steps, **overrides)
    attack = TransferAttack(model, plan.spec, name=f"{name}@{budget}", seed=seed, device=device)
    attack.budget_plan = plan
    return attack
