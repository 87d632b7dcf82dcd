"""Membership-inference auditing: attacks, metrics (AUC, TPR at low FPR, bootstrap intervals) and reports.

Every attack has ``fit(target, known_members, known_nonmembers)``, ``score(target, data)`` and
``evaluate(target, members, nonmembers) -> MIAReport``; create them by name with :func:`create_mia`.
:func:`audit` runs a list of attacks on a target and a membership split."""

from modelsafe.privacy.audit import audit, offline_reference_models
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.grads import last_weight_names, per_sample_grads, per_sample_grads_loop
from modelsafe.privacy.learned import BlackBoxNNAttack, LearnedAttack, WhiteBoxAttack
from modelsafe.privacy.lira import LiRAAttack
from modelsafe.privacy.metric_attacks import MetricAttack
from modelsafe.privacy.metrics import (
                                       FPR_LEVELS,
                                       balanced_accuracy,
                                       best_threshold,
                                       roc_auc,
                                       roc_curve,
                                       tpr_at_fpr,
)
from modelsafe.privacy.references import FitTrainer, ReferenceModels
from modelsafe.privacy.registry import create_mia, list_mias, mia_entry
from modelsafe.privacy.report import MIAReport
from modelsafe.privacy.rmia import RMIAAttack
from modelsafe.privacy.shadow import ShadowAttack

__all__ = ["FPR_LEVELS", "BlackBoxNNAttack", "FitTrainer", "LearnedAttack", "LiRAAttack", "MIAReport",
           "MembershipAttack", "MetricAttack", "RMIAAttack", "ReferenceModels", "ShadowAttack", "WhiteBoxAttack",
           "audit", "balanced_accuracy", "best_threshold", "create_mia", "last_weight_names", "list_mias",
           "mia_entry", "offline_reference_models", "per_sample_grads", "per_sample_grads_loop", "roc_auc",
           "roc_curve", "tpr_at_fpr"]
