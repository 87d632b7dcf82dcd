"""``shadow``: Shokri et al.'s shadow-model attack (S&P 2017).

Shadow models (:class:`~modelsafe.privacy.references.ReferenceModels`) are trained on population data; each
one's own training samples are "in" and an equal number of its unseen population samples are "out". An attack
model learns in vs out from the shadows' (probabilities, ±1 label); it is then applied to the target's outputs.

``attack_model="global"``: one :class:`~modelsafe.privacy.nets.NasrAttackNet` for all classes (the label branch
tells classes apart). ``"per-class"``: one small MLP per class, as in the paper. The epoch is chosen on a
held-out part (``val_fraction``) of the shadow data; the decision threshold on the attacker-known members and
non-members of the target (they play no other role)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelsafe._checks import check_choice, check_fraction, check_positive, check_positive_int
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.inputs import target_device, target_logits
from modelsafe.privacy.metrics import auc_from_groups, best_threshold
from modelsafe.privacy.nets import NasrAttackNet, PerClassAttackNet, materialise, nasr_init
from modelsafe.privacy.nettrain import Features, cat, net_logits, split_features, to_device, train_epochs
from modelsafe.privacy.references import ModelFactory, ReferenceModels, Trainer, UsesReferenceModels
from modelsafe.privacy.signals import plus_minus_one
from modelsafe.utils import derive_seed, make_generator, model_device


class ShadowAttack(UsesReferenceModels, MembershipAttack):
    name = "shadow"

    def __init__(self, *, references: ReferenceModels | None = None, population=None,
                 model_factory: ModelFactory | None = None, trainer: Trainer | None = None, num_models: int = 4,
                 train_size: int | None = None, attack_model: str = "global", epochs: int = 100,
                 batch_size: int = 64, lr: float = 1e-3, val_fraction: float = 0.2, **common):
        super().__init__(**common)
        self._init_references(references, population, model_factory, trainer, num_models, train_size)
        self.attack_model = check_choice("attack_model", attack_model, ("global", "per-class"))
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.lr = check_positive("lr", lr)
        self.val_fraction = check_fraction("val_fraction", val_fraction, closed_low=False, closed_high=False)
        self.net: nn.Module | None = None

    @property
    def label(self) -> str:
        return self.name if self.attack_model == "global" else f"{self.name} (per-class)"

    def describe(self) -> dict:
        return {"name": self.name, "family": "shadow", "attack_model": self.attack_model,
                **self.reference_details(), "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}

    def _features(self, model: nn.Module, data, what: str) -> Features:
        logits = target_logits(model, data, what, batch_size=self.inference_batch_size,
                               device=target_device(model, self.device))
        return torch.softmax(logits, dim=1), plus_minus_one(data.y, logits.shape[1])

    def _fit(self, target: nn.Module, members, nonmembers) -> None:
        refs = self.reference_models()
        gen = make_generator(derive_seed(self.seed, self.name, "train"))
        shadow_in: Features | None = None
        shadow_out: Features | None = None
        for j, (model, mask) in enumerate(zip(refs.models, refs.in_masks)):
            inside, outside = mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)
            count = min(inside.numel(), outside.numel())
            inside = inside[torch.randperm(inside.numel(), generator=gen)[:count]]
            outside = outside[torch.randperm(outside.numel(), generator=gen)[:count]]
            fi = self._features(model, refs.population.subset(inside), f"shadow {j} members")
            fo = self._features(model, refs.population.subset(outside), f"shadow {j} non-members")
            shadow_in = fi if shadow_in is None else cat(shadow_in, fi)
            shadow_out = fo if shadow_out is None else cat(shadow_out, fo)
        num_classes = shadow_in[0].shape[1]
        dev = target_device(target, self.device)
        net = PerClassAttackNet(num_classes) if self.attack_model == "per-class" else NasrAttackNet(num_classes)
        self.net = materialise(net, nasr_init, gen, dev)
        (tm, vm), (tu, vu) = split_features(shadow_in, self.val_fraction, gen), split_features(shadow_out,
                                                                                               self.val_fraction, gen)
        vm, vu = to_device(vm, dev), to_device(vu, dev)
        train_epochs(self.net, torch.optim.Adam(self.net.parameters(), lr=self.lr), to_device(tm, dev),
                     to_device(tu, dev), epochs=self.epochs, batch_size=self.batch_size, gen=gen,
                     select=lambda n: auc_from_groups(net_logits(n, vm).numpy(), net_logits(n, vu).numpy()),
                     progress=self.progress, desc=self.name)
        self.num_classes_ = num_classes
        m, u = self._score(target, members), self._score(target, nonmembers)
        self.threshold_ = best_threshold(np.r_[m, u], np.r_[np.ones(m.size), np.zeros(u.size)])

    def _score(self, target: nn.Module, data) -> np.ndarray:
        feats = self._features(target, data, "data")
        self._check_classes(feats[0].shape[1])
        return net_logits(self.net, to_device(feats, model_device(self.net))).numpy()
