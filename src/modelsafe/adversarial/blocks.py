"""Block-wise input transforms: block shuffle and rotation (BSR, Wang et al., CVPR 2024) and the structure
invariance transformation (SIA, Wang et al., ICCV 2023). Both are
:class:`~modelsafe.adversarial.parts.InputTransform` s with ``copies`` views per gradient point; every random
choice is drawn in ``prepare``, one draw per (gradient point, view), shared by the images of the batch and
by the members of an ensemble (the official codes transform the batch once and feed every model with it).

Images are (N, C, H, W) in [0, 1]; the official codes work in [-1, 1], where 0 is grey, so the fill of
rotated corners is ``fill=0.5`` here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from modelsafe._checks import check_fraction, check_non_negative, check_positive_int
from modelsafe.adversarial.parts import InputTransform
from modelsafe.errors import ModelsafeError
from modelsafe.utils import host_to_device

SIA_OPS = ("vertical-shift", "horizontal-shift", "vertical-flip", "horizontal-flip", "rotate-180", "scale", "noise")


def rotate(x: torch.Tensor, degrees: float | torch.Tensor, fill: float = 0.5) -> torch.Tensor:
    """Rows ``x`` (n, C, h, w) rotated by ``degrees`` (a number, or one per row: (n,)) about the centre
    ((h-1)/2, (w-1)/2), bilinear, same size.

    Output pixel p (row i, column j) samples the input at c + R(-theta)(p - c) in (column, row) coordinates;
    neighbours outside the block count as ``fill`` (so corners are filled with it). Differentiable in ``x``."""
    n, _, h, w = x.shape
    theta = host_to_device(torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float64)).expand(n), x.device)
    cos, sin = torch.cos(theta).to(x.dtype).view(n, 1, 1), torch.sin(theta).to(x.dtype).view(n, 1, 1)
    rows = torch.arange(h, dtype=x.dtype, device=x.device) - (h - 1) / 2
    cols = torch.arange(w, dtype=x.dtype, device=x.device) - (w - 1) / 2
    py, px = torch.meshgrid(rows, cols, indexing="ij")
    sx = cos * px + sin * py + (w - 1) / 2
    sy = -sin * px + cos * py + (h - 1) / 2
    grid = torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], dim=-1)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def block_edges(size: int, blocks: int) -> list[int]:
    """``blocks + 1`` edges of equal blocks along a side of ``size`` pixels (``blocks`` divides ``size``)."""
    step = size // blocks
    return [i * step for i in range(blocks + 1)]


def split_blocks(x: torch.Tensor, rows: list[int], cols: list[int]) -> list[list[torch.Tensor]]:
    """The blocks of (n, C, H, W) rows between the edges ``rows`` (along H) and ``cols`` (along W)."""
    return [[x[..., r0:r1, c0:c1] for c0, c1 in itertools.pairwise(cols)] for r0, r1 in itertools.pairwise(rows)]


def join_blocks(blocks: list[list[torch.Tensor]]) -> torch.Tensor:
    """Inverse of :func:`split_blocks`: a grid of blocks back to (n, C, H, W)."""
    return torch.cat([torch.cat(row, dim=-1) for row in blocks], dim=-2)


@dataclass(frozen=True)
class BlockShuffleRotation(InputTransform):
    """BSR: split the image into ``blocks`` x ``blocks`` equal blocks, shuffle them (a uniformly random
    permutation of all blocks), and rotate each by an angle drawn from U(-``angle``, ``angle``) degrees
    (bilinear, corners filled with ``fill``); ``copies`` such views per gradient point, gradients averaged.
    Defaults: the paper's 2 x 2 blocks, 24 degrees, 20 copies (T = 10: 200 gradient evaluations per image).

    Block k of a view (row-major position) holds the input block ``perm[k]`` rotated by ``angles[k]``. The
    blocks must be equal, so ``blocks`` must divide H and W. The official code departs from the paper: it cuts
    each side into strips of random lengths, permutes the rows and the columns of blocks (not all blocks
    freely), and draws the angle from a normal of std 0.2 rad truncated at 2 std; here the paper's version."""

    blocks: int = 2
    angle: float = 24.0
    copies: int = 20
    fill: float = 0.5

    def __post_init__(self) -> None:
        check_positive_int("BlockShuffleRotation blocks", self.blocks)
        check_non_negative("BlockShuffleRotation angle", self.angle)
        check_positive_int("BlockShuffleRotation copies", self.copies)
        check_fraction("BlockShuffleRotation fill", self.fill)

    def views(self) -> int:
        return self.copies

    def prepare(self, points: int, members: int, shape: torch.Size, generator: torch.Generator) -> dict:
        """``perm`` (points, copies, blocks**2) long and ``angles`` (same shape, float64 degrees)."""
        h, w = int(shape[-2]), int(shape[-1])
        if h % self.blocks or w % self.blocks:
            raise ModelsafeError(f"BlockShuffleRotation blocks={self.blocks} must divide the image size "
                                 f"{h}x{w} (the blocks are equal)")
        count = self.blocks * self.blocks
        perm = torch.rand(points, self.copies, count, generator=generator).argsort(-1)
        angles = (2 * torch.rand(points, self.copies, count, generator=generator, dtype=torch.float64) - 1)
        return {"perm": perm, "angles": angles * self.angle}

    def transform(self, x: torch.Tensor, perm: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Rows ``x`` (n, C, H, W) shuffled and rotated: ``perm`` (long) and ``angles`` (degrees) are
        (blocks**2,) for all rows or (n, blocks**2), one draw per row."""
        n, c, h, w = x.shape
        b, bh, bw = self.blocks, h // self.blocks, w // self.blocks
        grid = x.reshape(n, c, b, bh, b, bw).permute(0, 2, 4, 1, 3, 5).reshape(n, b * b, c, bh, bw)
        perm, angles = host_to_device(perm.expand(n, b * b), x.device), angles.expand(n, b * b)
        chosen = grid[torch.arange(n, device=x.device).unsqueeze(1), perm].reshape(n * b * b, c, bh, bw)
        moved = rotate(chosen, angles.reshape(-1), self.fill).reshape(n, b, b, c, bh, bw)
        return moved.permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)

    def apply(self, x: torch.Tensor, view: torch.Tensor, point: torch.Tensor, member: int,
              draw: Any) -> torch.Tensor:
        return self.transform(x, draw["perm"][point, view], draw["angles"][point, view])


@dataclass(frozen=True)
class BlockOp:
    """One SIA block transform: ``op`` (a name of ``SIA_OPS``) and its random parameter: the shift in
    pixels, the scale factor, or the float64 noise ((images, C, h, w), or (C, h, w) for every image); None for
    flips and the rotation."""

    op: str
    param: Any = None


@dataclass(frozen=True)
class StructureDraw:
    """One SIA view: block edges ``rows`` (along H) and ``cols`` (along W), and ``ops[i][j]`` per block."""

    rows: list[int]
    cols: list[int]
    ops: list[list[BlockOp]]


def apply_block_op(x: torch.Tensor, op: BlockOp, image: torch.Tensor | None = None) -> torch.Tensor:
    """``op`` on block rows ``x`` (n, C, h, w): a cyclic shift along H or W, a flip, a 180-degree rotation,
    a scaling, or added noise clipped to [0, 1] (noise (C, h, w) for every row, or (images, C, h, w) indexed
    by each row's ``image``, default rows 0 .. n-1)."""
    if op.op == "vertical-shift":
        return x.roll(int(op.param), dims=-2)
    if op.op == "horizontal-shift":
        return x.roll(int(op.param), dims=-1)
    if op.op == "vertical-flip":
        return x.flip(-2)
    if op.op == "horizontal-flip":
        return x.flip(-1)
    if op.op == "rotate-180":
        return x.flip(-2, -1)
    if op.op == "scale":
        return x * float(op.param)
    if op.op == "noise":
        noise = op.param
        if noise.dim() == x.dim():
            noise = noise[torch.arange(x.shape[0]) if image is None else image]
        return torch.clamp(x + host_to_device(noise, x.device, x.dtype), 0, 1)
    raise ModelsafeError(f"StructureInvariance op must be one of {', '.join(SIA_OPS)}, got {op.op!r}")


@dataclass(frozen=True)
class StructureInvariance(InputTransform):
    """SIA: cut the image into ``blocks`` x ``blocks`` blocks at random positions (``blocks - 1`` distinct
    cuts per side) and apply to each block an independently drawn transform of ``SIA_OPS``: a cyclic vertical
    or horizontal shift by U{0, .., size-1} pixels, a vertical or horizontal flip, a 180-degree rotation, a
    scaling by U(0, 1), or added noise U(-``noise``, ``noise``) clipped to [0, 1]; ``copies`` views per
    gradient point, gradients averaged. Defaults: 3 x 3 blocks, 20 copies, noise 16/255 (the paper's setting
    and the official code). T = 10: 200 gradient evaluations per image.

    The paper's list also names resizing, DCT-based and dropout transforms, which its official code leaves out;
    here the official code's seven. Cuts and ops are drawn per view and shared by the images of the batch; the
    noise is drawn per image, as in the official code (``per_image``)."""

    blocks: int = 3
    copies: int = 20
    noise: float = 16 / 255
    per_image = True

    def __post_init__(self) -> None:
        check_positive_int("StructureInvariance blocks", self.blocks)
        check_positive_int("StructureInvariance copies", self.copies)
        check_non_negative("StructureInvariance noise", self.noise)

    def views(self) -> int:
        return self.copies

    def prepare(self, points: int, members: int, shape: torch.Size, generator: torch.Generator,
                images: int = 1) -> list[list[StructureDraw]]:
        """``points`` x ``copies`` :class:`StructureDraw` s for ``images`` (C, H, W) images."""
        h, w = int(shape[-2]), int(shape[-1])
        if self.blocks > min(h, w):
            raise ModelsafeError(f"StructureInvariance blocks={self.blocks} exceeds the image size {h}x{w}")
        return [[self._draw(shape, images, generator) for _ in range(self.copies)] for _ in range(points)]

    def _cuts(self, size: int, generator: torch.Generator) -> list[int]:
        cuts = (torch.randperm(size - 1, generator=generator)[:self.blocks - 1] + 1).sort().values
        return [0, *cuts.tolist(), size]

    def _draw(self, shape: torch.Size, images: int, generator: torch.Generator) -> StructureDraw:
        rows, cols = self._cuts(int(shape[-2]), generator), self._cuts(int(shape[-1]), generator)
        ops = []
        for r0, r1 in itertools.pairwise(rows):
            ops.append([self._op((images, int(shape[0]), r1 - r0, c1 - c0), generator)
                        for c0, c1 in itertools.pairwise(cols)])
        return StructureDraw(rows, cols, ops)

    def _op(self, block: tuple[int, int, int, int], generator: torch.Generator) -> BlockOp:
        """One op for a block of (images, C, h, w); the noise is (images, C, h, w)."""
        name = SIA_OPS[int(torch.randint(len(SIA_OPS), (1,), generator=generator))]
        if name in ("vertical-shift", "horizontal-shift"):
            size = block[2] if name == "vertical-shift" else block[3]
            return BlockOp(name, int(torch.randint(size, (1,), generator=generator)))
        if name == "scale":
            return BlockOp(name, float(torch.rand(1, generator=generator, dtype=torch.float64)))
        if name == "noise":
            u = torch.rand(block, generator=generator, dtype=torch.float64)
            return BlockOp(name, (2 * u - 1) * self.noise)
        return BlockOp(name)

    def transform(self, x: torch.Tensor, draw: StructureDraw, image: torch.Tensor | None = None) -> torch.Tensor:
        """One view of rows ``x`` (n, C, H, W) under ``draw``; ``image`` (n,) picks each row's noise (default:
        rows 0 .. n-1)."""
        grid = split_blocks(x, draw.rows, draw.cols)
        return join_blocks([[apply_block_op(b, op, image) for b, op in zip(row, ops)]
                            for row, ops in zip(grid, draw.ops)])

    def apply(self, x: torch.Tensor, view: torch.Tensor, point: torch.Tensor, member: int,
              draw: Any, image: torch.Tensor | None = None) -> torch.Tensor:
        image = torch.arange(x.shape[0]) if image is None else image
        keys, counts = torch.unique_consecutive(point * self.copies + view, return_counts=True)
        sizes = counts.tolist()
        return torch.cat([self.transform(rows, draw[key // self.copies][key % self.copies], ids)
                          for rows, ids, key in zip(torch.split(x, sizes), torch.split(image, sizes), keys.tolist())])
