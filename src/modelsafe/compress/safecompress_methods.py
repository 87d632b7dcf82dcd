"""Every SafeCompress configuration of :data:`~modelsafe.compress.safecompress.CONFIGS` as a compression method
(``bmia-safecompress``, ``wmia-safecompress``, ``mmia-safecompress``, ``mia-safecompress``,
``accuracy-safecompress``, ``safecompress-official``, ``advreg-sparse``, ``advreg-dense``).

Options come from ``CompressOptions.extra``: ``safecompress`` (fields of :class:`SafeCompressConfig`, for every
configuration), ``safecompress:<name>`` (fields for the configuration ``<name>`` only, over the shared ones;
e.g. a selection weight for ``bmia-safecompress`` that must not reach its ``accuracy-safecompress`` ablation)
and ``test_options`` (per safety test).
"""

from __future__ import annotations

from dataclasses import fields

from modelsafe.compress.methods import CompressOptions, CompressResult, register_method
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
