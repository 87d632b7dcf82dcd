"""DP-SGD (Abadi et al. 2016) through Opacus, dense or combined with sparse training (the ``dp`` extra).

The model is wrapped in Opacus's ``GradSampleModule`` and the optimizer in its ``DPOptimizer`` (per-sample
clipping to ``max_grad_norm``, Gaussian noise of std ``noise_multiplier · max_grad_norm``); the privacy spent
is tracked by an RDP accountant and reported as ε at ``delta``. With ``density < 1`` a sparse engine re-applies
its masks after every private step, so masked weights stay zero.

Departure: batches are drawn by shuffling (fixed size), as everywhere in modelsafe, not by Poisson sampling;
ε is computed as if each batch were a Poisson sample at rate ``batch_size / n``, the usual approximation (the
same one Opacus makes with ``poisson_sampling=False``).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from modelsafe._checks import check_fraction, check_non_negative, check_positive
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.training import Callback, TrainConfig, fit, make_optimizer
from modelsafe.utils import derive_seed, make_generator


@dataclass(frozen=True)
class DPConfig:
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5

    def __post_init__(self) -> None:
        check_non_negative("noise_multiplier", self.noise_multiplier)
        check_positive("max_grad_norm", self.max_grad_norm)
        check_fraction("delta", self.delta, closed_low=False, closed_high=False)

class _Accounting(Callback):
    """Carries the accountant's history through fit's checkpoints, so ε is right after a resume."""

    def __init__(self, accountant):
        self.accountant = accountant

    def state_dict(self) -> dict:
        return {"history": [list(h) for h in self.accountant.history]}

    def load_state_dict(self, state: dict) -> None:
        self.accountant.history = [tuple(h) for h in state["history"]]


def _opacus():
    try:
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.optimizers import DPOptimizer
        from opacus.validators import ModuleValidator
    except ImportError:
        raise ModelsafeError("DP-SGD needs opacus: pip install 'modelsafe[dp]'") from None
    return GradSampleModule, RDPAccountant, DPOptimizer, ModuleValidator


def fit_private(model: nn.Module, members: TensorData, train: TrainConfig, dp: DPConfig, *,
                callbacks: Sequence[Callback] = (), val_data: TensorData | None = None, seed: int = 0,
                device: str | torch.device | None = None, run_dir: str | os.PathLike | None = None,
                progress: bool = True) -> dict:
    """Train ``model`` with DP-SGD; ``callbacks`` (e.g. a sparsity callback) run as in :func:`fit`.
    Returns {"history", "epsilon", "delta", "seconds"}. The model's weights are trained in place."""
    GradSampleModule, RDPAccountant, DPOptimizer, ModuleValidator = _opacus()
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ModelsafeError(f"model is not compatible with DP-SGD (e.g. BatchNorm mixes samples): {errors[0]}")
    private = GradSampleModule(model)
    accountant = RDPAccountant()
    noise_gen = make_generator(derive_seed(seed, "dp-noise"))
    sample_rate = min(1.0, train.batch_size / len(members))

    def factory(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
        optimizer = DPOptimizer(make_optimizer(params, config), noise_multiplier=dp.noise_multiplier,
                                max_grad_norm=dp.max_grad_norm, expected_batch_size=config.batch_size,
                                generator=noise_gen)
        optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
        return optimizer

    start = time.perf_counter()
    with warnings.catch_warnings():
        # Opacus' hooks warn on every first layer, whose input needs no gradient; nothing is wrong
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with "
                                "respect to module outputs")
        history = fit(private, members, train, val_data=val_data, callbacks=[*callbacks, _Accounting(accountant)],
                      seed=seed, device=device, run_dir=run_dir, optimizer_factory=factory, progress=progress)
    private._close()  # remove Opacus hooks; ``model`` keeps the trained weights
    epsilon = accountant.get_epsilon(dp.delta) if dp.noise_multiplier > 0 else float("inf")
    return {"history": history, "epsilon": epsilon, "delta": dp.delta, "seconds": time.perf_counter() - start}

