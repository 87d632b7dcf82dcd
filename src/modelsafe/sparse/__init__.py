"""Sparse training and sparse weights.

* :class:`DynamicSparsity`: dynamic sparse training (SET, RigL, ITOP and the official SafeCompress rules) in
  any loop: ``step()`` after each optimizer step; ``propose``/``apply`` for test-driven mask updates.
* :class:`GradualPruning`: gradual magnitude pruning (Zhu & Gupta).
* :class:`SparsityCallback`: either engine inside :func:`modelsafe.training.fit`.
* :func:`export_sparse` / :func:`load_sparse`: packed safetensors files with measured sizes.
"""

from modelsafe.sparse.callback import SparsityCallback
from modelsafe.sparse.distribution import DISTRIBUTIONS, exact_counts, layer_densities
from modelsafe.sparse.engine import Candidate, DynamicSparsity
from modelsafe.sparse.export import ExportReport, export_sparse, load_sparse
from modelsafe.sparse.layers import PRUNABLE_TYPES, LayerSelection, SparseLayer, select_layers
from modelsafe.sparse.masks import MaskedWeights
from modelsafe.sparse.pruning import GradualPruning
from modelsafe.sparse.rules import LayerView, Strategy, register_grow_rule, register_prune_rule
from modelsafe.sparse.schedule import UpdateSchedule, cubic_sparsity
from modelsafe.sparse.stats import count_flops

__all__ = ["DISTRIBUTIONS", "PRUNABLE_TYPES", "Candidate", "DynamicSparsity",
           "ExportReport", "GradualPruning", "LayerSelection", "LayerView", "MaskedWeights", "SparseLayer", "SparsityCallback",
           "Strategy", "UpdateSchedule", "count_flops", "cubic_sparsity", "exact_counts", "export_sparse",
           "layer_densities", "load_sparse", "register_grow_rule", "register_prune_rule", "select_layers"]
