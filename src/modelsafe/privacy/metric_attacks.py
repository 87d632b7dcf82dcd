"""Threshold attacks on one per-sample signal of the target's output (Yeom et al. 2018; Song & Mittal 2021):
``correctness``, ``confidence``, ``entropy``, ``modified-entropy``, ``loss``.

The threshold is the one that maximises balanced accuracy on the attacker-known members vs non-members,
globally or per class (``per_class=True``). Per class, the score is the signal minus its class's threshold,
so that scores stay comparable across classes (AUC, TPR at FPR) and the decision threshold is 0. A class
without both known members and non-members, or without a separating threshold, uses the global one."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from modelsafe.errors import ModelsafeError
from modelsafe.privacy import signals
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.inputs import target_device, target_logits
from modelsafe.privacy.metrics import best_threshold

Signal = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SIGNALS: dict[str, tuple[Signal, str]] = {
    "correctness": (signals.correctness, "prediction is correct (Yeom et al.)"),
    "confidence": (signals.confidence, "probability of the true class (Song & Mittal)"),
    "entropy": (signals.negative_entropy, "low prediction entropy (Song & Mittal)"),
    "modified-entropy": (signals.negative_modified_entropy, "low modified entropy (Song & Mittal)"),
    "loss": (signals.negative_loss, "low cross-entropy loss (Yeom et al.)"),
}


class MetricAttack(MembershipAttack):
    """A threshold on ``signal`` (one of :data:`SIGNALS`). Cheap: one forward pass over each set."""

    def __init__(self, signal: str, *, per_class: bool = False, **common):
        super().__init__(**common)
        if signal not in SIGNALS:
            raise ModelsafeError(f"unknown signal {signal!r}; valid: {', '.join(SIGNALS)}")
        self.name = signal
        self.per_class = bool(per_class)
        self.class_thresholds_: torch.Tensor | None = None

    @property
    def label(self) -> str:
        return f"{self.name} (per-class)" if self.per_class else self.name

    def describe(self) -> dict:
        return {"name": self.name, "family": "metric", "per_class": self.per_class}

    def _signal(self, target: nn.Module, data, what: str) -> tuple[np.ndarray, np.ndarray]:
        logits = target_logits(target, data, what, batch_size=self.inference_batch_size,
                               device=target_device(target, self.device))
        self._check_classes(logits.shape[1])
        self.num_classes_ = logits.shape[1]
        return SIGNALS[self.name][0](logits, data.y).numpy(), data.y.numpy()

    def _fit(self, target: nn.Module, members, nonmembers) -> None:
        self.num_classes_ = None
        m, my = self._signal(target, members, "known_members")
        u, uy = self._signal(target, nonmembers, "known_nonmembers")
        scores = np.concatenate([m, u])
        labels = np.r_[np.ones(m.size), np.zeros(u.size)]
        global_t = best_threshold(scores, labels)
        if not self.per_class:
            self.threshold_ = global_t
            return
        classes = np.concatenate([my, uy])
        fallback = global_t if math.isfinite(global_t) else float(np.mean(scores))
        thresholds = np.full(self.num_classes_, fallback)
        for c in range(self.num_classes_):
            sel = classes == c
            if labels[sel].min(initial=1) == 0 and labels[sel].max(initial=0) == 1:
                t = best_threshold(scores[sel], labels[sel])
                if math.isfinite(t):
                    thresholds[c] = t
        self.class_thresholds_ = torch.from_numpy(thresholds)
        self.threshold_ = 0.0

    def _score(self, target: nn.Module, data) -> np.ndarray:
        s, y = self._signal(target, data, "data")
        if self.per_class:
            s = s - self.class_thresholds_.numpy()[y]
        return s
