"""Which weights are sparse: conv and linear weights by default, minus any the caller keeps dense."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from modelsafe.errors import ModelsafeError

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class SparseLayer:
    """One masked weight. ``name`` is the parameter's name in ``model.named_parameters()`` (e.g.
    ``features.0.weight``); ``module`` is the owning module's name (``features.0``)."""

    name: str
    module: str
    param: nn.Parameter

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.param.shape)

    @property
    def numel(self) -> int:
        return self.param.numel()


def select_layers(model: nn.Module, *, layer_types: Sequence[type[nn.Module]] = PRUNABLE_TYPES,
                  dense_first: bool = False, dense_layers: Sequence[str] = ()) -> list[SparseLayer]:
    """The weights of every module of ``layer_types`` (biases and normalisation layers stay dense), in module
    registration order. ``dense_first`` keeps the first such layer dense; ``dense_layers`` names further
    modules or parameters to keep dense (each name must exist). Raises :class:`ModelsafeError` when nothing is
    left to sparsify."""
    candidates = [(mod_name, module) for mod_name, module in model.named_modules()
                  if isinstance(module, tuple(layer_types)) and isinstance(getattr(module, "weight", None),
                                                                           nn.Parameter)]
    candidates = [(name, module) for name, module in candidates if module.weight.requires_grad]
    if not candidates:
        kinds = ", ".join(t.__name__ for t in layer_types)
        raise ModelsafeError(f"the model has no prunable layer (no trainable weight of a {kinds} module)")
    param_names = {id(p): n for n, p in model.named_parameters()}
    layers, seen = [], set()
    for mod_name, module in candidates:  # a weight shared by several modules is masked once
        if id(module.weight) not in seen:
            seen.add(id(module.weight))
            layers.append(SparseLayer(param_names[id(module.weight)], mod_name, module.weight))
    unknown = [n for n in dense_layers if not any(n in (layer.module, layer.name) for layer in layers)]
    if unknown:
        valid = ", ".join(layer.module for layer in layers)
        raise ModelsafeError(f"dense_layers names no prunable layer: {', '.join(unknown)} (prunable: {valid})")
    keep_dense = set(dense_layers)
    if dense_first:
        keep_dense.add(layers[0].module)
    layers = [layer for layer in layers if layer.module not in keep_dense and layer.name not in keep_dense]
    if not layers:
        raise ModelsafeError("every prunable layer is kept dense; nothing is left to sparsify")
    return layers


@dataclass(frozen=True)
class LayerSelection:
    """Which layers a sparse engine masks: the weights of every module of ``types``, except the first such
    layer when ``dense_first`` and the modules or parameters named in ``dense_layers``."""

    types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES
    dense_first: bool = False
    dense_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "dense_layers", tuple(self.dense_layers))

    def select(self, model: nn.Module) -> list[SparseLayer]:
        """The sparse layers of ``model`` (:func:`select_layers`)."""
        return select_layers(model, layer_types=self.types, dense_first=self.dense_first,
                             dense_layers=self.dense_layers)


ALL_PRUNABLE = LayerSelection()  # every conv/linear weight sparse (the default of the engines)
