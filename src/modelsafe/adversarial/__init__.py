"""Transfer attacks built by composition (S-FGRM and its family), ensembles and transfer-success matrices.

Quick start::

    from modelsafe.adversarial import create_attack, transfer_matrix
    attack = create_attack("smi-fgrm", surrogate, eps=16/255)
    adv = attack(images)                       # labels: the surrogate's clean prediction
    result = transfer_matrix(["mi-fgsm", "smi-fgrm"], {"cnn": surrogate}, {"mlp": target}, (x, y))
    print(transfer_table(result))              # from modelsafe.report
"""

from modelsafe.adversarial.attack import AttackSpec, Momentum, TransferAttack, quantize_in_ball
from modelsafe.adversarial.directions import RescaleStep, SignStep, rescale_official, rescale_paper
from modelsafe.adversarial.ensemble import Ensemble, Resized
from modelsafe.adversarial.estimators import (
    DepthFirstSampling,
    PlainGradient,
    VarianceTuning,
    depth_first_walk,
)
from modelsafe.adversarial.matrix import TransferMatrix, transfer_matrix
from modelsafe.adversarial.presets import PRESETS, create_attack, describe_attacks, list_attacks
from modelsafe.adversarial.transforms import (
    InputDiversity,
    ScaleCopies,
    TranslationSmoothing,
    gaussian_kernel,
)

__all__ = [
    "PRESETS", "AttackSpec", "DepthFirstSampling", "Ensemble", "InputDiversity", "Momentum", "PlainGradient",
    "RescaleStep", "Resized", "ScaleCopies", "SignStep", "TransferAttack", "TransferMatrix", "TranslationSmoothing",
    "VarianceTuning", "create_attack", "depth_first_walk", "describe_attacks", "gaussian_kernel",
    "list_attacks", "quantize_in_ball", "rescale_official", "rescale_paper", "transfer_matrix",
]
