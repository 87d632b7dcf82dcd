"""``modelsafe attack``: transfer attacks between models given as run folders (from ``modelsafe train``) or as
``timm:<name>`` / ``torchvision:<name>`` specs; writes a transfer-success matrix."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelsafe.commands._options import (
    ConfigOpt,
    DataRootOpt,
    DatasetOptionOpt,
    DeviceOpt,
    ProgressOpt,
    SeedOpt,
    parse_key_values,
)
from modelsafe.errors import ModelsafeError

if TYPE_CHECKING:
    import torch

    from modelsafe.data import Dataset
    from modelsafe.models.adapters import ExternalModel

MODEL_PREFIXES = ("timm:", "torchvision:")
DEFAULT_IMAGES = 1000


def parse_eps(text: str) -> float:
    """``"16/255"`` or ``"0.0627"`` -> float in [0, 1]."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ModelsafeError(f"eps must be a number or a fraction like 16/255, got {text!r}") from None
    if not 0 <= value <= 1:
        raise ModelsafeError(f"eps must lie in [0, 1] (pixel units), got {text} = {value:.4g}")
    return value


def is_model_spec(value: str) -> bool:
    """True for ``timm:<name>`` / ``torchvision:<name>``, False for a run folder. Raises for ``<prefix>:...`` with
    another prefix unless it is an existing path (a mistyped prefix would otherwise read as a missing folder)."""
    if value.startswith(MODEL_PREFIXES):
        return True
    prefix, sep, _ = value.partition(":")
    if sep and not Path(value).exists():
        raise ModelsafeError(f"{value!r} is no run folder, and {prefix + ':'!r} is no model prefix: give a run "
                             f"folder from `modelsafe train` or a model spec timm:<name> or torchvision:<name>")
    return False


def load_model_spec(spec: str, data: Dataset, *, pretrained: bool, image_size: int | None, seed: int,
                    device: torch.device) -> ExternalModel:
    """Build ``timm:<name>`` / ``torchvision:<name>`` for ``data``'s classes and channels, in eval mode on
    ``device``; random weights are drawn from ``seed``. Refuses pretrained weights whose head has another class
    count than ``data`` (timm would silently swap in a random head)."""
    from modelsafe.targets import init_model

    model = init_model(spec, data, 1.0, seed, image_size=image_size, pretrained=pretrained)
    check_head(model, data, pretrained)
    return model.to(device).eval()


def check_head(model: ExternalModel, data: Dataset, pretrained: bool) -> None:
    """Raise if ``pretrained`` and the timm network's pretrained config has another class count than ``data``
    (torchvision refuses that itself when building)."""
    trained = getattr(model.net, "pretrained_cfg", {}).get("num_classes") if pretrained else None
    if trained is not None and trained != data.info.num_classes:
        raise ModelsafeError(
            f"{model.name} was pretrained on {trained} classes but dataset {data.info.name!r} has "
            f"{data.info.num_classes}, so its classifier would be random; use a {trained}-class dataset "
            "(imagenet-compatible for ImageNet weights) or --no-pretrained")


def _names(paths: list[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = p if p.startswith(MODEL_PREFIXES) else Path(p).name or str(p)
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def _split_models(values: list[str], pretrained: bool, image_size: int | None, dataset: str | None,
                  dataset_option: list[str] | None) -> tuple[set[str], list[str]]:
    """(model specs, run folders) among ``values``, after checking the options that depend on which is given."""
    from modelsafe._checks import check_positive_int

    specs = {v for v in values if is_model_spec(v)}
    folders = [v for v in values if v not in specs]
    if not specs and (pretrained or image_size is not None):
        raise ModelsafeError("--pretrained and --image-size apply to timm:/torchvision: model specs only")
    if image_size is not None:
        check_positive_int("--image-size", image_size)
    if not folders and dataset is None:
        raise ModelsafeError("all models are timm:/torchvision: specs, so give the data to attack: --dataset "
                             "(e.g. --dataset imagenet-compatible --data-root path/to/images)")
    if folders and dataset_option:
        raise ModelsafeError("--dataset-option cannot be combined with run folders: they record their dataset's "
                             "options")
    return specs, folders


def _load_runs(folders: list[str], dataset: str | None, dev, data_root: str | None) -> tuple:
    """(dataset shared by the run folders or None, {path: (model, description)})."""
    from modelsafe.targets import load_target

    data, runs = None, {}
    for path in folders:
        model, run_data, _, cfg = load_target(path, device=dev, data_root=data_root)
        expected, source = (data.info.name, "the other runs use") if data else (dataset, "--dataset says")
        if expected is not None and run_data.info.name != expected:
            raise ModelsafeError(f"run {path} uses dataset {run_data.info.name!r}, but {source} {expected!r}")
        data = run_data
        runs[path] = (model, {"path": path, "model": cfg.get("model"), "width": cfg.get("width")})
    return data, runs


def _build_models(values: list[str], specs: set[str], runs: dict, data: Dataset, pretrained: bool,
                  image_size: int | None, seed: int, dev) -> tuple[dict, dict]:
    """({name: model}, {name: description}) for every --surrogate/--target, in order."""
    models, described = {}, {}
    for name, value in zip(_names(values), values):
        if value in specs:
            model = load_model_spec(value, data, pretrained=pretrained, image_size=image_size, seed=seed, device=dev)
            models[name], described[name] = model, {"model": value, "pretrained": pretrained,
                                                    "input_size": list(model.input_size)}
        else:
            models[name], described[name] = runs[value]
    return models, described


ATTACK_FILES = ("transfer.json", "transfer.csv", "transfer.md", "examples.png")


def _write_results(folder: Path, result, dataset: str, described: dict, names: list[str], surrogates: list[str],
                   n: int, settings: str, eps_value: float, eps: str, examples: int) -> None:
    """transfer.json / .csv / .md and the example grid of one attack run."""
    from modelsafe.adversarial import example_grid
    from modelsafe.report.io import write_csv, write_json, write_text

    write_json(folder / "transfer.json", {**result.to_dict(), "dataset": dataset, "models": described})
    per_attack = {(r["attack"], r["surrogate"]): r for r in result.attacks}
    write_csv(folder / "transfer.csv", [
        {**c, **{k: v for k, v in per_attack[(c["attack"], c["surrogate"])].items() if k != "spec"}}
        for c in result.cells])
    clean = "\n".join(f"| {k} | {100 * v:.1f} |" for k, v in result.clean_accuracy.items())
    text = (f"# Transfer attacks on {dataset}\n\n{n} test images, {settings}. Cells: attack success rate (%); "
            f"`*` = white-box.\n\n## Success over all images\n\n{result.markdown('all')}\n"
            f"## Success over images the target classified correctly\n\n{result.markdown('correct')}\n"
            f"## Clean accuracy (%)\n\n| model | accuracy |\n|---|---:|\n{clean}\n")
    write_text(folder / "transfer.md", text)
    if examples and result.examples:
        first = surrogates[0]
        keys = [(a, first) for a in names if (a, first) in result.examples]
        clean_imgs = result.examples[keys[0]][0]
        example_grid(clean_imgs, [result.examples[k][1] for k in keys], [k[0] for k in keys],
                     folder / "examples.png", eps=eps_value, title=f"surrogate {first}, eps {eps}")


def attack(
    surrogate: Annotated[list[str], typer.Option(
        "--surrogate", "-s", help="Surrogate model: a run folder (from `modelsafe train`) or a model spec "
                                  "timm:<name> / torchvision:<name>; repeatable.")],
    target: Annotated[list[str] | None, typer.Option(
        "--target", "-t", help="Model to transfer to (run folder or model spec); repeatable. The surrogates are "
                               "always tested too (their cells are white-box).")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Dataset to attack, e.g. imagenet-compatible; needed when no run folder is given (run folders "
             "bring theirs, which it must then match).")] = None,
    pretrained: Annotated[bool, typer.Option(
        "--pretrained/--no-pretrained", help="Load the library's pretrained weights into model specs (downloaded "
                                             "once); default: random weights drawn from --seed.")] = False,
    image_size: Annotated[int | None, typer.Option(
        help="Input size of model specs (default: each model's native one, e.g. 299 for Inception); images are "
             "resized inside the model. Resize the dataset itself with --dataset-option image_size=N.")] = None,
    attacks: Annotated[str, typer.Option(help="Comma-separated attack presets, or 'all' (see docs/attacks.md).")]
    = "mi-fgsm,smi-fgrm",
    eps: Annotated[str, typer.Option(help="L-infinity budget in [0, 1] pixel units, e.g. 16/255 or 0.1.")] = "16/255",
    steps: Annotated[int | None, typer.Option(help="Iterations (default: the preset's, 10).")] = None,
    ensemble: Annotated[bool, typer.Option(help="Attack one logit-averaging ensemble of all surrogates instead "
                                                "of each surrogate separately.")] = False,
    memory_saving: Annotated[bool, typer.Option(help="Ensemble gradients one member at a time (exact, slower, "
                                                     "less memory).")] = False,
    images: Annotated[int | None, typer.Option(help="Number of test-split images to attack (the first ones; default "
                                                    "1000, or all when there are fewer). More than the "
                                                    "test split holds is an error.")] = None,
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
    dataset_option: DatasetOptionOpt = None,
    progress: ProgressOpt = True,
    config: ConfigOpt = None,
) -> None:
    """Run transfer attacks made on the surrogate(s) against every model and write transfer.json,
    transfer.csv, transfer.md and examples.png (clean / adversarial / perturbation)."""
    del config
    from modelsafe.adversarial import PRESETS, Ensemble, transfer_matrix
    from modelsafe.data import load_dataset
    from modelsafe.report.folder import OwnedFolder
    from modelsafe.utils import resolve_device

    eps_value = parse_eps(eps)
    names = ([p.name for p in PRESETS.entries()] if attacks.strip() == "all"
             else [a.strip() for a in attacks.split(",") if a.strip()])
    if not names:
        raise ModelsafeError("--attacks names no attack")
    if images is not None and images < 1:
        raise ModelsafeError(f"--images must be >= 1, got {images}")
    dev = resolve_device(device)
    surrogate_paths, target_paths = list(surrogate), [t for t in (target or []) if t not in surrogate]
    if not surrogate_paths:
        raise ModelsafeError("give at least one --surrogate (run folder or model spec)")
    values = surrogate_paths + target_paths
    specs, folders = _split_models(values, pretrained, image_size, dataset, dataset_option)
    data, runs = _load_runs(folders, dataset, dev, data_root)
    if data is None:
        data = load_dataset(dataset, root=data_root, progress=progress, **parse_key_values(dataset_option))
    if images is None:
        images = min(DEFAULT_IMAGES, len(data.test))
    if images > len(data.test):
        raise ModelsafeError(f"--images {images} is more than the {len(data.test)} test images of "
                             f"{data.info.name!r}; pass --images {len(data.test)} or fewer")
    folder = Path(out or Path("runs") / f"attack-{data.info.name}-s{seed}")
    with OwnedFolder(folder, "attack", ATTACK_FILES).claim(replace=True):
        models, described = _build_models(values, specs, runs, data, pretrained, image_size, seed, dev)
        surrogate_names = list(models)[:len(surrogate_paths)]
        if ensemble and len(surrogate_names) > 1:
            surrogates = {"ensemble(" + "+".join(surrogate_names) + ")":
                          Ensemble([models[n] for n in surrogate_names], memory_saving=memory_saving)}
        else:
            surrogates = {n: models[n] for n in surrogate_names}
        subset = data.test.subset(range(images))
        result = transfer_matrix(names, surrogates, models, subset, eps=eps_value, steps=steps,
                                 batch_size=batch_size, chunk_size=chunk_size, quantize=quantize, labels=labels,
                                 seed=seed, device=dev, progress=progress, examples=min(examples, images, batch_size))
        settings = f"eps = {eps} ({eps_value:.4f}), labels = {labels}, quantize = {quantize}, seed = {seed}"
        _write_results(folder, result, data.info.name, described, names, list(surrogates), images, settings,
                       eps_value, eps, examples)
    typer.echo(result.markdown("all"))
    typer.echo(f"results in {folder}")
