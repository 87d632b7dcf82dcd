"""BSR and SIA: hand-computed block moves, rotations and per-block transforms; the attacks against float64
loops that redo every transform with per-pixel / per-block loops of their own (consuming the draws the
library made in ``prepare``), counts, seeds and bad inputs."""

import math

import pytest
import torch

from modelsafe.adversarial import BlockShuffleRotation, StructureInvariance, create_attack, rotate
from modelsafe.adversarial.blocks import BlockOp, StructureDraw
from modelsafe.errors import ModelsafeError
from modelsafe.utils import derive_seed, make_generator

from .reference import SHAPE, fgrm_paper, l1_normalised, loss_grad, project


# ---------------------------------------------------------------- hand-computed transforms
def test_two_by_two_shuffle_moves_exactly_the_expected_blocks():
    x = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)
    out = BlockShuffleRotation(blocks=2).transform(x, torch.tensor([3, 0, 2, 1]), torch.zeros(4))
    want = torch.tensor([[10, 11, 0, 1], [14, 15, 4, 5], [8, 9, 2, 3], [12, 13, 6, 7]], dtype=torch.float64)
    assert torch.allclose(out[0, 0], want, atol=1e-12, rtol=0)


def test_rotation_by_0_90_180_degrees():
    x = torch.arange(32, dtype=torch.float64).view(2, 1, 4, 4)
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-12, rtol=0)
    # out[i, j] = x[w-1-j, i]: a quarter turn
    assert torch.allclose(rotate(x, 90.0), torch.rot90(x, -1, (-2, -1)), atol=1e-12, rtol=0)
    assert torch.allclose(rotate(x, 180.0), x.flip(-2, -1), atol=1e-12, rtol=0)


def test_rotated_corners_take_the_fill_value():
    out = rotate(torch.ones(1, 1, 5, 5, dtype=torch.float64), 45.0, fill=0.5)
    assert out[0, 0, 2, 2] == 1.0 and 0.5 <= out[0, 0, 0, 0].item() < 0.6


def test_sia_block_transforms_by_hand():
    x = torch.arange(36, dtype=torch.float64).view(1, 1, 6, 6)
    noise = torch.full((1, 4, 3), 0.25, dtype=torch.float64)
    draw = StructureDraw([0, 2, 6], [0, 3, 6], [[BlockOp("vertical-shift", 1), BlockOp("horizontal-flip")],
                                                [BlockOp("rotate-180"), BlockOp("noise", noise)]])
    out = StructureInvariance(blocks=2).transform(x / 36, draw)[0, 0] * 36
    assert torch.allclose(out[:2, :3], torch.tensor([[6.0, 7, 8], [0, 1, 2]], dtype=x.dtype))
    assert torch.allclose(out[:2, 3:], torch.tensor([[5.0, 4, 3], [11, 10, 9]], dtype=x.dtype))
    assert torch.allclose(out[2:, :3], torch.tensor([[32.0, 31, 30], [26, 25, 24], [20, 19, 18], [14, 13, 12]], dtype=x.dtype))
    assert torch.allclose(out[2:, 3:], torch.clamp(x[0, 0, 2:, 3:] / 36 + 0.25, 0, 1) * 36)
    other = StructureDraw([0, 3, 6], [0, 1, 6], [[BlockOp("scale", 0.5), BlockOp("horizontal-shift", 2)],
                                                [BlockOp("vertical-flip"), BlockOp("vertical-flip")]])
    out = StructureInvariance(blocks=2).transform(x, other)[0, 0]
    assert out[0].tolist() == [0.0, 4, 5, 1, 2, 3] and out[1, 0].item() == 3.0
    assert out[3].tolist() == x[0, 0, 5].tolist() and out[5].tolist() == x[0, 0, 3].tolist()


def test_sia_noise_is_drawn_per_image_and_follows_each_rows_image():
    sia = StructureInvariance(blocks=1, copies=1)
    noise = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.3)]).double()  # images 0 and 1
    draw = [[StructureDraw([0, 4], [0, 4], [[BlockOp("noise", noise)]])]]
    x = torch.full((3, 1, 4, 4), 0.5, dtype=torch.float64)  # three identical rows: images 1, 0, 1
    out = sia.apply(x, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 0, draw,
                    image=torch.tensor([1, 0, 1]))
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0.8, 0.6, 0.8])
    d = StructureInvariance().prepare(2, 1, torch.Size((1, 8, 8)), torch.Generator().manual_seed(0), images=5)
    noisy = [op.param for v in d for draw_ in v for row in draw_.ops for op in row if op.op == "noise"]
    assert noisy and all(p.shape[0] == 5 and not torch.equal(p[0], p[1]) for p in noisy)


def test_sia_draws_distinct_cuts_and_known_ops():
    draws = StructureInvariance(blocks=3, copies=4).prepare(2, 1, torch.Size(SHAPE), torch.Generator().manual_seed(0))
    assert len(draws) == 2 and all(len(d) == 4 for d in draws)
    for d in (d for row in draws for d in row):
        assert d.rows[0] == 0 and d.rows[-1] == 8 and len(set(d.rows)) == 4 and d.rows == sorted(d.rows)
        assert len(d.ops) == 3 and all(len(r) == 3 for r in d.ops)


# ---------------------------------------------------------------- reference loops
def ref_rotate(block, degrees, fill):
    """Bilinear rotation about the block centre, one output pixel at a time; outside neighbours = fill."""
    h, w = block.shape[-2:]
    cy, cx, t = (h - 1) / 2, (w - 1) / 2, math.radians(degrees)
    pixels = []
    for i in range(h):
        for j in range(w):
            sx = cx + math.cos(t) * (j - cx) + math.sin(t) * (i - cy)
            sy = cy - math.sin(t) * (j - cx) + math.cos(t) * (i - cy)
            x0, y0 = math.floor(sx), math.floor(sy)
            value = torch.zeros_like(block[..., 0, 0])
            for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                    if 0 <= yy < h and 0 <= xx < w:
                        value = value + wy * wx * (block[..., yy, xx] - fill)
            pixels.append(value + fill)
    return torch.stack(pixels, -1).view(block.shape)


def ref_bsr(x, perm, angles, n, fill=0.5):
    """Block k (row-major) of the output is input block perm[k], rotated by angles[k]."""
    bh, bw = x.shape[-2] // n, x.shape[-1] // n
    block = [x[..., (k // n) * bh:(k // n + 1) * bh, (k % n) * bw:(k % n + 1) * bw] for k in range(n * n)]
    out = [ref_rotate(block[int(perm[k])], float(angles[k]), fill) for k in range(n * n)]
    return torch.cat([torch.cat(out[r * n:(r + 1) * n], -1) for r in range(n)], -2)


def ref_op(b, op):
    h, w = b.shape[-2:]
    if op.op == "vertical-shift":
        return b[..., [(i - op.param) % h for i in range(h)], :]
    if op.op == "horizontal-shift":
        return b[..., [(j - op.param) % w for j in range(w)]]
    rows, cols = list(range(h)), list(range(w))
    if op.op in ("vertical-flip", "rotate-180"):
        rows = rows[::-1]
    if op.op in ("horizontal-flip", "rotate-180"):
        cols = cols[::-1]
    b = b[..., rows, :][..., cols]
    if op.op == "scale":
        return b * op.param
    return torch.clamp(b + op.param, 0, 1) if op.op == "noise" else b


def ref_sia(x, draw):
    out = x.clone()
    for i, (r0, r1) in enumerate(zip(draw.rows, draw.rows[1:])):
        for j, (c0, c1) in enumerate(zip(draw.cols, draw.cols[1:])):
            out[..., r0:r1, c0:c1] = ref_op(x[..., r0:r1, c0:c1], draw.ops[i][j])
    return out


def mi_loop(model, x0, y, eps, steps, views, draws):
    """MI-FGSM whose gradient is the mean over the views of the gradient through each view."""
    x, momentum = x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        d = draws()
        g = sum(loss_grad(model, x, y, lambda v, k=k, d=d: views(v, d, 0, k)) for k in range(len(d[0])))
        momentum = momentum + l1_normalised(g / len(d[0]))
        x = project(x + eps / steps * momentum.sign(), x0, eps)
    return x


def test_bsr_equals_the_papers_loop_in_float64(tiny_setup):
    model, x0, y = tiny_setup
    bsr, gen = BlockShuffleRotation(copies=3), make_generator(derive_seed(5, "input-diversity"))

    def draws():
        d = bsr.prepare(1, 1, x0.shape[1:], gen)
        return [[(d["perm"][0, v], d["angles"][0, v]) for v in range(3)]]

    want = mi_loop(model, x0, y, 0.1, 2, lambda v, d, k, c: ref_bsr(v, *d[k][c], 2), draws)
    attack = create_attack("bsr", model, eps=0.1, steps=2, copies=3, chunk_size=4)
    adv = attack(x0, y, seed=5)
    assert (adv - want).abs().max().item() < 1e-9
    assert (adv - x0).abs().max().item() > 0.05
    assert attack.last_compute.gradient_evaluations_per_image == 2 * 3


def test_sia_equals_the_papers_loop_in_float64(tiny_setup):
    model, x0, y = tiny_setup
    sia, gen = StructureInvariance(copies=3), make_generator(derive_seed(6, "input-diversity"))
    # the noise is drawn per image: (images, C, h, w) per noisy block, added to the whole batch at once here
    want = mi_loop(model, x0, y, 0.1, 3, lambda v, d, k, c: ref_sia(v, d[k][c]),
                   lambda: sia.prepare(1, 1, x0.shape[1:], gen, images=x0.shape[0]))
    adv = create_attack("sia", model, eps=0.1, steps=3, copies=3, chunk_size=4)(x0, y, seed=6)
    assert (adv - want).abs().max().item() < 1e-9
    assert (adv - x0).abs().max().item() > 0.05


def test_bsr_smi_fgrm_equals_a_loop_with_bsr_views_at_every_walk_point(tiny_setup):
    """S-FGRM (depth-first walk of N points, centre weight gamma = 1, paper rescaling) with BSR views."""
    model, x0, y = tiny_setup
    eps, steps, n, beta, copies = 0.1, 2, 2, 1.5, 2
    bsr, gen_t, gen = BlockShuffleRotation(copies=copies), make_generator(derive_seed(8, "input-diversity")), \
        torch.Generator().manual_seed(8)
    x, momentum = x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        walk = torch.empty((n, *x.shape), dtype=x.dtype).uniform_(-beta * eps, beta * eps, generator=gen)
        points = [x, *(x + walk[:i + 1].sum(0) for i in range(n))]
        d = bsr.prepare(n + 1, 1, x0.shape[1:], gen_t)
        total = torch.zeros_like(x)
        for k, p in enumerate(points):
            for v in range(copies):
                view = lambda z, k=k, v=v, d=d: ref_bsr(z, d["perm"][k, v], d["angles"][k, v], 2)
                total += loss_grad(model, p, y, view) / copies
        momentum = momentum + l1_normalised(total / (n + 1))
        x = project(x + eps / steps * fgrm_paper(momentum), x0, eps)
    attack = create_attack("bsr-smi-fgrm", model, eps=eps, steps=steps, samples=n, copies=copies,
                           rescale="paper", chunk_size=5)
    adv = attack(x0, y, seed=8)
    assert (adv - x).abs().max().item() < 1e-9
    assert attack.last_compute.gradient_evaluations_per_image == steps * (n + 1) * copies


# ---------------------------------------------------------------- counts, seeds, errors
@pytest.mark.parametrize("name,per_image", [("bsr", 200), ("sia", 200), ("bsr-smi-fgrm", 2600)])
def test_gradient_evaluations_at_the_paper_defaults(name, per_image):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    attack = create_attack(name, model, eps=0.1)
    attack(torch.rand(1, 1, 8, 8))
    assert attack.last_compute.gradient_evaluations_per_image == per_image


@pytest.mark.parametrize("name", ["bsr", "sia"])
def test_seed_controls_the_views_and_chunks_do_not(tiny_setup, name):
    model, x0, y = tiny_setup
    attack = create_attack(name, model, eps=0.1, steps=2, copies=3)
    assert torch.equal(attack(x0, y, seed=1), attack(x0, y, seed=1))
    assert not torch.equal(attack(x0, y, seed=1), attack(x0, y, seed=2))
    other = create_attack(name, model, eps=0.1, steps=2, copies=3, chunk_size=2)
    assert (other(x0, y, seed=1) - attack(x0, y, seed=1)).abs().max().item() < 1e-12


@pytest.mark.parametrize("name,options,match", [
    ("bsr", {"blocks": 3}, r"BlockShuffleRotation blocks=3 must divide the image size 8x8"),
    ("bsr", {"blocks": 16}, r"BlockShuffleRotation blocks=16 must divide"),
    ("sia", {"blocks": 9}, r"StructureInvariance blocks=9 exceeds the image size 8x8"),
])
def test_block_counts_the_image_cannot_take_name_the_part(tiny_setup, name, options, match):
    model, x0, y = tiny_setup
    with pytest.raises(ModelsafeError, match=match):
        create_attack(name, model, eps=0.1, steps=1, **options)(x0, y)


@pytest.mark.parametrize("make,match", [
    (lambda: BlockShuffleRotation(copies=0), "BlockShuffleRotation copies must be a positive integer"),
    (lambda: BlockShuffleRotation(blocks=0), "BlockShuffleRotation blocks must be a positive integer"),
    (lambda: BlockShuffleRotation(angle=-1), "BlockShuffleRotation angle"),
    (lambda: StructureInvariance(copies=-3), "StructureInvariance copies must be a positive integer"),
    (lambda: StructureInvariance(noise=-0.1), "StructureInvariance noise"),
])
def test_bad_parameters_name_the_part(make, match):
    with pytest.raises(ModelsafeError, match=match):
        make()
