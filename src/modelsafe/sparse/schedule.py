"""When masks change and by how much.

:class:`UpdateSchedule` is the dynamic-sparse-training schedule: a mask update every ``interval`` optimizer
steps strictly between ``begin`` and ``end``, dropping a fraction of each layer's active weights that
decays from ``initial`` to ``final`` over [begin, end] (``cosine``, ``linear`` or ``constant``).

With ``initial=0.5, final=0.005, begin=0, end=total_steps`` the cosine form is exactly the death-rate
schedule of the official ITOP/SafeCompress code (cosine annealing from 0.5 to ``eta_min=0.005`` over all
iterations). RigL's default stops updates at 75% of training, which is this module's default end point.

:func:`cubic_sparsity` is the gradual-magnitude-pruning schedule of Zhu & Gupta (2017).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from modelsafe._checks import check_choice, check_fraction, check_non_negative_int, check_positive_int
from modelsafe.errors import ModelsafeError

DECAYS = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class UpdateSchedule:
    """Mask updates at steps ``t`` (optimizer steps completed, 1-based) with ``t % interval == 0`` and
    ``begin < t < end``; ``fraction(t)`` is the share of each layer's active weights replaced at ``t``."""

    interval: int
    end: int
    begin: int = 0
    initial: float = 0.5
    final: float = 0.005
    decay: str = "cosine"

    def __post_init__(self) -> None:
        check_positive_int("update_interval", self.interval)
        check_non_negative_int("begin_step", self.begin)
        check_positive_int("end_step", self.end)
        if self.end <= self.begin:
            raise ModelsafeError(f"the update schedule must end after it begins (begin {self.begin}, "
                                 f"end {self.end})")
        check_fraction("drop_fraction", self.initial)
        check_fraction("final_drop_fraction", self.final)
        check_choice("drop_decay", self.decay, DECAYS)

    @classmethod
    def for_training(cls, total_steps: int, *, interval: int = 100, end: float = 0.75, begin: float = 0.0,
                     initial: float = 0.5, final: float = 0.005, decay: str = "cosine") -> UpdateSchedule:
        """A schedule whose ``begin``/``end`` are fractions of ``total_steps``."""
        check_positive_int("total_steps", total_steps)
        check_fraction("end", end, closed_low=False)
        check_fraction("begin", begin, closed_high=False)
        return cls(interval, max(1, round(end * total_steps)), round(begin * total_steps), initial, final, decay)

    def fraction(self, step: int) -> float:
        """The drop fraction at ``step`` (clamped to the schedule's ends)."""
        if self.decay == "constant":
            return self.initial
        progress = min(1.0, max(0.0, (step - self.begin) / (self.end - self.begin)))
        if self.decay == "linear":
            return self.initial + (self.final - self.initial) * progress
        return self.final + (self.initial - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def due(self, step: int) -> bool:
        return step % self.interval == 0 and self.begin < step < self.end

    def count(self) -> int:
        """How many updates the schedule makes."""
        return max(0, (self.end - 1) // self.interval - self.begin // self.interval)

    def to_dict(self) -> dict:
        return asdict(self)


def cubic_sparsity(step: int, final_sparsity: float, begin: int, end: int, initial_sparsity: float = 0.0) -> float:
    """Zhu & Gupta (2017): ``s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin)) ** 3``, held at
    ``s_i`` before ``begin`` and at ``s_f`` after ``end``."""
    progress = min(1.0, max(0.0, (step - begin) / max(1, end - begin)))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3
