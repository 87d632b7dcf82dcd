"""Compression methods by name: an explicit registry that the CLI and benchmarks run, and that other methods
(SafeCompress) join with :func:`register_method`.

A method is a function

    fn(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult(model, info)

that trains (or prunes and fine-tunes) ``model`` on ``train_data`` (:class:`~modelsafe.data.TensorData`)
according to ``options`` (:class:`CompressOptions`; methods registered elsewhere may take a subclass or read
``options.extra``) and returns the compressed model, in eval mode with no hooks attached and its masked
weights exactly zero, plus a JSON-able ``info`` dict. ``run_dir`` (optional) holds resumable checkpoints.
A method registered with ``needs_split=True`` (one that simulates attackers, like SafeCompress) also gets
keyword arguments ``dataset`` (:class:`~modelsafe.data.Dataset`) and ``split``
(:class:`~modelsafe.data.MembershipSplit`), which :func:`compress` then requires.

Built-in baselines (all at the same global density of the sparse layers):

==========  ==========================================================================================
``dense``   ordinary dense training (the reference point; ``density`` is ignored)
``static``  ERK masks fixed at initialisation
``set``     SET-ERK: prune magnitude, grow random, drop fraction cosine 0.5→0.005, updates until 75%
``rigl``    RigL-ERK: prune magnitude, grow by dense gradient, same schedule
``itop``    RigL-ITOP: as ``rigl`` but updates continue to the end of training (the ITOP/SafeCompress code)
``gmp``     gradual magnitude pruning, cubic schedule (Zhu & Gupta) from 10% to 75% of training
``oneshot`` dense training, magnitude pruning to the target counts, fine-tuning with the mask fixed
==========  ==========================================================================================
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from modelsafe._checks import check_density, check_fraction, check_positive_int
from modelsafe.data.info import Dataset, TensorData
from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.registry import Registry
from modelsafe.sparse import DynamicSparsity, LayerSelection, SparsityCallback, count_flops
from modelsafe.sparse.distribution import DISTRIBUTIONS
from modelsafe.training import TrainConfig, fit
from modelsafe.utils import derive_seed, model_device, resolve_device


@dataclass(frozen=True)
class CompressOptions:
    """Settings shared by the compression methods.

    ``train``: optimisation (epochs, lr, optimizer...). ``density``: fraction of conv/linear weights kept.
    ``distribution``: per-layer densities (erk, er, uniform). ``update_interval``: optimizer steps between
    mask updates (DST) or pruning steps (gmp). ``drop_fraction``: initial drop fraction of DST updates (cosine
    decay to ``final_drop_fraction``). ``end``: fraction of training after which DST updates stop (itop
    ignores it: 1.0). ``dense_first``: keep the first layer dense. ``prune_begin``/``prune_end``: the gmp
    pruning window. ``finetune_epochs``: oneshot fine-tuning (default: half of ``train.epochs``, at least 1).
    ``extra``: free-form options for methods registered by other modules."""

    density: float = 0.05
    train: TrainConfig = field(default_factory=TrainConfig)
    distribution: str = "erk"
    update_interval: int = 100
    drop_fraction: float = 0.5
    final_drop_fraction: float = 0.005
    end: float = 0.75
    dense_first: bool = False
    prune_begin: float = 0.1
    prune_end: float = 0.75
    finetune_epochs: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_density(self.density)
        if self.distribution not in DISTRIBUTIONS:
            raise UnknownNameError("density distribution", self.distribution, list(DISTRIBUTIONS))
        check_positive_int("update_interval", self.update_interval)
        check_fraction("drop_fraction", self.drop_fraction)
        check_fraction("final_drop_fraction", self.final_drop_fraction)
        check_fraction("end", self.end, closed_low=False)
        check_fraction("prune_begin", self.prune_begin, closed_high=False)
        check_fraction("prune_end", self.prune_end, closed_low=False)
        if self.finetune_epochs is not None:
            check_positive_int("finetune_epochs", self.finetune_epochs)

    def to_dict(self) -> dict:
        return asdict(self)


class CompressResult(NamedTuple):
    model: nn.Module
    info: dict


MethodFn = Callable[..., CompressResult]


@dataclass(frozen=True)
class MethodEntry:
    name: str
    description: str
    fn: MethodFn
    needs_split: bool = False  # fn also takes dataset= and split= (the membership split)
    check: Callable[[CompressOptions], object] | None = None  # validates the method's options before any work
    extras: tuple[str, ...] | None = None  # the keys of options.extra that fn reads (None: unknown, all may)


METHODS: Registry[MethodEntry] = Registry("compression method")


def register_method(name: str, description: str, *, needs_split: bool = False,
                    check: Callable[[CompressOptions], object] | None = None,
                    extras: Sequence[str] | None = None) -> Callable[[MethodFn], MethodFn]:
    """Decorator adding ``fn(model, train_data, options, *, seed, device, run_dir, progress)`` under ``name``
    (with ``needs_split``, ``fn`` also takes ``dataset`` and ``split`` keywords). ``check(options)``, if given,
    raises :class:`ModelsafeError` on options the method cannot run with. ``extras``: the keys of
    ``options.extra`` the method reads (default: unknown), so that a comparison knows which options can change
    its result. A name already registered is refused at once."""
    frozen = None if extras is None else tuple(extras)
    return METHODS.register(name, wrap=lambda fn: MethodEntry(name, description, fn, needs_split, check, frozen))


def list_methods(pattern: str | None = None) -> list[str]:
    """Compression method names, sorted; those matching the shell-style ``pattern`` when given."""
    return METHODS.names(pattern)


def get_method(name: str) -> MethodEntry:
    """The entry of method ``name`` (description, function, what it needs); :class:`UnknownNameError` if
    unknown."""
    return METHODS.get(name)


def check_method(name: str, options: CompressOptions) -> MethodEntry:
    """The method called ``name``, after checking that it can run with ``options`` (nothing is trained)."""
    entry = get_method(name)
    if entry.check is not None:
        entry.check(options)
    return entry


def check_extras(methods: Sequence[str], options: CompressOptions) -> None:
    """Refuse keys of ``options.extra`` (``--option``) that none of ``methods`` reads, so a mistyped option
    is never silently ignored. Methods that do not declare what they read accept anything."""
    entries = [get_method(m) for m in methods]
    if not options.extra or any(e.extras is None for e in entries):
        return
    read = sorted({k for e in entries for k in e.extras})
    unknown = sorted(set(options.extra) - set(read))
    if unknown:
        known = ", ".join(read) if read else "none"
        raise ModelsafeError(f"option(s) {', '.join(unknown)} not read by {', '.join(methods)} (options they read: "
                             f"{known})")


def compress(method: str, model: nn.Module, train_data: TensorData, options: CompressOptions | None = None, *,
             seed: int = 0, device: str | torch.device | None = None, run_dir: str | os.PathLike | None = None,
             progress: bool = True, dataset: Dataset | None = None,
             split: MembershipSplit | None = None) -> CompressResult:
    """Run the method called ``method``. ``dataset`` and ``split`` are passed to methods registered with
    ``needs_split`` (and required by them), ignored by the others. ``info`` always carries ``method``,
    ``seconds`` (wall time), ``params`` (``total`` and ``nonzero``) and ``flops`` (dense and sparse, per
    sample, conv/linear weights)."""
    options = options or CompressOptions()
    entry = check_method(method, options)
    if len(train_data) == 0:
        raise ModelsafeError("train_data is empty")
    extra = {}
    if entry.needs_split:
        if dataset is None or split is None:
            raise ModelsafeError(f"compression method {method!r} needs the dataset and its membership split "
                                 "(dataset=, split=)")
        extra = {"dataset": dataset, "split": split}
    start = time.perf_counter()
    model, info = entry.fn(model, train_data, options, seed=seed, device=resolve_device(device),
                           run_dir=None if run_dir is None else Path(run_dir), progress=progress, **extra)
    example = train_data.features(slice(0, 1)).to(model_device(model))
    info = {"method": method, **info, "seconds": time.perf_counter() - start, "flops": count_flops(model, example)}
    info["flops"].pop("layers")
    info["params"] = _nonzero_params(model)
    return CompressResult(model.eval(), info)


def _nonzero_params(model: nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return {"total": total, "nonzero": nonzero}


def _sub(run_dir: Path | None, name: str) -> Path | None:
    return None if run_dir is None else run_dir / name


def _train(model, data, train: TrainConfig, callbacks, seed, device, run_dir, progress) -> list[dict]:
    return fit(model, data, train, callbacks=callbacks, seed=seed, device=device, run_dir=run_dir,
               progress=progress)


def _finish(callback: SparsityCallback, history: list[dict]) -> dict:
    """Detach the engine's hooks and report what it did."""
    engine = callback.engine
    engine.remove()
    summary = engine.summary()
    info = {"history": history, "density": summary["density"], "nnz": summary["nnz"],
            "layer_densities": summary["layer_densities"], "mask_seconds": sum(summary["seconds"].values())}
    for key in ("itop_rate", "updates", "prunings"):
        if key in summary:
            info[key] = summary[key]
    return info


def mask_seed(seed: int) -> int:
    """The seed of the initial masks and random growth for run seed ``seed``: the same for every sparse method
    (DST baselines and SafeCompress), so that every comparison of a seed starts from identical masks."""
    return derive_seed(seed, "masks")


def _dst(options: CompressOptions, seed: int, **rule) -> SparsityCallback:
    settings = {"distribution": options.distribution, "layers": LayerSelection(dense_first=options.dense_first),
                "update_interval": options.update_interval, "drop_fraction": options.drop_fraction,
                "final_drop_fraction": options.final_drop_fraction, "end": options.end,
                "seed": mask_seed(seed)}
    return SparsityCallback.dynamic(options.density, **{**settings, **rule})


@register_method("dense", "dense training, no compression (reference)", extras=())
def dense(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult:
    history = _train(model, train_data, options.train, [], seed, device, run_dir, progress)
    return CompressResult(model, {"history": history, "density": 1.0})


def _dst_method(**rule) -> MethodFn:
    """A DST baseline: sparse training with the update rule ``rule`` (settings of :func:`_dst`)."""

    def run(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult:
        callback = _dst(options, seed, **rule)
        history = _train(model, train_data, options.train, [callback], seed, device, run_dir, progress)
        return CompressResult(model, _finish(callback, history))

    return run


# the DST baselines differ only in their update rule: one row each
for _row in (
    MethodEntry("static", "sparse training with masks fixed at initialisation (ERK by default)",
                _dst_method(update_interval=None), extras=()),
    MethodEntry("set", "SET: prune by magnitude, regrow at random (Mocanu et al. 2018)",
                _dst_method(prune="magnitude", grow="random"), extras=()),
    MethodEntry("rigl", "RigL: prune by magnitude, regrow by dense gradient (Evci et al. 2020)",
                _dst_method(prune="magnitude", grow="gradient"), extras=()),
    MethodEntry("itop", "RigL-ITOP: RigL with updates to the end of training (Liu et al. 2021)",
                _dst_method(prune="magnitude", grow="gradient", end=1.0), extras=()),
):
    METHODS.register(_row.name, _row)


@register_method("gmp", "gradual magnitude pruning, cubic schedule (Zhu & Gupta 2017)", extras=())
def gmp(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult:
    callback = SparsityCallback.gradual(options.density, begin=options.prune_begin, end=options.prune_end,
                                        interval=options.update_interval, distribution=options.distribution,
                                        dense_first=options.dense_first)
    history = _train(model, train_data, options.train, [callback], seed, device, run_dir, progress)
    return CompressResult(model, _finish(callback, history))


@register_method("oneshot", "dense training, one-shot magnitude pruning, fine-tuning with the mask fixed", extras=())
def oneshot(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult:
    dense_history = _train(model, train_data, options.train, [], seed, device, _sub(run_dir, "dense"), progress)
    finetune = replace(options.train, epochs=options.finetune_epochs or max(1, options.train.epochs // 2))
    callback = SparsityCallback(lambda m, opt, steps: DynamicSparsity(
        m, opt, options.density, update_interval=None, init="magnitude", distribution=options.distribution,
        layers=LayerSelection(dense_first=options.dense_first)))
    history = _train(model, train_data, finetune, [callback], derive_seed(seed, "finetune"), device,
                     _sub(run_dir, "finetune"), progress)
    info = _finish(callback, history)
    info.update(dense_history=dense_history, finetune_epochs=finetune.epochs)
    return CompressResult(model, info)
