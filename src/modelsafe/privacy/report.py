"""The result of one membership-inference attack on one target: :class:`MIAReport`."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelsafe._checks import check_fraction, check_non_negative_int
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.metrics import (
    FPR_LEVELS,
    auc_from_groups,
    bootstrap_intervals,
    fpr_key,
    roc_curve,
    tpr_from_groups,
)
from modelsafe.storage.io import atomic_write, read_json, write_json


@dataclass
class MIAReport:
    """Scores of an attack on a balanced (or not) evaluation set of members and non-members, and what they give.

    - ``accuracy``: balanced accuracy at ``threshold``, which the attack chose on attacker-side data (never on
      the evaluation set); ``advantage`` = 2·accuracy − 1.
    - ``max_advantage``: max over thresholds of TPR − FPR on the evaluation set (an oracle threshold, so
      optimistic for the attacker).
    - ``auc``; ``tpr_at_fpr``: {level: TPR} for each FPR level (exact: the best TPR with FPR <= level). With
      ``n_nonmembers`` non-members, levels below 1/n_nonmembers coincide with 0.
    - ``intervals``: percentile-bootstrap intervals for ``"accuracy"``, ``"advantage"``, ``"auc"`` and
      ``"tpr@<level>"`` (empty without bootstrap).
    - ``scores``/``labels`` (N,): per-sample scores (higher = member) and membership (1 = member);
      ``sample_ids`` (N,) optional indices of the samples (e.g. into ``dataset.pool()``).
    - ``fpr``/``tpr``: the full ROC curve.
    """

    attack: str
    scores: np.ndarray
    labels: np.ndarray
    threshold: float
    accuracy: float
    advantage: float
    max_advantage: float
    auc: float
    tpr_at_fpr: dict[float, float]
    fpr: np.ndarray
    tpr: np.ndarray
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    confidence: float = 0.95
    seconds: float | None = None
    details: dict = field(default_factory=dict)
    sample_ids: np.ndarray | None = None

    @classmethod
    def from_scores(cls, attack: str, member_scores: np.ndarray, nonmember_scores: np.ndarray, threshold: float, *,
                    fpr_levels: Sequence[float] = FPR_LEVELS, n_bootstrap: int = 1000, confidence: float = 0.95,
                    seed: int = 0, seconds: float | None = None, details: dict | None = None,
                    sample_ids: np.ndarray | None = None) -> MIAReport:
        """Compute every figure from the two score vectors; ``n_bootstrap=0`` skips the intervals."""
        check_non_negative_int("n_bootstrap", n_bootstrap)
        check_fraction("confidence", confidence, closed_low=False, closed_high=False)
        for level in fpr_levels:
            check_fraction("fpr level", level)
        m = np.asarray(member_scores, dtype=np.float64).ravel()
        u = np.asarray(nonmember_scores, dtype=np.float64).ravel()
        if m.size == 0 or u.size == 0:
            raise ModelsafeError(f"need members and non-members to evaluate, got {m.size} and {u.size}")
        scores = np.concatenate([m, u])
        if not np.all(np.isfinite(scores)):
            raise ModelsafeError(f"attack {attack!r} produced {int((~np.isfinite(scores)).sum())} non-finite scores")
        labels = np.concatenate([np.ones(m.size, np.int8), np.zeros(u.size, np.int8)])
        fpr, tpr, _ = roc_curve(scores, labels)
        accuracy = 0.5 * (float(np.mean(m >= threshold)) + float(np.mean(u < threshold)))
        intervals = (bootstrap_intervals(m, u, fpr_levels, n_bootstrap, confidence, seed, threshold)
                     if n_bootstrap else {})
        if sample_ids is not None:
            sample_ids = np.asarray(sample_ids, dtype=np.int64).ravel()
            if sample_ids.size != scores.size:
                raise ModelsafeError(f"sample_ids has {sample_ids.size} entries for {scores.size} scores")
        return cls(attack=attack, scores=scores, labels=labels, threshold=float(threshold), accuracy=accuracy,
                   advantage=2.0 * accuracy - 1.0, max_advantage=float(np.max(tpr - fpr)),
                   auc=auc_from_groups(m, u), tpr_at_fpr={float(lv): tpr_from_groups(m, u, lv) for lv in fpr_levels},
                   fpr=fpr, tpr=tpr, intervals=intervals, confidence=confidence, seconds=seconds,
                   details=dict(details or {}), sample_ids=sample_ids)

    @property
    def n_members(self) -> int:
        return int(self.labels.sum())

    @property
    def n_nonmembers(self) -> int:
        return int(self.labels.size - self.labels.sum())

    def summary(self) -> dict:
        """The scalar figures (JSON-ready): attack, accuracy, advantage, max_advantage, auc, ``tpr@<level>``
        for each level, intervals, sizes, seconds and details."""
        out = {"attack": self.attack, "accuracy": self.accuracy, "advantage": self.advantage,
               "max_advantage": self.max_advantage, "auc": self.auc}
        out.update({fpr_key(lv): v for lv, v in self.tpr_at_fpr.items()})
        out.update({"threshold": self.threshold if math.isfinite(self.threshold) else str(self.threshold),
                    "n_members": self.n_members, "n_nonmembers": self.n_nonmembers,
                    "intervals": {k: list(v) for k, v in self.intervals.items()}, "confidence": self.confidence,
                    "seconds": self.seconds, "details": self.details})
        return out

    def save(self, directory: str | os.PathLike, stem: str | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.json`` (the summary) and ``<stem>.npz`` (scores, labels, sample ids, ROC), each
        atomically. ``stem`` defaults to the attack name made file-safe."""
        directory = Path(directory)
        stem = stem or file_stem(self.attack)
        arrays = {"scores": self.scores, "labels": self.labels, "fpr": self.fpr, "tpr": self.tpr}
        if self.sample_ids is not None:
            arrays["sample_ids"] = self.sample_ids

        def write_npz(tmp: str) -> None:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            Path(tmp).write_bytes(buf.getvalue())

        npz = atomic_write(directory / f"{stem}.npz", write_npz)
        summary = {**self.summary(), "tpr_at_fpr": {str(k): v for k, v in self.tpr_at_fpr.items()},
                   "scores_file": npz.name}
        return write_json(directory / f"{stem}.json", summary), npz

    @classmethod
    def load(cls, path: str | os.PathLike) -> MIAReport:
        """Read a report written by :meth:`save` (give the ``.json`` path)."""
        path = Path(path)
        if not path.is_file():
            raise ModelsafeError(f"report file {path} does not exist")
        try:
            summary = read_json(path)
            with np.load(path.with_name(summary["scores_file"]), allow_pickle=False) as arrays:
                data = {k: arrays[k] for k in arrays.files}
            return cls(attack=summary["attack"], scores=data["scores"], labels=data["labels"],
                       threshold=float(summary["threshold"]),
                       accuracy=summary["accuracy"], advantage=summary["advantage"],
                       max_advantage=summary["max_advantage"], auc=summary["auc"],
                       tpr_at_fpr={float(k): v for k, v in summary["tpr_at_fpr"].items()},
                       fpr=data["fpr"], tpr=data["tpr"],
                       intervals={k: tuple(v) for k, v in summary["intervals"].items()},
                       confidence=summary["confidence"], seconds=summary["seconds"], details=summary["details"],
                       sample_ids=data.get("sample_ids"))
        except (KeyError, ValueError, OSError) as exc:
            raise ModelsafeError(f"{path} is not a readable MIA report: {exc}") from None


def file_stem(name: str) -> str:
    """A file-safe version of an attack label: ``"loss (per-class)"`` → ``"loss-per-class"``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())
    return "-".join(part for part in safe.split("-") if part) or "attack"
