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

from modelsafe.errors import ModelsafeError
from modelsafe.sparse.engine import DynamicSparsity
from modelsafe.sparse.pruning import GradualPruning
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
    def dynamic(cls, density: float, **options) -> SparsityCallback:
        """Dynamic (or, with ``update_interval=None``, static) sparse training; options as :class:`DynamicSparsity`."""
        return cls(lambda model, opt, steps: DynamicSparsity(model, opt, density, total_steps=steps, **options))

    @classmethod
    def gradual(cls, density: float, **options) -> SparsityCallback:
        """Gradual magnitude pruning; options as :class:`GradualPruning`."""
        return cls(lambda model, opt, steps: GradualPruning(model, opt, density, total_steps=steps, **options))

    def on_fit_start(self, state: TrainState) -> None:
        self.engine = self.factory(state.model, state.optimizer, state.total_steps)

    def after_optimizer_step(self, state: TrainState) -> None:
        self.engine.step()

    def on_epoch_end(self, state: TrainState) -> None:
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
