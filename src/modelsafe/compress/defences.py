"""Compression methods that defend against membership inference, in the method registry beside the DST and
pruning baselines of :mod:`modelsafe.compress.methods`:

* every SafeCompress configuration of :data:`~modelsafe.compress.safecompress.CONFIGS`
  (``bmia-safecompress``, ``wmia-safecompress``, ``mmia-safecompress``, ``mia-safecompress``,
  ``safecompress-official``, ``advreg-sparse``, ``advreg-dense``);
* ``dp-sgd`` (dense) and ``dp-sgd-sparse`` (RigL masks re-applied after each private step), through Opacus;
* ``label-smoothing``: RigL sparse training with smoothed targets (ε = 0.1 by default).

Options specific to a method come from ``CompressOptions.extra``: ``safecompress`` (fields of
:class:`SafeCompressConfig`, for every SafeCompress configuration), ``safecompress:<name>`` (fields for the
configuration ``<name>`` only, over the shared ones; e.g. a selection weight for ``bmia-safecompress`` that
must not reach its ``accuracy-safecompress`` ablation), ``test_options`` (per safety test), ``dp`` (fields of
:class:`DPConfig`), ``label_smoothing``.
"""

from __future__ import annotations

from dataclasses import fields, replace

from modelsafe.compress.dp import DPConfig, fit_private
from modelsafe.compress.methods import CompressOptions, CompressResult, _dst, _finish, register_method
from modelsafe.compress.safecompress import CONFIGS, SafeCompressConfig, run_safecompress
from modelsafe.errors import ModelsafeError


def _safecompress_config(name: str, options: CompressOptions) -> SafeCompressConfig:
    settings = {"update_interval": options.update_interval, "drop_fraction": options.drop_fraction,
                "final_drop_fraction": options.final_drop_fraction, "distribution": options.distribution,
                "density": options.density, "dense_first": options.dense_first}
    if name == "advreg-dense":
        settings.pop("density")
    own = options.extra.get(f"safecompress:{name}", options.extra.get(f"safecompress:{name.replace('-', '_')}", {}))
    given = {**options.extra.get("safecompress", {}), **own}
    unknown = sorted(set(given) - {f.name for f in fields(SafeCompressConfig)})
    if unknown:
        raise ModelsafeError(f"unknown SafeCompress option(s) {', '.join(unknown)}; valid: "
                             + ", ".join(f.name for f in fields(SafeCompressConfig)))
    values = {**settings, **CONFIGS[name], **given}
    if name != "safecompress-official":
        values.setdefault("update_end", options.end)
    return SafeCompressConfig(**values)


def _register_safecompress(name: str) -> None:
    @register_method(name, f"SafeCompress configuration {name!r} (see modelsafe.compress.safecompress)",
                     needs_split=True, check=lambda options: _safecompress_config(name, options),
                     extras=("safecompress", f"safecompress:{name}", f"safecompress:{name.replace('-', '_')}",
                             "test_options"))
    def run(model, train_data, options, *, seed, device, run_dir, progress, dataset, split) -> CompressResult:
        del train_data  # the members come from the split
        result = run_safecompress(model, dataset, split, _safecompress_config(name, options), options.train,
                                  seed=seed, device=device, run_dir=run_dir, progress=progress,
                                  test_options=options.extra.get("test_options"))
        sparsity = result["sparsity"]
        return CompressResult(model, {"history": result["history"], "density": sparsity["density"],
                                      "nnz": sparsity["nnz"], "itop_rate": sparsity["itop_rate"],
                                      "selections": result["selections"], "config": result["config"]})


for _name in CONFIGS:
    _register_safecompress(_name)


def _dp_config(options: CompressOptions) -> DPConfig:
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
