"""``timm:<arch>`` and ``torchvision:<arch>`` models (the optional ``vision`` extra), wrapped so that they follow
the project's conventions: (N, C, H, W) float inputs in [0, 1] at any size, the model's own normalisation inside.

timm and torchvision are imported only when such a model is built, never by ``import modelsafe``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from modelsafe._checks import check_positive_int
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.models.layers import Normalize


class ExternalModel(nn.Module):
    """An ImageNet-style network behind the project's input convention.

    Input: (N, ``in_channels``, H, W) floats in [0, 1], any H and W (a grey channel is repeated to RGB).
    Steps: ``normalize`` with the model's own ``mean``/``std``, then (if H, W differ) resize to ``input_size``
    (C, H, W) with the model's interpolation (bilinear or bicubic, antialiased when shrinking), then the network.
    Normalising before resizing gives the same result as after, as both interpolations are weighted averages.
    Output: (N, num_classes) logits (auxiliary heads of Inception models are dropped)."""

    def __init__(self, net: nn.Module, name: str, in_channels: int, input_size: tuple[int, int, int],
                 mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear"):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.name = name
        self.in_channels = in_channels
        self.input_size = tuple(int(v) for v in input_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.interpolation = "bicubic" if interpolation == "bicubic" else "bilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ModelsafeError(f"{self.name} takes (N, {self.in_channels}, H, W) images, got {tuple(x.shape)}")
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.normalize(x)
        size = self.input_size[1:]
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)
        out = self.net(x)
        return out.logits if hasattr(out, "logits") else out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, interpolation={self.interpolation!r}"


def _import(package: str, model_name: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except (ImportError, RuntimeError, OSError) as exc:
        raise ModelsafeError(
            f"model {model_name!r} needs the optional package {package!r}, which could not be imported ({exc}). "
            "Install the vision extra: pip install 'modelsafe[vision]' (with a torchvision built for your torch), "
            "or run scripts/setup_vision_env.sh to create .venv-vision.") from None


def _timm(arch: str, num_classes: int, pretrained: bool, kwargs: dict) -> tuple[nn.Module, dict]:
    timm = _import("timm", f"timm:{arch}")
    try:
        net = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" not in str(exc):
            raise
        close = difflib.get_close_matches(arch, timm.list_models(), n=8, cutoff=0.5)
        raise ModelsafeError(f"unknown timm model {arch!r}; close matches: {', '.join(close) or 'none'} "
                             "(all names: timm.list_models(); pretrained tags: timm.list_pretrained())") from None
    cfg = timm.data.resolve_model_data_config(net)
    return net, {"input_size": tuple(cfg["input_size"]), "mean": cfg["mean"], "std": cfg["std"],
                 "interpolation": cfg.get("interpolation", "bilinear")}


def _torchvision(arch: str, num_classes: int, pretrained: bool, kwargs: dict) -> tuple[nn.Module, dict]:
    tv = _import("torchvision", f"torchvision:{arch}")
    names = tv.models.list_models(module=tv.models)
    if arch not in names:
        raise UnknownNameError("torchvision model", arch, names)
    default = tv.models.get_model_weights(arch).DEFAULT
    try:
        net = tv.models.get_model(arch, weights=default if pretrained else None, num_classes=num_classes, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ModelsafeError(f"cannot build torchvision:{arch}: {exc}") from None
    preprocess = default.transforms()
    size = int(preprocess.crop_size[0])
    return net, {"input_size": (3, size, size), "mean": preprocess.mean, "std": preprocess.std,
                 "interpolation": preprocess.interpolation.value}


def create_external_model(name: str, num_classes: int, in_channels: int = 3, image_size: int | None = None,
                          pretrained: bool = False, **kwargs) -> ExternalModel:
    """Build ``timm:<arch>`` (any ``timm.create_model`` name, ``arch.tag`` included: the tag picks the
    pretrained config, so ``timm:inception_v3.tf_in1k`` normalises with mean = std = 0.5) or
    ``torchvision:<arch>`` (``torchvision.models.get_model`` names).

    The network is randomly initialised unless ``pretrained=True`` (which downloads weights; torchvision's
    weights require ``num_classes=1000``). The native input size, mean and std come from timm's pretrained
    config or torchvision's default weights' preprocessing (ImageNet statistics); ``image_size`` overrides the
    input size. ``in_channels`` may be 3 or 1 (grey, repeated to RGB). Extra keyword arguments go to the
    library's constructor. Returns an :class:`ExternalModel` exposing ``.input_size``, ``.mean`` and ``.std``."""
    check_positive_int("num_classes", num_classes)
    if in_channels not in (1, 3):
        raise ModelsafeError(f"{name} takes RGB (3) or grey (1) images, got in_channels={in_channels}")
    library, _, arch = name.partition(":")
    if not arch:
        raise ModelsafeError(f"model name {name!r} needs an architecture after '{library}:'")
    if library == "timm":
        net, cfg = _timm(arch, num_classes, pretrained, kwargs)
    elif library == "torchvision":
        net, cfg = _torchvision(arch, num_classes, pretrained, kwargs)
    else:
        raise ModelsafeError(f"external model names start with 'timm:' or 'torchvision:', got {name!r}")
    input_size = cfg["input_size"]
    if image_size is not None:
        input_size = (3, check_positive_int("image_size", image_size), image_size)
    return ExternalModel(net, name, in_channels, input_size, cfg["mean"], cfg["std"], cfg["interpolation"])
