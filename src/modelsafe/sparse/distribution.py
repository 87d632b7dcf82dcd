"""How a global density is spread over layers: ``uniform``, ``er`` (Erdős–Rényi) and ``erk``
(Erdős–Rényi-Kernel), then turned into exact integer weight counts per layer.

ERK follows the RigL/ITOP code: layer ``l`` gets density ``eps * r_l`` with
``r_l = (sum(shape_l) / prod(shape_l)) ** power`` (kernel dimensions included); ER uses only the two channel
dimensions, ``r_l = ((n_in + n_out) / (n_in * n_out)) ** power``. ``eps`` is solved so the layers hold
``density`` of all their weights; while some layer would exceed density 1, the layers with the largest
``r_l`` are made dense and ``eps`` is solved again over the rest (the overflow loop of the reference code).

Departure from the official SafeCompress/ITOP code: that code samples each mask entry as Bernoulli(d_l), so
realised counts only match in expectation. Here every layer gets an exact count (largest-remainder
rounding, at least one weight per layer), and the counts sum to ``round(density * total)`` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from modelsafe._checks import check_choice, check_density, check_positive
from modelsafe.errors import ModelsafeError

DISTRIBUTIONS = ("erk", "er", "uniform")


def raw_score(shape: tuple[int, ...], method: str, power: float = 1.0) -> float:
    """The unnormalised ER/ERK density score of a weight of ``shape`` (out, in, *kernel)."""
    if method == "erk":
        return (sum(shape) / math.prod(shape)) ** power
    if len(shape) < 2:
        raise ModelsafeError(f"ER needs weights with at least 2 dimensions, got shape {shape}")
    n_out, n_in = shape[0], shape[1]
    return ((n_in + n_out) / (n_in * n_out)) ** power


def layer_densities(shapes: Mapping[str, tuple[int, ...]], density: float, method: str = "erk",
                    power: float = 1.0) -> dict[str, float]:
    """Per-layer densities in (0, 1] whose weighted mean (by parameter count) is ``density``."""
    check_density(density)
    check_choice("distribution", method, DISTRIBUTIONS)
    check_positive("erk_power", power)
    if not shapes:
        raise ModelsafeError("no layers to distribute a density over")
    if method == "uniform" or density == 1.0:
        return {name: float(density) for name in shapes}
    numel = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: raw_score(shape, method, power) for name, shape in shapes.items()}
    total = sum(numel.values())
    dense: set[str] = set()
    while True:
        sparse = [name for name in shapes if name not in dense]
        budget = density * total - sum(numel[name] for name in dense)
        eps = budget / sum(raw[name] * numel[name] for name in sparse)
        if max(eps * raw[name] for name in sparse) <= 1.0:
            break
        top = max(raw[name] for name in sparse)
        dense.update(name for name in sparse if raw[name] == top)
    return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}


def exact_counts(densities: Mapping[str, float], numels: Mapping[str, int], target: int) -> dict[str, int]:
    """Integer weight counts per layer, as close to ``density * numel`` as possible, that sum to ``target``
    exactly (largest-remainder rounding; every layer keeps at least one weight when ``target`` allows)."""
    names = list(densities)
    total = sum(numels[n] for n in names)
    if not len(names) <= target <= total:
        raise ModelsafeError(f"cannot keep {target} weights in {len(names)} layers holding {total} weights "
                             f"(need at least one weight per layer); raise the density")
    ideal = {n: min(densities[n], 1.0) * numels[n] for n in names}
    counts = {n: min(numels[n], max(1, math.floor(ideal[n]))) for n in names}

    def shortfall(n: str) -> float:  # how far below its ideal count a layer is; larger = grow first
        return ideal[n] - counts[n]

    while sum(counts.values()) < target:
        n = max((n for n in names if counts[n] < numels[n]), key=shortfall)
        counts[n] += 1
    while sum(counts.values()) > target:
        n = min((n for n in names if counts[n] > 1), key=shortfall)
        counts[n] -= 1
    return counts


def target_count(density: float, total: int) -> int:
    """The global number of weights kept: ``round(density * total)``, at least 1."""
    return max(1, round(check_density(density) * total))
