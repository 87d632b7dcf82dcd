"""Learned attacks: an attack network trained on per-sample features of the target, directly against the target
on attacker-known members vs reference non-members (SafeCompress's threat model, Zhu et al. 2022).

- ``blackbox-nn`` (:class:`BlackBoxNNAttack`): the target's output vector and the ±1 label (Nasr et al. 2018,
  as SafeCompress builds it).
- ``whitebox`` (:class:`WhiteBoxAttack`): logits, per-sample loss, ±1 label and per-sample gradients of the last
  weight layer(s) (SafeCompress's WMIA), gradients from ``torch.func`` (vmap over grad).

Post-hoc use (``fit``): a fresh network is trained for ``epochs``, and the epoch is chosen on a validation
part (``val_fraction``) of the attacker-known data, whose scores also set the decision threshold. The official
code instead keeps the epoch with the best accuracy *on the evaluation set*; ``select_on="eval"`` reproduces
that for comparison with the papers (it needs the evaluation sets at fit time, uses threshold 0.5 on the
membership probability, and is optimistic for the attacker).

Online use (SafeCompress's min-max training, after Nasr et al. CCS 2018): ``build`` a fresh attacker, then alternate
``partial_fit`` (k attacker steps on known members vs reference non-members against the current target) with
the defender's loss ``CE + λ·defence_term(...)``, where ``defence_term`` = mean log h(features) is
differentiable with respect to the target's logits (the attack network's weights are frozen inside it).
"""

from __future__ import annotations

import contextlib
import copy
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modelsafe._checks import check_choice, check_fraction, check_positive, check_positive_int
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.grads import grad_image_shape, last_weight_names, per_sample_grads
from modelsafe.privacy.inputs import (
    Samples,
    as_samples,
    check_logits,
    check_num_classes,
    target_device,
    target_logits,
)
from modelsafe.privacy.metrics import auc_from_groups, best_threshold
from modelsafe.privacy.nets import (
    Initialiser,
    NasrAttackNet,
    SeededDropout,
    WhiteBoxAttackNet,
    materialise,
    nasr_init,
    whitebox_init,
)
from modelsafe.privacy.nettrain import Features, bce_step, net_logits, split_features, to_device, train_epochs
from modelsafe.privacy.signals import plus_minus_one
from modelsafe.utils import derive_seed, eval_mode, make_generator

SELECT_ON = ("validation", "eval")


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """``net`` in eval mode with its parameters excluded from autograd for the block (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with eval_mode(net):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class LearnedAttack(MembershipAttack):
    """Base of the attacks with an attack network (``self.net``, an ``nn.Module`` mapping :meth:`features` to
    (N,) membership logits; probability = sigmoid). Training: Adam(``lr``), BCE, member and non-member batches
    of ``batch_size`` each per step."""

    init: ClassVar[Initialiser]

    def __init__(self, *, epochs: int = 100, batch_size: int = 64, lr: float = 1e-3, val_fraction: float = 0.2,
                 select_on: str = "validation", **common):
        super().__init__(**common)
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.lr = check_positive("lr", lr)
        self.val_fraction = check_fraction("val_fraction", val_fraction, closed_low=False, closed_high=False)
        self.select_on = check_choice("select_on", select_on, SELECT_ON)
        self.net: nn.Module | None = None
        self.optimizer_: torch.optim.Optimizer | None = None
        self.history_: list[dict] = []
        self._eval_sets: tuple[TensorData, TensorData] | None = None
        self._gen: torch.Generator | None = None
        self.device_: torch.device | None = None

    # ------------------------------------------------------------------ what subclasses provide
    @abstractmethod
    def _new_net(self, target: nn.Module, num_classes: int) -> nn.Module:
        """A fresh (uninitialised) attack network for a target with ``num_classes`` outputs."""

    @abstractmethod
    def features(self, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 logits: torch.Tensor | None = None) -> Features:
        """Per-sample attack features of ``target`` on inputs ``x`` (N, ...) with labels ``y`` (N,), on the
        target's device; the first feature is always the (N, C) output vector. Without ``logits`` the target is
        run in eval mode without gradient; with ``logits`` (the target's output on ``x``, e.g. from a training
        forward pass) the features are differentiable with respect to them."""

    # ------------------------------------------------------------------ description
    def _variants(self) -> list[str]:
        return ["select_on=eval"] if self.select_on == "eval" else []

    @property
    def label(self) -> str:
        variants = self._variants()
        return f"{self.name} ({', '.join(variants)})" if variants else self.name

    def describe(self) -> dict:
        best = max(self.history_, key=lambda r: r.get("select", -np.inf)) if self.history_ else None
        return {"name": self.name, "family": "learned", "epochs": self.epochs, "batch_size": self.batch_size,
                "lr": self.lr, "select_on": self.select_on, "val_fraction": self.val_fraction,
                "best_epoch": best["epoch"] if best and "select" in best else None}

    # ------------------------------------------------------------------ post-hoc
    def fit(self, target: nn.Module, known_members: Samples, known_nonmembers: Samples, *,
            eval_members: Samples | None = None, eval_nonmembers: Samples | None = None) -> LearnedAttack:
        """Train a fresh attack network (see the module docstring). ``eval_members``/``eval_nonmembers`` are
        needed, and only used, with ``select_on="eval"``."""
        if self.select_on == "eval":
            if eval_members is None or eval_nonmembers is None:
                raise ModelsafeError("select_on='eval' picks the epoch on the evaluation sets: pass eval_members= "
                                     "and eval_nonmembers= to fit()")
            self._eval_sets = (as_samples(eval_members, "eval_members"), as_samples(eval_nonmembers, "eval_nonmembers"))
        try:
            super().fit(target, known_members, known_nonmembers)
        finally:
            self._eval_sets = None
        return self

    def _fit(self, target: nn.Module, members: TensorData, nonmembers: TensorData) -> None:
        self.num_classes_ = None
        fm = self._cached_features(target, members, "known_members")
        fu = self._cached_features(target, nonmembers, "known_nonmembers")
        self.build(target, fm[0].shape[1])
        dev = self.device_
        if self.select_on == "validation":
            (tm, vm), (tu, vu) = split_features(fm, self.val_fraction, self._gen), split_features(fu, self.val_fraction,
                                                                                                   self._gen)
            vm, vu = to_device(vm, dev), to_device(vu, dev)

            def select(net: nn.Module) -> float:
                return auc_from_groups(net_logits(net, vm).numpy(), net_logits(net, vu).numpy())
        else:
            tm, tu = fm, fu
            em = to_device(self._cached_features(target, self._eval_sets[0], "eval_members"), dev)
            eu = to_device(self._cached_features(target, self._eval_sets[1], "eval_nonmembers"), dev)

            def select(net: nn.Module) -> float:
                return 0.5 * (float((net_logits(net, em) >= 0).double().mean())
                              + float((net_logits(net, eu) < 0).double().mean()))
        self.history_ = train_epochs(self.net, self.optimizer_, to_device(tm, dev), to_device(tu, dev),
                                     epochs=self.epochs, batch_size=self.batch_size, gen=self._gen, select=select,
                                     progress=self.progress, desc=self.name)
        if self.select_on == "validation":
            m, u = net_logits(self.net, vm).numpy(), net_logits(self.net, vu).numpy()
            self.threshold_ = best_threshold(np.r_[m, u], np.r_[np.ones(m.size), np.zeros(u.size)])
        else:
            self.threshold_ = 0.0

    def _cached_features(self, target: nn.Module, data: TensorData, what: str) -> Features:
        """Features of every sample of ``data`` (no gradient), on the CPU."""
        dev = target_device(target, self.device)
        num_classes = target_logits(target, data.subset([0]), what, device=dev).shape[1]
        check_num_classes(data, num_classes, what)
        self._check_classes(num_classes)
        chunks: list[Features] = []
        with torch.no_grad():
            for x, y in data.batches(self.inference_batch_size, device=dev):
                chunks.append(tuple(f.detach().cpu() for f in self.features(target, x, y)))
        return tuple(torch.cat(parts) for parts in zip(*chunks))

    def _score(self, target: nn.Module, data: TensorData) -> np.ndarray:
        feats = self._cached_features(target, data, "data")
        return net_logits(self.net, to_device(feats, self.device_)).numpy()

    # ------------------------------------------------------------------ online (SafeCompress min-max)
    def build(self, target: nn.Module, num_classes: int) -> LearnedAttack:
        """A fresh, untrained attack network and Adam optimizer for a target with ``num_classes`` outputs, on
        the target's device (or ``device``). Decision threshold: membership probability 0.5."""
        check_positive_int("num_classes", num_classes)
        self.device_ = target_device(target, self.device)
        self._gen = make_generator(derive_seed(self.seed, self.name, "train"))
        self.net = materialise(self._new_net(target, num_classes), type(self).init, self._gen, self.device_)
        self.optimizer_ = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.num_classes_ = num_classes
        self.threshold_ = 0.0
        self.history_ = []
        return self

    def _check_built(self) -> None:
        if self.net is None:
            raise ModelsafeError(f"attack {self.label!r} has no network yet; call build(target, num_classes) or fit()")

    def membership_logits(self, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          logits: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) membership logits (sigmoid = membership probability h) of the current attack network, in its
        current mode; differentiable with respect to ``logits`` when given and to the network's weights."""
        self._check_built()
        return self.net(*self.features(target, x, y, logits))

    def defence_term(self, target: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """mean_i log h(features_i): the defender adds ``λ ·`` this to its cross-entropy (Nasr et al.'s min-max
        objective CE − λ·BCE(h, 1) as in Nasr et al. 2018). Gradient flows to ``logits`` only; the attack network
        is frozen and in eval mode for the call."""
        self._check_built()
        with frozen(self.net):
            return F.logsigmoid(self.membership_logits(target, x, y, logits)).mean()

    def partial_fit(self, target: nn.Module, members: Samples, nonmembers: Samples, steps: int = 1) -> float:
        """Train the attack network for ``steps`` Adam steps against the current ``target`` (in eval mode for the
        call), each on ``batch_size`` random members and ``batch_size`` random non-members; returns the mean
        BCE. The sets must be disjoint (not re-checked here, for speed)."""
        self._check_built()
        check_positive_int("steps", steps)
        m, u = as_samples(members, "members"), as_samples(nonmembers, "nonmembers")
        check_num_classes(m, self.num_classes_, "members")
        check_num_classes(u, self.num_classes_, "nonmembers")
        losses = []
        with eval_mode(target):
            for _ in range(steps):
                batch = []
                for data in (m, u):
                    idx = torch.randperm(len(data), generator=self._gen)[:self.batch_size]
                    with torch.no_grad():
                        batch.append(self.features(target, data.features(idx).to(self.device_),
                                                   data.y[idx].to(self.device_)))
                losses.append(bce_step(self.net, self.optimizer_, *batch))
        self.net.eval()
        return float(np.mean(losses))

    def state_dict(self) -> dict:
        """Network, optimizer, RNG and threshold state (for resuming a min-max run); a copy, not live tensors."""
        self._check_built()
        dropout = next((m.generator for m in self.net.modules() if isinstance(m, SeededDropout)), None)
        return copy.deepcopy({
            "net": self.net.state_dict(), "optimizer": self.optimizer_.state_dict(),
            "generator": self._gen.get_state(), "threshold": self.threshold_, "num_classes": self.num_classes_,
            "dropout_generator": dropout.get_state() if dropout is not None else None})

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` into an attack built for the same target (``build`` first)."""
        self._check_built()
        if state["num_classes"] != self.num_classes_:
            raise ModelsafeError(f"attack state is for {state['num_classes']} classes, this attack has "
                                 f"{self.num_classes_}")
        self.net.load_state_dict(state["net"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self._gen.set_state(state["generator"])
        self.threshold_ = state["threshold"]
        if state["dropout_generator"] is not None:
            for m in self.net.modules():
                if isinstance(m, SeededDropout):
                    m.generator.set_state(state["dropout_generator"])
                    break


def _output(target: nn.Module, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
    if logits is None:
        with torch.no_grad(), eval_mode(target):
            logits = target(x)
    return check_logits(logits.float(), "target output")


class BlackBoxNNAttack(LearnedAttack):
    """``blackbox-nn``: :class:`~modelsafe.privacy.nets.NasrAttackNet` on the target's output and the ±1 label.

    ``prediction="probabilities"`` (softmax, Nasr et al.; default) or ``"logits"`` (what the SafeCompress code
    actually feeds). Features: (prediction (N, C), label (N, C))."""

    name = "blackbox-nn"
    init = staticmethod(nasr_init)

    def __init__(self, *, prediction: str = "probabilities", **options):
        super().__init__(**options)
        self.prediction = check_choice("prediction", prediction, ("probabilities", "logits"))

    def _variants(self) -> list[str]:
        return (["logits"] if self.prediction == "logits" else []) + super()._variants()

    def describe(self) -> dict:
        return {**super().describe(), "prediction": self.prediction}

    def _new_net(self, target: nn.Module, num_classes: int) -> nn.Module:
        return NasrAttackNet(num_classes)

    def features(self, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 logits: torch.Tensor | None = None) -> Features:
        out = _output(target, x, logits)
        pred = torch.softmax(out, dim=1) if self.prediction == "probabilities" else out
        return pred, plus_minus_one(y, out.shape[1])


class WhiteBoxAttack(LearnedAttack):
    """``whitebox``: :class:`~modelsafe.privacy.nets.WhiteBoxAttackNet` on (logits (N, C), loss (N, 1), ±1 label
    (N, C), then one (N, 1, H, W) gradient image per chosen weight).

    ``layers``: how many of the last weight layers to take gradients of (default 1, as in SafeCompress), or a
    list of parameter names. Gradients are per-sample ∇_W CE computed in eval mode with ``torch.func``; they are
    never differentiated through. With ``logits`` given (online use), the logits and loss features come from
    them (differentiable; the official code detaches the loss too), the gradients from an eval-mode pass."""

    name = "whitebox"
    init = staticmethod(whitebox_init)

    def __init__(self, *, layers: int | Sequence[str] = 1, dropout: float = 0.2, max_grad_features: int = 16384,
                 **options):
        super().__init__(**options)
        if isinstance(layers, int):
            check_positive_int("layers", layers)
        elif not layers or not all(isinstance(n, str) for n in layers):
            raise ModelsafeError(f"layers must be a positive int or a list of parameter names, got {layers!r}")
        self.layers = layers if isinstance(layers, int) else list(layers)
        self.dropout = check_fraction("dropout", dropout, closed_high=False)
        self.max_grad_features = check_positive_int("max_grad_features", max_grad_features)

    def _variants(self) -> list[str]:
        layers = [] if self.layers == 1 else [
            f"{self.layers} layers" if isinstance(self.layers, int) else ", ".join(self.layers)]
        return layers + super()._variants()

    def describe(self) -> dict:
        return {**super().describe(), "layers": self.layers, "dropout": self.dropout}

    def grad_names(self, target: nn.Module) -> list[str]:
        """The parameters whose per-sample gradients are features, in feature order."""
        if isinstance(self.layers, int):
            return last_weight_names(target, self.layers)
        params = dict(target.named_parameters())
        missing = [n for n in self.layers if n not in params]
        if missing:
            raise ModelsafeError(f"the target has no parameter(s) {missing}")
        return list(self.layers)

    def _new_net(self, target: nn.Module, num_classes: int) -> nn.Module:
        params = dict(target.named_parameters())
        shapes = [grad_image_shape(params[n].shape) for n in self.grad_names(target)]
        return WhiteBoxAttackNet(num_classes, shapes, self.dropout, self.max_grad_features)

    def features(self, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 logits: torch.Tensor | None = None) -> Features:
        names = self.grad_names(target)
        with eval_mode(target):
            grads, loss, eval_logits = per_sample_grads(target, x, y, names)
        if logits is None:
            out = check_logits(eval_logits.float(), "target output")
            loss = loss.float()
        else:
            out = check_logits(logits.float(), "target output")
            loss = F.cross_entropy(out, y, reduction="none")
        images = [grads[n].reshape(x.shape[0], 1, *grad_image_shape(grads[n].shape[1:])).float() for n in names]
        return (out, loss[:, None], plus_minus_one(y, out.shape[1]), *images)
