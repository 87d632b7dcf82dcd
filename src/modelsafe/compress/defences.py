"""The baseline defences against membership inference in the method registry, beside the DST and pruning
baselines of :mod:`modelsafe.compress.methods` (the SafeCompress configurations are registered by
:mod:`modelsafe.compress.safecompress_methods`):

* ``dp-sgd`` (dense) and ``dp-sgd-sparse`` (RigL masks re-applied after each private step), through Opacus;
* ``label-smoothing``: RigL sparse training with smoothed targets (ε = 0.1 by default).

Options come from ``CompressOptions.extra``: ``dp`` (fields of :class:`DPConfig`), ``label_smoothing``.
"""

from __future__ import annotations

from dataclasses import replace

from modelsafe import distributed
from modelsafe.compress.dp import DPConfig, fit_private
from modelsafe.compress.methods import CompressOptions, CompressResult, _dst, _finish, register_method
from modelsafe.errors import ModelsafeError


def _dp_config(options: CompressOptions) -> DPConfig:
    if distributed.world_size() > 1:
        raise ModelsafeError("DP-SGD does not run on several processes (its per-sample clipping and noise are "
                             "not data-parallel here); run it without torchrun")
    if options.train.autocast:
        raise ModelsafeError("DP-SGD does not run under autocast (its per-sample gradient norms would be clipped "
                             "in bfloat16); train it with autocast=False")
    try:
        return DPConfig(**dict(options.extra.get("dp", {})))
    except TypeError as exc:
        raise ModelsafeError(f"bad DP-SGD options {dict(options.extra.get('dp', {}))}: {exc}") from None


@register_method("dp-sgd", "dense DP-SGD (Abadi et al. 2016) through Opacus; reports epsilon", check=_dp_config,
                 extras=("dp",))
def dp_sgd(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult:
    result = fit_private(model, train_data, options.train, _dp_config(options), seed=seed, device=device,
                         run_dir=run_dir, progress=progress)
    return CompressResult(model, {"history": result["history"], "density": 1.0, "epsilon": result["epsilon"],
                                  "delta": result["delta"]})


@register_method("dp-sgd-sparse", "DP-SGD with RigL dynamic sparsity (masks re-applied after each private step)",
                 check=_dp_config, extras=("dp",))
def dp_sgd_sparse(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult:
    callback = _dst(options, seed, prune="magnitude", grow="gradient")
    result = fit_private(model, train_data, options.train, _dp_config(options), callbacks=[callback], seed=seed,
                         device=device, run_dir=run_dir, progress=progress)
    info = _finish(callback, result["history"])
    return CompressResult(model, {**info, "epsilon": result["epsilon"], "delta": result["delta"]})


@register_method("label-smoothing", "RigL sparse training with label smoothing (default 0.1)",
                 extras=("label_smoothing",))
def label_smoothing(model, train_data, options, *, seed, device, run_dir, progress) -> CompressResult:
    from modelsafe.training import fit

    smoothing = float(options.extra.get("label_smoothing", 0.1))
    callback = _dst(options, seed, prune="magnitude", grow="gradient")
    history = fit(model, train_data, replace(options.train, label_smoothing=smoothing), callbacks=[callback],
                  seed=seed, device=device, run_dir=run_dir, progress=progress)
    return CompressResult(model, _finish(callback, history))
