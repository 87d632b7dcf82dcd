"""Models by name, timm-style: ``create_model(name, num_classes, in_channels, image_size, width)``.

Names with a ``timm:`` or ``torchvision:`` prefix go to :mod:`modelsafe.models.adapters` (the ``vision``
extra); everything else is built here without torchvision."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from modelsafe._checks import check_positive, check_positive_int
from modelsafe.errors import ModelsafeError
from modelsafe.models.text import TextClassifier
from modelsafe.models.vision import MLP, VGG, VGGC, ResNet18, SmallCNN
from modelsafe.registry import Registry

if TYPE_CHECKING:
    from modelsafe.data.info import DatasetInfo

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """One built-in model. Image models are built as ``build(num_classes, in_channels, image_size, width=,
    mean=, std=, **kwargs)``; ``image_size`` is the default input size (None: flat features) and
    ``min_image_size`` the smallest one the architecture handles. ``text`` models are built as
    ``build(num_classes, width=, **kwargs)`` and need ``vocab_size=``."""

    name: str
    build: Builder
    image_size: int | None = 32
    min_image_size: int = 1
    text: bool = False


_EXTERNAL_PREFIXES = ("timm:", "torchvision:")
MODELS: Registry[ModelEntry] = Registry("model", hints=[f"{p}<name>" for p in _EXTERNAL_PREFIXES])
for _row in (
    ModelEntry("cnn", SmallCNN, min_image_size=4),
    ModelEntry("mlp", MLP, image_size=None),
    ModelEntry("vgg11", lambda *a, **k: VGG("vgg11", *a, **k)),
    ModelEntry("vgg16", lambda *a, **k: VGG("vgg16", *a, **k)),
    ModelEntry("vgg-c", VGGC),
    ModelEntry("resnet18", ResNet18),
    ModelEntry("text", TextClassifier, text=True),
):
    MODELS.register(_row.name, _row)


def list_models(pattern: str | None = None) -> list[str]:
    """Built-in model names, sorted (external ``timm:<name>`` / ``torchvision:<name>`` are accepted too);
    those matching the shell-style ``pattern`` when given."""
    return MODELS.names(pattern)


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int | None = None,
                 width: float = 1.0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 **kwargs) -> nn.Module:
    """Build a randomly initialised classifier.

    Image models take (N, in_channels, image_size, image_size) floats in [0, 1] (``image_size`` defaults to
    32 for built-in models and to the native size for ``timm:``/``torchvision:`` ones) and normalise them
    internally with ``mean``/``std``; ``mlp`` with ``image_size=None`` takes (N, in_channels) features;
    ``text`` takes (N, L) token ids and needs ``vocab_size=``. All return (N, num_classes) logits."""
    check_positive_int("num_classes", num_classes)
    check_positive_int("in_channels", in_channels)
    check_positive("width", width)
    if name.startswith(_EXTERNAL_PREFIXES):
        from modelsafe.models.adapters import create_external_model

        return create_external_model(name, num_classes, in_channels=in_channels, image_size=image_size, **kwargs)
    entry = MODELS.get(name)
    if entry.text:
        if "vocab_size" not in kwargs:
            raise ModelsafeError(f"model {name!r} needs vocab_size= (the dataset's vocabulary size)")
        return entry.build(num_classes, width=width, **kwargs)
    if image_size is None:
        image_size = entry.image_size
    if image_size is not None:
        check_positive_int("image_size", image_size)
        if image_size < entry.min_image_size:
            raise ModelsafeError(f"model {name!r} needs image_size >= {entry.min_image_size}, got {image_size}")
    return entry.build(num_classes, in_channels, image_size, width=width, mean=mean, std=std, **kwargs)


def create_model_for(name: str, info: DatasetInfo, width: float = 1.0, **kwargs) -> nn.Module:
    """``create_model`` with the shapes and normalisation of a loaded dataset."""
    if info.kind == "text":
        if name != "text":
            raise ModelsafeError(f"dataset {info.name!r} is text; use model 'text', not {name!r}")
        return create_model("text", info.num_classes, width=width, vocab_size=info.vocab_size, **kwargs)
    if info.kind == "tabular":
        if name != "mlp":
            raise ModelsafeError(f"dataset {info.name!r} is tabular; use model 'mlp', not {name!r}")
        return create_model("mlp", info.num_classes, in_channels=info.input_shape[0], image_size=None,
                            width=width, **kwargs)
    if name == "text":
        raise ModelsafeError(f"model 'text' needs a text dataset; {info.name!r} holds images")
    channels, size = info.input_shape[0], info.input_shape[1]
    if name.startswith(_EXTERNAL_PREFIXES):  # the dataset's images are resized to the model's native size
        return create_model(name, info.num_classes, in_channels=channels, **kwargs)
    return create_model(name, info.num_classes, in_channels=channels, image_size=size, width=width,
                        mean=info.mean, std=info.std, **kwargs)
