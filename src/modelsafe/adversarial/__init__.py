"""Transfer attacks built by composition (S-FGRM and its family), ensembles and transfer-success matrices.

Quick start::

    from modelsafe.adversarial import create_attack, transfer_matrix
    attack = create_attack("smi-fgrm", surrogate, eps=16/255)
    adv = attack(images)                       # labels: the surrogate's clean prediction
    result = transfer_matrix(["mi-fgsm", "smi-fgrm"], {"cnn": surrogate}, {"mlp": target}, (x, y))
    print(transfer_table(result))              # from modelsafe.report
"""

from modelsafe.adversarial.attack import AttackSpec, TransferAttack, quantize_in_ball
from modelsafe.adversarial.blocks import BlockShuffleRotation, StructureInvariance, rotate
from modelsafe.adversarial.budget import BudgetPlan, create_attack_at_budget, plan_budget
from modelsafe.adversarial.compute import ComputeCount
from modelsafe.adversarial.directions import RescaleStep, SignStep, rescale_official, rescale_paper
from modelsafe.adversarial.ensemble import Ensemble, Resized, SingleModel
from modelsafe.adversarial.estimators import (
    DepthFirstSampling,
    GradientRelevance,
    MaximinExpectedFlatness,
    PenalizedGradientNorm,
    PlainGradient,
    VarianceTuning,
    depth_first_walk,
)
from modelsafe.adversarial.matrix import TransferMatrix, transfer_matrix
from modelsafe.adversarial.parts import (
    GradFn,
    GradientEstimator,
    GradientTransform,
    InputTransform,
    ModelCombination,
    PointEstimator,
    StepDirection,
    UpdateRule,
)
from modelsafe.adversarial.presets import PRESETS, create_attack, describe_attacks, list_attacks
from modelsafe.adversarial.transforms import (
    InputDiversity,
    ScaleCopies,
    TranslationSmoothing,
    gaussian_kernel,
)
from modelsafe.adversarial.updates import DecayIndicator, Momentum

__all__ = [
    "PRESETS", "AttackSpec", "BlockShuffleRotation", "BudgetPlan", "ComputeCount", "DecayIndicator",
    "DepthFirstSampling", "Ensemble", "GradFn", "GradientEstimator", "GradientRelevance", "GradientTransform",
    "InputDiversity", "InputTransform", "MaximinExpectedFlatness", "ModelCombination", "Momentum",
    "PenalizedGradientNorm", "PlainGradient", "PointEstimator", "RescaleStep", "Resized", "ScaleCopies", "SignStep",
    "SingleModel", "StepDirection", "StructureInvariance", "TransferAttack", "TransferMatrix",
    "TranslationSmoothing", "UpdateRule", "VarianceTuning", "create_attack", "create_attack_at_budget",
    "depth_first_walk", "describe_attacks", "gaussian_kernel", "list_attacks", "plan_budget", "quantize_in_ball",
    "rescale_official", "rescale_paper", "rotate", "transfer_matrix",
]
