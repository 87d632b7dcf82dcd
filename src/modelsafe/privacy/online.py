"""The base of the online reference-model attacks (``lira-online``, ``rmia-online``): reference models trained on
random halves of a population that holds every sample the attack fits on or scores, so that each sample has
IN models (trained on it) and OUT models (not); see :meth:`ReferenceModels.train_balanced`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.inputs import target_device, target_logits
from modelsafe.privacy.references import ModelFactory, ReferenceModels, Trainer

View = Callable[[torch.Tensor], torch.Tensor]


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) mirrored left-right."""
    return x.flip(-1)


def shifted(dy: int, dx: int) -> View:
    """Images moved by (dy, dx) pixels, the uncovered border filled with zeros."""

    def view(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        h, w = x.shape[-2:]
        out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out

    return view


SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
QUERIES = ("none", "flip", "flip-shift")


def query_views(queries: str, data) -> list[View]:
    """The query views of LiRA's augmentations: ``none`` (the sample alone), ``flip`` (and its mirror image) or
    ``flip-shift`` (both, each also moved by one pixel in the four directions: 10 views). Images only."""
    if queries == "none":
        return [identity]
    if data.x.dim() != 4:
        raise ModelsafeError(f"query augmentations {queries!r} need images (N, C, H, W), got samples of shape "
                             f"{tuple(data.x.shape)}; use queries='none'")
    flips = [identity, hflip]
    if queries == "flip":
        return flips
    return [_then(f, shifted(*d)) for f in flips for d in SHIFTS]


def _then(first: View, second: View) -> View:
    return lambda x: second(first(x))


class OnlineReferenceAttack(MembershipAttack):
    """``references``: :class:`ReferenceModels` whose population holds every sample the attack is fitted on or
    scores; :func:`modelsafe.privacy.audit` trains them with ``model_factory`` / ``trainer`` (``num_models``,
    even) when they are not given."""

    unsent_attributes: ClassVar[tuple[str, ...]] = ("references", "model_factory", "trainer")

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
                "reference_train_size": int(refs.in_masks[0].sum()) if refs is not None else None,
                "reference_seconds": refs.train_seconds if refs is not None else None}

    def online_logits(self, target: nn.Module, data, what: str,
                      views: Sequence[View] = (identity,)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The target's logits on every query view of ``data`` (V, N, C), every reference model's (V, k, N, C),
        and whether each model had each sample IN its training set (k, N) bool."""
        if self.references is None:
            raise ModelsafeError(f"{self.name} needs reference models trained on halves of a population that holds "
                                 "the scored samples: pass references= (ReferenceModels.train_balanced) or run it "
                                 "through modelsafe.privacy.audit with model_factory=")
        dev = target_device(target, self.device)
        inside = self.references.in_masks[:, self.references.columns(data, what)]
        logits, refs = [], []
        for view in views:
            shown = TensorData(view(data.x), data.y)
            logits.append(target_logits(target, shown, what, batch_size=self.inference_batch_size, device=dev))
            refs.append(self.references.logits(shown, what, self.inference_batch_size, dev))
        self._check_classes(logits[0].shape[1])
        self.num_classes_ = logits[0].shape[1]
        if refs[0].shape[2] != logits[0].shape[1]:
            raise ModelsafeError(f"reference models output {refs[0].shape[2]} classes, the target "
                                 f"{logits[0].shape[1]}")
        return torch.stack(logits), torch.stack(refs), inside

