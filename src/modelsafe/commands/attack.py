"""``modelsafe attack``: transfer attacks from trained run folders; writes a transfer-success matrix."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated

import typer

from modelsafe.commands._options import ConfigOpt, DataRootOpt, DeviceOpt, ProgressOpt, SeedOpt
from modelsafe.errors import ModelsafeError


def parse_eps(text: str) -> float:
    """``"16/255"`` or ``"0.0627"`` -> float in [0, 1]."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ModelsafeError(f"eps must be a number or a fraction like 16/255, got {text!r}") from None
    if not 0 <= value <= 1:
        raise ModelsafeError(f"eps must lie in [0, 1] (pixel units), got {text} = {value:.4g}")
    return value


def _names(paths: list[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = Path(p).name or str(p)
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def attack(
    surrogate: Annotated[list[str], typer.Option(
        "--surrogate", "-s", help="Run folder (from `modelsafe train`) of a surrogate model; repeatable.")],
    target: Annotated[list[str] | None, typer.Option(
        "--target", "-t", help="Run folder of a model to transfer to; repeatable. The surrogates are always "
                               "tested too (their cells are white-box).")] = None,
    attacks: Annotated[str, typer.Option(help="Comma-separated attack presets, or 'all' (see docs/attacks.md).")]
    = "mi-fgsm,smi-fgrm",
    eps: Annotated[str, typer.Option(help="L-infinity budget in [0, 1] pixel units, e.g. 16/255 or 0.1.")] = "16/255",
    steps: Annotated[int | None, typer.Option(help="Iterations (default: the preset's, 10).")] = None,
    ensemble: Annotated[bool, typer.Option(help="Attack one logit-averaging ensemble of all surrogates instead "
                                                "of each surrogate separately.")] = False,
    memory_saving: Annotated[bool, typer.Option(help="Ensemble gradients one member at a time (exact, slower, "
                                                     "less memory).")] = False,
    images: Annotated[int, typer.Option(help="Number of test-split images to attack (the first ones).")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Images per attack call.")] = 100,
    chunk_size: Annotated[int | None, typer.Option(
        help="Images per model call inside an attack (default: 100 on CPU, everything at once on GPU).")] = None,
    labels: Annotated[str, typer.Option(help="Labels to attack: 'predicted' (surrogate's clean prediction, the "
                                             "S-FGRM protocol) or 'true'.")] = "predicted",
    quantize: Annotated[bool, typer.Option("--quantize/--no-quantize",
                                           help="Round adversarial images to 8 bits (like saved PNGs).")] = True,
    examples: Annotated[int, typer.Option(help="Images in the example grid (0: no grid).")] = 8,
    out: Annotated[str | None, typer.Option(help="Output folder (default runs/attack-<dataset>-s<seed>).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    data_root: DataRootOpt = None,
    progress: ProgressOpt = True,
    config: ConfigOpt = None,
) -> None:
    """Run transfer attacks made on the surrogate(s) against every model and write transfer.json,
    transfer.csv, transfer.md and examples.png (clean / adversarial / perturbation)."""
    del config
    from modelsafe.adversarial import Ensemble, example_grid, list_attacks, transfer_matrix
    from modelsafe.report.io import write_csv, write_json, write_text
    from modelsafe.targets import load_target
    from modelsafe.utils import resolve_device

    eps_value = parse_eps(eps)
    names = list_attacks() if attacks.strip() == "all" else [a.strip() for a in attacks.split(",") if a.strip()]
    if not names:
        raise ModelsafeError("--attacks names no attack")
    if images < 1:
        raise ModelsafeError(f"--images must be >= 1, got {images}")
    dev = resolve_device(device)
    surrogate_paths, target_paths = list(surrogate), [t for t in (target or []) if t not in surrogate]
    if not surrogate_paths:
        raise ModelsafeError("give at least one --surrogate run folder")
    loaded, dataset = {}, None
    for name, path in zip(_names(surrogate_paths + target_paths), surrogate_paths + target_paths):
        model, data, _, cfg = load_target(path, device=dev, data_root=data_root)
        if dataset is not None and data.info.name != dataset.info.name:
            raise ModelsafeError(f"run {path} uses dataset {data.info.name!r}, the others {dataset.info.name!r}")
        dataset = data
        loaded[name] = (path, model, cfg)
    surrogate_names = list(loaded)[:len(surrogate_paths)]
    models = {name: m for name, (_, m, _) in loaded.items()}
    if ensemble and len(surrogate_names) > 1:
        surrogates = {"ensemble(" + "+".join(surrogate_names) + ")":
                      Ensemble([models[n] for n in surrogate_names], memory_saving=memory_saving)}
    else:
        surrogates = {n: models[n] for n in surrogate_names}
    test = dataset.test
    n = min(images, len(test))
    subset = test.subset(range(n))
    result = transfer_matrix(names, surrogates, models, subset, eps=eps_value, steps=steps, batch_size=batch_size,
                             chunk_size=chunk_size, quantize=quantize, labels=labels, seed=seed, device=dev,
                             progress=progress, examples=min(examples, n, batch_size))

    folder = Path(out or Path("runs") / f"attack-{dataset.info.name}-s{seed}")
    report = {**result.to_dict(), "dataset": dataset.info.name,
              "runs": {name: {"path": str(p), "model": c.get("model"), "width": c.get("width")}
                       for name, (p, _, c) in loaded.items()}}
    write_json(folder / "transfer.json", report)
    per_attack = {(r["attack"], r["surrogate"]): r for r in result.attacks}
    write_csv(folder / "transfer.csv", [
        {**c, **{k: v for k, v in per_attack[(c["attack"], c["surrogate"])].items() if k != "spec"}}
        for c in result.cells])
    clean = "\n".join(f"| {k} | {100 * v:.1f} |" for k, v in result.clean_accuracy.items())
    text = (f"# Transfer attacks on {dataset.info.name}\n\n{n} test images, eps = {eps} ({eps_value:.4f}), "
            f"labels = {labels}, quantize = {quantize}, seed = {seed}. Cells: attack success rate (%); "
            f"`*` = white-box.\n\n## Success over all images\n\n{result.markdown('all')}\n"
            f"## Success over images the target classified correctly\n\n{result.markdown('correct')}\n"
            f"## Clean accuracy (%)\n\n| model | accuracy |\n|---|---:|\n{clean}\n")
    write_text(folder / "transfer.md", text)
    if examples and result.examples:
        first = next(iter(surrogates))
        keys = [(a, first) for a in names if (a, first) in result.examples]
        clean_imgs = result.examples[keys[0]][0]
        example_grid(clean_imgs, [result.examples[k][1] for k in keys], [k[0] for k in keys],
                     folder / "examples.png", eps=eps_value, title=f"surrogate {first}, eps {eps}")
    typer.echo(result.markdown("all"))
    typer.echo(f"results in {folder}")
