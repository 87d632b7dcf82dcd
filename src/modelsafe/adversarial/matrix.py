"""Transfer-success matrix: every (attack x surrogate x target) success rate in one pass over the data."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from modelsafe import distributed
from modelsafe._checks import (
    check_choice,
    check_images,
    check_labels,
    check_non_negative_int,
    check_positive_int,
)
from modelsafe.adversarial.attack import TransferAttack
from modelsafe.adversarial.compute import ComputeCount
from modelsafe.adversarial.ensemble import Ensemble, Resized
from modelsafe.adversarial.presets import PRESETS, create_attack
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.utils import derive_seed, eval_mode, model_device

AttackFactory = Callable[[nn.Module], TransferAttack]
AdversarialSink = Callable[[str, str, torch.Tensor, torch.Tensor], None]
LABEL_MODES = ("predicted", "true")


@dataclass
class TransferMatrix:
    """Results of :func:`transfer_matrix`.

    ``cells``: one dict per (attack, surrogate, target) with ``success`` (over all images), ``success_on_correct``
    (over the images the target classified correctly when clean), ``n``, ``n_correct`` and ``white_box``
    (the target is the surrogate or one of its ensemble members). ``attacks``: one dict per (attack,
    surrogate) with ``white_box_success`` (on the surrogate itself), ``black_box_mean`` (mean ``success`` over
    the black-box targets) with ``black_box_ci`` (95% percentile bootstrap over images of the per-image
    black-box success rate), their ``..._on_correct`` forms, ``mean_linf``, ``mean_l2`` (perturbation size per image, [0, 1] pixel units),
    ``seconds``, ``seconds_per_100`` and the compute per image, counted where the surrogate ran
    (``gradient_evaluations_per_image``, ``forward_per_image``, ``backward_per_image``; see
    :class:`~modelsafe.adversarial.compute.ComputeCount`). Success means "misclassified" (untargeted) or "classified as the
    target class" (targeted). ``examples[(attack, surrogate)]`` holds (clean, adversarial) image tensors;
    ``black_box_hits[(attack, surrogate)]`` the (n,) share of black-box targets each image fooled, in image
    order (what :meth:`paired_difference` compares)."""

    cells: list[dict]
    attacks: list[dict]
    clean_accuracy: dict[str, float]
    settings: dict
    examples: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)
    black_box_hits: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "clean_accuracy": self.clean_accuracy, "attacks": self.attacks,
                "cells": self.cells}

    def target_names(self) -> list[str]:
        return list(dict.fromkeys(c["target"] for c in self.cells))

    def black_box_mean(self, attack: str, surrogate: str | None = None) -> float:
        rows = [r for r in self.attacks if r["attack"] == attack and surrogate in (None, r["surrogate"])]
        if not rows:
            raise ModelsafeError(f"no results for attack {attack!r}" + (f" on {surrogate!r}" if surrogate else ""))
        return sum(r["black_box_mean"] for r in rows) / len(rows)

    def paired_difference(self, attack: str, baseline: str, surrogate: str, *, resamples: int = 1000,
                          confidence: float = 0.95) -> dict[str, float | list[float]]:
        """Black-box success of ``attack`` minus that of ``baseline`` on ``surrogate``'s images, paired by
        image: ``mean`` (in [-1, 1]) and ``ci``, a percentile bootstrap interval over resampled images of the
        per-image difference (both attacks saw the same images, so image difficulty cancels)."""
        missing = [a for a in (attack, baseline) if (a, surrogate) not in self.black_box_hits]
        if missing:
            raise ModelsafeError(f"no black-box results for {', '.join(map(repr, missing))} on {surrogate!r} "
                                 f"(attacks: {sorted({a for a, _ in self.black_box_hits})})")
        diff = self.black_box_hits[(attack, surrogate)] - self.black_box_hits[(baseline, surrogate)]
        return {"mean": float(diff.mean()), "ci": _bootstrap_ci(diff, resamples, confidence), "n": diff.numel()}


def _bootstrap_ci(values: torch.Tensor, resamples: int = 1000, confidence: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of per-image ``values`` (n,) over resampled images (seeded)."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, values.numel(), (resamples, values.numel()), generator=gen)
    means = values[idx].mean(1)
    tail = (1 - confidence) / 2
    return [float(torch.quantile(means, tail)), float(torch.quantile(means, 1 - tail))]


def _unwrap(m: nn.Module) -> nn.Module:
    while isinstance(m, Resized):
        m = m.model
    return m


def _white_box(surrogate: nn.Module, target: nn.Module) -> bool:
    inner = {id(_unwrap(surrogate))}
    if isinstance(surrogate, Ensemble):
        inner |= {id(_unwrap(m)) for m in surrogate.members}
    return id(_unwrap(target)) in inner


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x.to(model_device(model))).argmax(1).cpu()


def transfer_matrix(attacks: Sequence[str] | Mapping[str, AttackFactory], surrogates: Mapping[str, nn.Module],
                    targets: Mapping[str, nn.Module], data: TensorData | tuple[torch.Tensor, torch.Tensor], *,
                    eps: float = 16 / 255, steps: int | None = None, batch_size: int = 100,
                    chunk_size: int | None = None, quantize: bool = True, labels: str = "predicted",
                    target_classes: Callable[[torch.Tensor], torch.Tensor] | None = None, seed: int = 0,
                    device: str | torch.device | None = None, progress: bool = True,
                    examples: int = 0, on_adversarial: AdversarialSink | None = None,
                    autocast: bool = False) -> TransferMatrix:
    """Attack ``data`` with every attack on every surrogate and test the adversarial images on every target.

    ``attacks``: preset names (built with ``create_attack(name, surrogate, eps, steps, quantize=..., chunk_size=...,
    device=..., autocast=...)``; single-step presets keep one step) or a mapping name -> ``factory(surrogate)``.
    ``surrogates`` / ``targets``: name -> model (targets may include the surrogates: those cells are white-box).
    ``labels``: ``"predicted"`` attacks the surrogate's clean prediction (the S-FGRM protocol), ``"true"`` the
    ground truth; success is always judged against the ground truth. ``target_classes``: a function from
    true labels to target classes makes every attack targeted. Each (attack, surrogate, batch) is seeded with
    ``derive_seed(seed, attack, surrogate, batch index)``. ``examples``: keep the first that many clean and
    adversarial images of the first batch per (attack, surrogate) for figures. ``on_adversarial(attack,
    surrogate, indices, images)`` is called with every batch's adversarial images (n, C, H, W) in [0, 1] and
    their (n,) positions in ``data`` (e.g. to save them). Under ``torchrun`` with several processes the
    batches are shared out (rank r takes batches r, r + W, ...); every batch keeps its seed, so the images are
    those of one process. The counts are gathered and every rank returns the whole matrix; ``on_adversarial``
    is called by the rank that made the batch, and only rank 0 shows progress. ``seconds`` then sums the ranks' attack time (the compute per image, as with one process)."""
    data = _check_matrix_input(surrogates, targets, data, batch_size, examples, labels)
    targeted = target_classes is not None
    factories = _factories(attacks, eps, steps, quantize, chunk_size, targeted, device, autocast)
    built = {(a, s): factories[a](model) for a in factories for s, model in surrogates.items()}
    tally = _Tally(built, surrogates, targets)
    all_models = list({id(m): m for m in [*surrogates.values(), *targets.values()]}.values())
    n = int(data.y.shape[0])
    batches = list(enumerate(range(0, n, batch_size)))[distributed.rank()::distributed.world_size()]
    bar = tqdm(total=len(batches) * len(built), desc="transfer matrix", unit="attack-batch",
               disable=not progress or not distributed.is_main())
    with eval_mode(*all_models), bar:
        for bi, start in batches:
            idx = torch.arange(start, min(start + batch_size, n))
            x = check_images(data.features(idx))
            y = check_labels(data.y[idx], len(idx))
            goal = target_classes(y).long().cpu() if targeted else None
            tally.clean(x, y)
            for (a, s), attack in built.items():
                bar.set_postfix_str(f"{a} on {s}")
                attack_labels = goal if targeted else (y if labels == "true" else None)
                t0 = time.perf_counter()
                adv = attack(x, attack_labels, seed=derive_seed(seed, a, s, bi))
                if adv.is_cuda:
                    torch.cuda.synchronize(adv.device)
                tally.attacked((a, s), bi, x, y, goal, adv, time.perf_counter() - t0,
                               keep=examples if bi == 0 else 0)
                if on_adversarial is not None:
                    on_adversarial(a, s, idx, adv)
                bar.update(1)
    if distributed.active():
        tally.merge(distributed.all_gather_objects(tally.state()))
    cells, rows = tally.results(n)
    settings = {"eps": eps, "steps": steps, "batch_size": batch_size, "chunk_size": chunk_size, "quantize": quantize,
                "labels": labels, "targeted": targeted, "seed": seed, "n_images": n, "autocast": autocast,
                "attacks": list(factories), "surrogates": list(surrogates), "targets": list(targets)}
    return TransferMatrix(cells, rows, {k: v / n for k, v in tally.clean_correct.items()}, settings, tally.kept,
                          tally.black_box_shares())


def _check_matrix_input(surrogates: Mapping, targets: Mapping, data, batch_size: int, examples: int,
                        labels: str) -> TensorData:
    """Bad settings fail here, before any attack; returns ``data`` as a non-empty TensorData."""
    check_positive_int("batch_size", batch_size)
    check_non_negative_int("examples", examples)
    check_choice("labels", labels, LABEL_MODES)
    if not surrogates or not targets:
        raise ModelsafeError("transfer_matrix needs at least one surrogate and one target")
    if not isinstance(data, TensorData):
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ModelsafeError("data must be a TensorData or an (images, labels) pair of tensors")
        data = TensorData(*data)
    if int(data.y.shape[0]) == 0:
        raise ModelsafeError("transfer_matrix got no images")
    return data


def _factories(attacks: Sequence[str] | Mapping[str, AttackFactory], eps: float, steps: int | None, quantize: bool,
               chunk_size: int | None, targeted: bool, device, autocast: bool = False) -> dict[str, AttackFactory]:
    """name -> ``factory(surrogate) -> attack``: the given mapping, or presets built with the shared settings
    (single-step presets keep one step)."""
    if isinstance(attacks, Mapping):
        factories = dict(attacks)
    else:
        def preset(name: str) -> AttackFactory:
            own_steps = None if name in PRESETS and PRESETS.get(name).steps == 1 else steps  # fgsm stays one step
            return lambda model: create_attack(name, model, eps, own_steps, quantize=quantize,
                                               chunk_size=chunk_size, targeted=targeted, device=device,
                                               autocast=autocast)
        factories = {name: preset(name) for name in attacks}
    if not factories:
        raise ModelsafeError("transfer_matrix needs at least one attack")
    return factories


class _Tally:
    """Counts of one transfer matrix as batches go by: clean accuracy per model, per (attack, surrogate)
    white-box success, perturbation norms and seconds, per (attack, surrogate, target) success."""

    def __init__(self, built: dict, surrogates: Mapping[str, nn.Module], targets: Mapping[str, nn.Module]):
        self.built, self.surrogates, self.targets = built, surrogates, targets
        self.counts = {(a, s, t): {"success": 0, "correct": 0, "success_on_correct": 0}
                       for (a, s) in built for t in targets}
        self.per_attack = {key: {"white_box": 0, "white_box_correct": 0, "linf": 0.0, "l2": 0.0, "seconds": 0.0,
                                 "compute": ComputeCount()} for key in built}
        self.clean_correct = {name: 0 for name in [*targets, *surrogates]}
        self.per_image: dict[tuple[str, str], dict[int, torch.Tensor]] = {key: {} for key in built}  # by batch
        self.kept: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._clean: dict[str, torch.Tensor] = {}

    def clean(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._clean = {name: _predict(m, x) for name, m in {**self.targets, **self.surrogates}.items()}
        for name in self.clean_correct:
            self.clean_correct[name] += int((self._clean[name] == y).sum())

    def attacked(self, key: tuple[str, str], batch: int, x: torch.Tensor, y: torch.Tensor,
                 goal: torch.Tensor | None, adv: torch.Tensor, seconds: float, keep: int) -> None:
        a, s = key
        stats = self.per_attack[key]
        stats["seconds"] += seconds
        stats["compute"] += self.built[key].last_compute
        delta = (adv - x).flatten(1).double()
        stats["linf"] += float(delta.abs().amax(1).sum())
        stats["l2"] += float(delta.norm(dim=1).sum())
        own = _predict(self.surrogates[s], adv)
        own_hit = (own == goal) if goal is not None else (own != y)
        stats["white_box"] += int(own_hit.sum())
        stats["white_box_correct"] += int((own_hit & (self._clean[s] == y)).sum())
        if keep:
            self.kept[key] = (x[:keep].cpu(), adv[:keep].cpu())
        black_box = torch.zeros(x.shape[0], dtype=torch.float64)
        for t, model in self.targets.items():
            pred = _predict(model, adv)
            hit = (pred == goal) if goal is not None else (pred != y)
            if not _white_box(self.surrogates[s], model):
                black_box += hit.double()
            ok = self._clean[t] == y
            c = self.counts[(a, s, t)]
            c["success"] += int(hit.sum())
            c["correct"] += int(ok.sum())
            c["success_on_correct"] += int((hit & ok).sum())
        self.per_image[key][batch] = black_box

    def state(self) -> dict:
        """The counts so far (picklable, CPU tensors), for :meth:`merge` on another process."""
        return {"counts": self.counts, "per_attack": self.per_attack, "clean_correct": self.clean_correct,
                "per_image": self.per_image, "kept": self.kept}

    def merge(self, states: Sequence[dict]) -> None:
        """Replace the counts by the sums of ``states`` (every process's :meth:`state`, this one's included)."""
        self.__init__(self.built, self.surrogates, self.targets)
        for st in states:
            for key, c in st["counts"].items():
                for k, v in c.items():
                    self.counts[key][k] += v
            for key, stats in st["per_attack"].items():
                for k, v in stats.items():
                    self.per_attack[key][k] += v
            for name, v in st["clean_correct"].items():
                self.clean_correct[name] += v
            for key, batches in st["per_image"].items():
                self.per_image[key].update(batches)
            self.kept.update(st["kept"])

    def _black_box_hits(self, key: tuple[str, str]) -> torch.Tensor:
        """(n,) black-box targets fooled per image, in image order."""
        return torch.cat([hits for _, hits in sorted(self.per_image[key].items())])

    def black_box_shares(self) -> dict[tuple[str, str], torch.Tensor]:
        """(attack, surrogate) -> (n,) share of its black-box targets each image fooled (absent: none)."""
        shares = {}
        for (a, s) in self.built:
            black = [t for t in self.targets if not _white_box(self.surrogates[s], self.targets[t])]
            if black:
                shares[(a, s)] = self._black_box_hits((a, s)).double() / len(black)
        return shares

    def results(self, n: int) -> tuple[list[dict], list[dict]]:
        """(cells: one per attack, surrogate, target; rows: one per attack and surrogate) over ``n`` images."""
        cells, rows = [], []
        for (a, s), attack in self.built.items():
            bb, bb_correct = [], []
            for t in self.targets:
                c = self.counts[(a, s, t)]
                wb = _white_box(self.surrogates[s], self.targets[t])
                on_correct = c["success_on_correct"] / c["correct"] if c["correct"] else None
                cells.append({"attack": a, "surrogate": s, "target": t, "white_box": wb,
                              "success": c["success"] / n, "success_on_correct": on_correct, "n": n,
                              "n_correct": c["correct"]})
                if not wb:
                    bb.append(c["success"] / n)
                    if on_correct is not None:
                        bb_correct.append(on_correct)
            st = self.per_attack[(a, s)]
            correct = self.clean_correct[s]
            rows.append({"attack": a, "surrogate": s, "white_box_success": st["white_box"] / n,
                         "white_box_success_on_correct": st["white_box_correct"] / correct if correct else None,
                         "black_box_mean": sum(bb) / len(bb) if bb else None,
                         "black_box_ci": _bootstrap_ci(self._black_box_hits((a, s)) / len(bb)) if bb else None,
                         "black_box_mean_on_correct": sum(bb_correct) / len(bb_correct) if bb_correct else None,
                         "mean_linf": st["linf"] / n, "mean_l2": st["l2"] / n, "seconds": st["seconds"],
                         "seconds_per_100": 100 * st["seconds"] / n, **st["compute"].per_image(),
                         "spec": attack.spec.describe()})
        return cells, rows
