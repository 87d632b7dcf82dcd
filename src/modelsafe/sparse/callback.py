"""Running a mask engine inside :func:`modelsafe.training.fit`.

``fit`` builds the optimizer itself, so the engine is built in ``on_fit_start`` from the model, the optimizer
and the run's total step count; its state rides along in fit's checkpoints, so a resumed run continues with
the same masks and schedule position:

    fit(model, data, epochs=10, callbacks=[SparsityCallback.dynamic(0.05, grow="gradient")])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from modelsafe import distributed
from modelsafe.errors import ModelsafeError
from modelsafe.sparse.engine import DynamicSparsity
from modelsafe.sparse.pruning import GradualPruning
from modelsafe.sparse.schedule import UpdateSchedule
from modelsafe.training import Callback, TrainState


class MaskEngine(Protocol):
    def step(self) -> object: ...
    def summary(self) -> dict: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


EngineFactory = Callable[[nn.Module, torch.optim.Optimizer, int], MaskEngine]


class SparsityCallback(Callback):
    """Builds ``factory(model, optimizer, total_steps)`` at the start of ``fit`` and steps it after every
    optimizer step. Adds ``density`` (and ``itop_rate`` for dynamic sparsity) to each epoch's log. The engine
    is available as ``.engine`` once fitting has started."""

    def __init__(self, factory: EngineFactory):
        self.factory = factory
        self.engine: MaskEngine | None = None

    @classmethod
    def dynamic(cls, density: float, *, update_interval: int | None = 100, drop_fraction: float = 0.5,
                final_drop_fraction: float = 0.005, drop_decay: str = "cosine", begin: float = 0.0,
                end: float = 0.75, **options) -> SparsityCallback:
        """Dynamic (or, with ``update_interval=None``, static) sparse training. The update schedule is placed on
        fit's total steps (:meth:`UpdateSchedule.for_training`: updates every ``update_interval`` steps from
        ``begin`` to ``end`` of training, replacing ``drop_fraction`` of each layer's weights, decayed by
        ``drop_decay`` to ``final_drop_fraction``); other options as :class:`DynamicSparsity`."""

        def build(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> DynamicSparsity:
            schedule = None if update_interval is None else UpdateSchedule.for_training(
                steps, interval=update_interval, end=end, begin=begin, initial=drop_fraction,
                final=final_drop_fraction, decay=drop_decay)
            return DynamicSparsity(model, opt, density, schedule=schedule, total_steps=steps,
                                   update_interval=update_interval, **options)

        return cls(build)

    @classmethod
    def gradual(cls, density: float, **options) -> SparsityCallback:
        """Gradual magnitude pruning; options as :class:`GradualPruning`."""
        return cls(lambda model, opt, steps: GradualPruning(model, opt, density, total_steps=steps, **options))

    def on_fit_start(self, state: TrainState) -> None:
        self.engine = self.factory(state.model, state.optimizer, state.total_steps)

    def after_optimizer_step(self, state: TrainState) -> None:
        updates = getattr(self.engine, "updates", None)
        self.engine.step()
        if state.averager is not None and getattr(self.engine, "updates", None) != updates:
            self._check_masks()

    def _check_masks(self) -> None:
        """Under ``torchrun``: every rank must hold the same masks (they follow from the same weights and the
        same averaged gradients); raise on every rank when they do not."""
        masks = getattr(self.engine, "masks", {})
        distributed.check_same({n: m.cpu().numpy().tobytes() for n, m in masks.items()}, "sparse masks")

    def on_epoch_end(self, state: TrainState) -> None:
        if state.averager is not None:
            self._check_masks()
        summary = self.engine.summary()
        state.logs["density"] = summary["density"]
        if "itop_rate" in summary:
            state.logs["itop_rate"] = summary["itop_rate"]

    def state_dict(self) -> dict:
        return {} if self.engine is None else self.engine.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.engine is None:
            raise ModelsafeError("the sparsity callback's state can only be restored once fit() has started")
        self.engine.load_state_dict(state)
