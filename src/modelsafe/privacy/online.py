"""The base of the online reference-model attacks (``lira-online``, ``rmia-online``): reference models trained on
random halves of a population that holds every sample the attack fits on or scores, so that each sample has
IN models (trained on it) and OUT models (not); see :meth:`ReferenceModels.train_balanced`."""

from __future__ import annotations

import torch
from torch import nn

from modelsafe.errors import ModelsafeError
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.inputs import target_device, target_logits
from modelsafe.privacy.references import ModelFactory, ReferenceModels, Trainer


class OnlineReferenceAttack(MembershipAttack):
    """``references``: :class:`ReferenceModels` whose population holds every sample the attack is fitted on or
    scores; :func:`modelsafe.privacy.audit` trains them with ``model_factory`` / ``trainer`` (``num_models``,
    even) when they are not given."""

    def __init__(self, *, references: ReferenceModels | None = None, model_factory: ModelFactory | None = None,
                 trainer: Trainer | None = None, num_models: int = 16, **common):
        super().__init__(**common)
        if not isinstance(num_models, int) or num_models < 2 or num_models % 2:
            raise ModelsafeError(f"{self.name}: num_models must be an even integer >= 2 (IN and OUT halves), "
                                 f"got {num_models!r}")
        self.references = references
        self.model_factory, self.trainer, self.num_models = model_factory, trainer, num_models

    def reference_details(self) -> dict:
        refs = self.references
        return {"family": "online", "num_models": len(refs) if refs is not None else self.num_models,
                "reference_seconds": refs.train_seconds if refs is not None else None}

    def online_logits(self, target: nn.Module, data, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The target's logits (N, C), every reference model's (k, N, C), and whether each model had each sample
        IN its training set (k, N) bool."""
        if self.references is None:
            raise ModelsafeError(f"{self.name} needs reference models trained on halves of a population that holds "
                                 "the scored samples: pass references= (ReferenceModels.train_balanced) or run it "
                                 "through modelsafe.privacy.audit with model_factory=")
        dev = target_device(target, self.device)
        logits = target_logits(target, data, what, batch_size=self.inference_batch_size, device=dev)
        self._check_classes(logits.shape[1])
        self.num_classes_ = logits.shape[1]
        inside = self.references.in_masks[:, self.references.columns(data, what)]
        refs = self.references.logits(data, what, self.inference_batch_size, dev)
        if refs.shape[2] != logits.shape[1]:
            raise ModelsafeError(f"reference models output {refs.shape[2]} classes, the target {logits.shape[1]}")
        return logits, refs, inside
