"""The selection rule: which candidate sparse model survives a mask update.

SafeCompress keeps "the candidate that best balances task performance and attack resistance"; the papers'
exact formula is not published with their code, so modelsafe's default is documented as its own choice:

    objective = accuracy − weight · reduce_j(risk_j)

with ``accuracy`` on a validation split, ``risk_j`` each safety test's risk (the attack advantage for MIAs),
``reduce`` = ``max`` (the worst attack; MMIA's default), ``mean`` or ``sum``, and ``weight`` = 1. Ties go to the
higher accuracy, then to the earlier candidate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelsafe._checks import check_choice, check_non_negative
from modelsafe.errors import ModelsafeError

REDUCTIONS = ("max", "mean", "sum")


@dataclass(frozen=True)
class Objective:
    weight: float = 1.0
    reduce: str = "max"

    def __post_init__(self) -> None:
        check_non_negative("objective weight", self.weight)
        check_choice("objective reduce", self.reduce, REDUCTIONS)

    def risk(self, risks: Mapping[str, float]) -> float:
        values = list(risks.values())
        if not values:
            return 0.0
        if self.reduce == "max":
            return max(values)
        return sum(values) / len(values) if self.reduce == "mean" else sum(values)

    def __call__(self, accuracy: float, risks: Mapping[str, float]) -> float:
        return accuracy - self.weight * self.risk(risks)


def select(rows: Sequence[Mapping], objective: Objective) -> int:
    """Index of the best row; each row has ``accuracy`` and ``risks`` ({test: risk})."""
    if not rows:
        raise ModelsafeError("no candidates to select from")
    keyed = [(objective(r["accuracy"], r["risks"]), r["accuracy"], -i) for i, r in enumerate(rows)]
    return -max(keyed)[2]
