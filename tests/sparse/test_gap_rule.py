"""The privacy-aware prune rule ``magnitude-gap`` on hand-computed tensors."""

import pytest
import torch

from modelsafe.errors import ModelsafeError
from modelsafe.sparse.rules import PRUNE_RULES, LayerView


def view(weight, gap_grad=None):
    w = torch.tensor(weight)
    signals = {} if gap_grad is None else {"gap_grad": torch.tensor(gap_grad)}
    return LayerView("fc.weight", w, torch.ones_like(w, dtype=torch.bool), None, None,
                     torch.ones_like(w, dtype=torch.bool), torch.Generator(), signals)


def test_drops_the_small_weight_that_sustains_the_gap():
    # the two smallest |w| are positions 3 (0.05) and 0 (0.1); w·∂G/∂w there: -0.05 and 0.2
    layer = view([0.1, -0.2, 0.3, 0.05, 1.0], [2.0, 0.0, 0.0, -1.0, 5.0])
    removed = PRUNE_RULES.get("magnitude-gap")(layer, 1)
    assert removed.tolist() == [True, False, False, False, False]
    assert PRUNE_RULES.get("magnitude")(layer, 1).tolist() == [False, False, False, True, False]


def test_never_drops_a_large_weight_however_much_it_sustains_the_gap():
    layer = view([0.1, -0.2, 0.3, 0.05, 1.0], [0.0, 0.0, 0.0, 0.0, 100.0])
    assert not PRUNE_RULES.get("magnitude-gap")(layer, 2)[4]


def test_needs_the_gap_signal():
    with pytest.raises(ModelsafeError, match="gap_grad"):
        PRUNE_RULES.get("magnitude-gap")(view([0.1, 0.2]), 1)
