"""Speed of every gradient-heavy attack against its straightforward loop, at the same settings.

The straightforward loop is the attack as a user would write it from the paper: one forward and one backward
call per gradient point per iteration, on the whole batch of images. modelsafe instead stacks every gradient
point of an iteration (walk samples, neighbours, input views) and evaluates them in chunks of ``chunk_size``
images per model call. Each loop here draws its randomness from the same generator stream as the library, so
the benchmark first checks, in float64 on a few images, that loop and library give the same images (max
|difference| is printed): the two timings are of one algorithm.

Timings alternate loop and library calls (common conditions for both) and report the best of ``--repeats``,
and the paired ratio: the geometric mean over rounds of library time / loop time within a round, with a 95%
Student-t interval (an interval above 1 means the library is slower beyond the machine's spread).
The model is the zoo's CNN at random initialisation (speed does not depend on its weights).
``tests/test_attack_speed.py`` runs this script on a few digits images and checks every float64 difference.

    python benchmarks/attack_speed.py --images 100 --repeats 3 --threads 1
    python benchmarks/attack_speed.py --device cuda --images 500
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from scipy.stats import t as student_t

from modelsafe.adversarial import create_attack, rescale_official
from modelsafe.data import load_dataset
from modelsafe.utils import derive_seed, make_generator
from modelsafe.workflows import init_model

Loop = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, float, int, int], torch.Tensor]


def _grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, view=None) -> torch.Tensor:
    """One forward and one backward call: d sum CE(model(view(x)), y) / dx."""
    leaf = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(leaf if view is None else view(leaf)), y, reduction="sum")
    return torch.autograd.grad(loss, leaf)[0]


def _l1(g: torch.Tensor) -> torch.Tensor:
    return g / g.abs().mean((1, 2, 3), keepdim=True)


def _step(x: torch.Tensor, x0: torch.Tensor, eps: float, move: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x0 + torch.clamp(x + move - x0, -eps, eps), 0, 1)


def _uniform(gen: torch.Generator, shape, radius: float, like: torch.Tensor) -> torch.Tensor:
    """U(-radius, radius) of ``shape`` drawn on the CPU generator (as the library draws), moved to ``like``."""
    return torch.empty(shape, dtype=like.dtype).uniform_(-radius, radius, generator=gen).to(like.device)


def mi_loop(model, x0, y, eps, steps, seed):
    """MI-FGSM (mu = 1): one gradient per iteration."""
    x, mom = x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        mom = mom + _l1(_grad(model, x, y))
        x = _step(x, x0, eps, eps / steps * mom.sign())
    return x


def smi_loop(model, x0, y, eps, steps, seed, samples=12, beta=1.5, gamma=1.0):
    """SMI-FGRM: the gradient at x and at N points of a depth-first random walk from x, averaged (x weighted
    gamma), momentum, then the official FGRM rescaling of the momentum."""
    gen, x, mom = torch.Generator().manual_seed(seed), x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        walk = _uniform(gen, (samples, *x.shape), beta * eps, x)
        total, point = gamma * _grad(model, x, y), x
        for i in range(samples):
            point = point + walk[i]
            total += _grad(model, point, y)
        mom = mom + _l1(total / (samples + gamma))
        x = _step(x, x0, eps, eps / steps * rescale_official(mom))
    return x


def pgn_loop(model, x0, y, eps, steps, seed, samples=20, zeta=3.0, delta=0.5):
    """PGN: per neighbour x' = x + U(-zeta eps, zeta eps), g' at x' and g* at x' - alpha g'/mean|g'|."""
    gen, alpha, x, mom = torch.Generator().manual_seed(seed), eps / steps, x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        noise, total = _uniform(gen, (samples, *x.shape), zeta * eps, x), torch.zeros_like(x)
        for i in range(samples):
            g1 = _grad(model, x + noise[i], y)
            total += (1 - delta) * g1 + delta * _grad(model, x + noise[i] - alpha * _l1(g1), y)
        mom = mom + _l1(total / samples)
        x = _step(x, x0, eps, alpha * mom.sign())
    return x


def gra_loop(model, x0, y, eps, steps, seed, samples=20, beta=3.5, eta=0.94):
    """GRA: g at x, gbar over N neighbours, per-image cosine s, G = s g + (1 - s) gbar, decay indicator."""
    gen, alpha, x, mom = torch.Generator().manual_seed(seed), eps / steps, x0.clone(), torch.zeros_like(x0)
    decay = torch.full_like(x0, 1 / eta)
    for _ in range(steps):
        g = _grad(model, x, y)
        noise = _uniform(gen, (samples, *x.shape), beta * eps, x)
        gbar = sum(_grad(model, x + noise[i], y) for i in range(samples)) / samples
        s = F.cosine_similarity(g.flatten(1), gbar.flatten(1), dim=1, eps=0.0).view(-1, 1, 1, 1)
        new = mom + _l1(s * g + (1 - s) * gbar)
        decay = decay * torch.where(new.sign() == mom.sign(), 1.0, eta)
        mom = new
        x = _step(x, x0, eps, alpha * decay * mom.sign())
    return x


def mef_loop(model, x0, y, eps, steps, seed, samples=20, gamma=2.0, kesai=0.15, inner=0.9, mu=0.5):
    """MEF: neighbours x + U(-gamma eps, gamma eps) + kesai eps p_i with inversion buffers p_i."""
    gen, x, mom = torch.Generator().manual_seed(seed), x0.clone(), torch.zeros_like(x0)
    buffers = [torch.zeros_like(x0) for _ in range(samples)]
    for _ in range(steps):
        noise = _uniform(gen, (samples, *x.shape), gamma * eps, x)
        grads = [_grad(model, x + noise[i] + kesai * eps * buffers[i], y) for i in range(samples)]
        buffers = [_l1(g) - inner * p for g, p in zip(grads, buffers)]
        mom = mu * mom + _l1(sum(grads) / samples)
        x = _step(x, x0, eps, eps / steps * mom.sign())
    return x


def view_loop(preset: str) -> Loop:
    """MI-FGSM whose gradient is the mean over the views of the preset's input transform (its own settings),
    one forward/backward per view."""

    def loop(model, x0, y, eps, steps, seed):
        transform = create_attack(preset, model).spec.diversity
        gen, x, mom = make_generator(derive_seed(seed, "input-diversity")), x0.clone(), torch.zeros_like(x0)
        n, views = x0.shape[0], transform.views()
        zeros = torch.zeros(n, dtype=torch.long)  # the protocol's row indices live on the CPU
        own = {"image": torch.arange(n)} if transform.per_image else {}
        for _ in range(steps):
            draw = transform.prepare(1, 1, x0.shape[1:], gen, **({"images": n} if own else {}))
            g = sum(_grad(model, x, y, lambda v, k=k, d=draw: transform.apply(v, zeros + k, zeros, 0, d, **own))
                    for k in range(views))
            mom = mom + _l1(g / views)
            x = _step(x, x0, eps, eps / steps * mom.sign())
        return x

    return loop


LOOPS: dict[str, Loop] = {
    "mi-fgsm": mi_loop, "smi-fgrm": smi_loop, "pgn": pgn_loop, "gra": gra_loop, "mef": mef_loop,
    "bsr": view_loop("bsr"), "sia": view_loop("sia"),
}


def same_algorithm(name: str, model, x, y, eps: float, steps: int) -> float:
    """Max |library - loop| in float64 on ``x``, same seed."""
    model = copy.deepcopy(model).double().eval()
    x = x.double()
    want = LOOPS[name](model, x, y, eps, steps, 0)
    return (create_attack(name, model, eps=eps, steps=steps)(x, y, seed=0) - want).abs().max().item()


def round_times(calls: dict[str, Callable[[], object]], repeats: int, device: str) -> dict[str, list[float]]:
    """Wall time of each call in each of ``repeats`` rounds, the calls alternating within a round."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            sync()
            t0 = time.perf_counter()
            call()
            sync()
            times[key].append(time.perf_counter() - t0)
    return times


def paired_ratio(lib: list[float], loop: list[float]) -> tuple[float, float, float] | None:
    """Geometric mean of the per-round ratios lib / loop (the two calls of a round ran back to back) and its
    95% Student-t interval over rounds; None with fewer than two rounds."""
    logs = [math.log(a / b) for a, b in zip(lib, loop, strict=True)]
    if len(logs) < 2:
        return None
    mean = statistics.fmean(logs)
    half = float(student_t.ppf(0.975, len(logs) - 1)) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def speed_row(name: str, model, x, y, args) -> dict:
    eps, steps, per100 = args.eps, args.steps, 100 / x.shape[0]
    attack = create_attack(name, model, eps=eps, steps=steps, chunk_size=args.chunk)
    calls = {"loop": lambda: LOOPS[name](model, x, y, eps, steps, 0), "modelsafe": lambda: attack(x, y, seed=0)}
    times = round_times(calls, args.repeats, args.device)
    best = {key: min(t) for key, t in times.items()}
    diff = same_algorithm(name, model, x[:args.check_images].cpu(), y[:args.check_images].cpu(), eps, steps)
    return {"attack": name, "grad evals / image": attack.last_compute.gradient_evaluations_per_image,
            "loop s/100": best["loop"] * per100, "modelsafe s/100": best["modelsafe"] * per100,
            "modelsafe / loop": best["modelsafe"] / best["loop"],
            "paired": paired_ratio(times["modelsafe"], times["loop"]), "float64 max |diff|": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", nargs="+", default=list(LOOPS), choices=list(LOOPS))
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--eps", type=float, default=0.1, help="L-inf budget in [0, 1] units")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--chunk", type=int, default=None, help="modelsafe chunk_size (default: the library's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check-images", type=int, default=4, help="images of the float64 same-algorithm check")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset whose test images are attacked")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    model = init_model("cnn", data, 1.0, 0).eval()
    x = data.test.features(torch.arange(args.images))
    with torch.no_grad():
        y = model(x).argmax(1)
    model, xd, yd = model.to(args.device), x.to(args.device), y.to(args.device)
    print(f"seconds per 100 images (best of {args.repeats}), {args.images} images, T={args.steps}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}, chunk_size {args.chunk or 'default'}\n")
    print("| attack | grad evals / image | loop s/100 | modelsafe s/100 | modelsafe / loop | paired ratio [95% CI] | "
          "float64 max |diff| |")
    print("|---|---|---|---|---|---|---|")
    for name in args.attacks:
        r = speed_row(name, model, xd, yd, args)
        paired = "–" if r["paired"] is None else "{:.3f} [{:.3f}, {:.3f}]".format(*r["paired"])
        print(f"| {name} | {r['grad evals / image']:.0f} | {r['loop s/100']:.2f} | {r['modelsafe s/100']:.2f} | "
              f"{r['modelsafe / loop']:.2f} | {paired} | {r['float64 max |diff|']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
