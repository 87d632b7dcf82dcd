"""Input transforms of the transfer-attack family: input diversity (DI) and scale copies (SI), both
:class:`~modelsafe.adversarial.parts.InputTransform` s, and translation invariance (TI, a
:class:`~modelsafe.adversarial.parts.GradientTransform`: a smoothing of the gradient). CT is all three together.

Images are (N, C, H, W) in [0, 1]. The official S-FGRM code works in [-1, 1], where 0 is mid-grey; the
defaults here (``pad_value=0.5``, ``center=0.5``) reproduce that in [0, 1] pixel space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from modelsafe._checks import check_choice, check_fraction, check_positive, check_positive_int
from modelsafe.adversarial.parts import GradientTransform, InputTransform
from modelsafe.errors import ModelsafeError
from modelsafe.utils import host_to_device

DI_MODES = ("nearest", "bilinear")


@dataclass(frozen=True)
class DiversityDraw:
    """Random geometry for one model call: ``apply`` the transform or not; resize to (``height``, ``width``);
    place at (``top``, ``left``) on a canvas of ``canvas`` (H, W)."""

    apply: bool
    height: int
    width: int
    top: int
    left: int
    canvas: tuple[int, int]


@dataclass(frozen=True)
class InputDiversity(InputTransform):
    """DI: with probability ``prob`` resize the image to a random size and pad it at a random position.

    ``resize_rate > 1`` (default 1.1, as the official 299 -> [299, 331) -> 331 canvas): the image grows to a
    random size in [H, int(rate*H)) and is padded to the int(rate*H) canvas; ``resize_rate < 1`` (torchattacks'
    0.9): it shrinks to [int(rate*H), H) and is padded back to H. ``resize_back`` then resizes the canvas to
    (H, W) (the official code does; with ``resize_rate > 1`` it is required so every call has one input size).
    ``pad_value`` 0.5 is the official code's 0 in [-1, 1] (grey); torchattacks pads with 0 (black).
    One draw covers every image of one model call, as in the official code; here a "call" is one gradient
    point (centre or one walk sample), so the result does not depend on ``chunk_size``."""

    prob: float = 0.5
    resize_rate: float = 1.1
    mode: str = "nearest"
    resize_back: bool = True
    pad_value: float = 0.5

    def __post_init__(self) -> None:
        check_fraction("di_prob", self.prob)
        check_positive("di_resize_rate", self.resize_rate)
        if self.resize_rate == 1.0:
            raise ModelsafeError("di_resize_rate must differ from 1 (it sets the range of random sizes)")
        check_choice("di_mode", self.mode, DI_MODES)
        check_fraction("di_pad_value", self.pad_value)
        if self.resize_rate > 1 and not self.resize_back:
            raise ModelsafeError("di_resize_rate > 1 needs di_resize_back=True (every model call must see one "
                                 "input size); use di_resize_rate < 1 to pad without resizing back")

    def _range(self, size: int) -> tuple[int, int, int]:
        """(lowest size, highest size + 1, canvas) for one side of ``size`` pixels."""
        if self.resize_rate > 1:
            canvas = max(int(size * self.resize_rate), size + 1)
            return size, canvas, canvas
        low = min(int(size * self.resize_rate), size - 1)
        return max(low, 1), size, size

    def draw(self, count: int, height: int, width: int, generator: torch.Generator) -> list[DiversityDraw]:
        """``count`` independent draws for (height, width) images, from a CPU ``generator``."""
        lo, hi, canvas_h = self._range(height)
        apply = torch.rand(count, generator=generator) < self.prob
        sizes = torch.randint(lo, hi, (count,), generator=generator)
        offsets = torch.rand(count, 2, generator=generator)
        canvas_w = max(1, round(width * canvas_h / height))
        draws = []
        for i in range(count):
            h = int(sizes[i])
            w = max(1, min(canvas_w, round(width * h / height)))
            # offsets in [0, canvas - size), as the official code (the far side keeps >= 1 pixel of padding)
            top = min(int(offsets[i, 0] * (canvas_h - h)), max(canvas_h - h - 1, 0))
            left = min(int(offsets[i, 1] * (canvas_w - w)), max(canvas_w - w - 1, 0))
            draws.append(DiversityDraw(bool(apply[i]), h, w, top, left, (canvas_h, canvas_w)))
        return draws

    def __call__(self, x: torch.Tensor, draw: DiversityDraw) -> torch.Tensor:
        if not draw.apply:
            return x
        align = None if self.mode == "nearest" else False
        resized = F.interpolate(x, size=(draw.height, draw.width), mode=self.mode, align_corners=align)
        ch, cw = draw.canvas
        pad = (draw.left, cw - draw.width - draw.left, draw.top, ch - draw.height - draw.top)
        canvas = F.pad(resized, pad, value=self.pad_value)
        if self.resize_back and (ch, cw) != tuple(x.shape[-2:]):
            canvas = F.interpolate(canvas, size=tuple(x.shape[-2:]), mode=self.mode, align_corners=align)
        return canvas

    def views(self) -> int:
        return 1

    def prepare(self, points: int, members: int, shape: torch.Size,
                generator: torch.Generator) -> tuple[list[DiversityDraw], int]:
        """One draw per gradient point and member: draw ``point * members + member``."""
        return self.draw(points * members, shape[-2], shape[-1], generator), members

    def apply(self, x: torch.Tensor, view: torch.Tensor, point: torch.Tensor, member: int,
              draw: Any) -> torch.Tensor:
        draws, members = draw
        keys, counts = torch.unique_consecutive(point, return_counts=True)
        pieces = torch.split(x, counts.tolist())
        return torch.cat([self(p, draws[int(key) * members + member]) for p, key in zip(pieces, keys)])


@dataclass(frozen=True)
class ScaleCopies(InputTransform):
    """SI: ``copies`` scaled images ``center + (x - center) / 2**i``, i = 0 .. copies-1; their gradients
    (chain rule included) are averaged. The official code sums them in [-1, 1] space, i.e. shrinks towards
    grey: ``center=0.5`` (default) is exactly that for models whose native range is [-1, 1]. ``center=0``
    shrinks towards black, as torchattacks and TransferAttack do in [0, 1] space. Sum vs mean is a constant
    factor that the L1 normalisation removes."""

    copies: int = 5
    center: float = 0.5

    def __post_init__(self) -> None:
        check_positive_int("si_copies", self.copies)
        check_fraction("si_center", self.center)

    def factors(self, index: torch.Tensor) -> torch.Tensor:
        """Scale factor 2**-i for copy indices ``index``."""
        return torch.pow(0.5, index.to(torch.float64))

    def views(self) -> int:
        return self.copies

    def apply(self, x: torch.Tensor, view: torch.Tensor, point: torch.Tensor, member: int,
              draw: Any) -> torch.Tensor:
        factors = host_to_device(self.factors(view), x.device, x.dtype).view(-1, 1, 1, 1)
        return self.center + (x - self.center) * factors


def gaussian_kernel(size: int, nsig: float) -> torch.Tensor:
    """(size, size) float64 Gaussian: points ``linspace(-nsig, nsig, size)``, standard-normal density,
    outer product normalised to sum 1 (the TI code's ``gkern``)."""
    t = torch.linspace(-nsig, nsig, size, dtype=torch.float64)
    pdf = torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    kernel = torch.outer(pdf, pdf)
    return kernel / kernel.sum()


@dataclass(frozen=True)
class TranslationSmoothing(GradientTransform):
    """TI: convolve the (averaged) gradient with a ``size`` x ``size`` Gaussian (``nsig`` standard deviations
    to each edge; 7 and 3 give sigma = 1 px, the S-FGRM CT code) per channel, zero padding, same size.
    Applied before the L1 normalisation, as in the official code."""

    size: int = 7
    nsig: float = 3.0

    def __post_init__(self) -> None:
        check_positive_int("ti_kernel", self.size)
        if self.size % 2 == 0:
            raise ModelsafeError(f"ti_kernel must be odd, got {self.size}")
        check_positive("ti_nsig", self.nsig)

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        channels = g.shape[1]
        kernel = gaussian_kernel(self.size, self.nsig).to(device=g.device, dtype=g.dtype)
        weight = kernel.expand(channels, 1, self.size, self.size)
        return F.conv2d(g, weight, padding=self.size // 2, groups=channels)
