"""``attack_run``: transfer attacks between models given as run folders (from ``modelsafe train``) or as
``timm:<name>`` / ``torchvision:<name>`` specs; writes a transfer-success matrix (JSON, CSV, Markdown) and an
example grid into one folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelsafe import distributed
from modelsafe.errors import ModelsafeError
from modelsafe.utils import to_channels_last, use_channels_last

if TYPE_CHECKING:
    import torch

    from modelsafe.adversarial import TransferMatrix
    from modelsafe.data import Dataset
    from modelsafe.models.adapters import ExternalModel

MODEL_PREFIXES = ("timm:", "torchvision:")
DEFAULT_IMAGES = 1000


@dataclass(frozen=True)
class AttackRunOptions:
    """How :func:`attack_run` attacks. ``attacks``: preset names; ``eps``: L∞ budget in [0, 1] pixel units
    (``eps_text`` is how it is shown, e.g. ``"16/255"``); ``steps``: iterations (None: the preset's);
    ``ensemble``: one logit-averaging ensemble of all surrogates (``memory_saving``: its gradients one member at
    a time); ``images``: test-split images attacked, the first ones (None: 1000 or all when fewer);
    ``batch_size`` images per attack call, ``chunk_size`` per model call; ``labels``: ``predicted`` or ``true``;
    ``quantize``: round to 8 bits; ``examples``: images in the example grid; ``pretrained`` and ``image_size``
    apply to model specs; ``save_images``: write every adversarial image as an 8-bit PNG to
    ``images/<attack>/<surrogate>/<image id>.png``; ``autocast``: gradient evaluations under bfloat16 autocast."""

    attacks: tuple[str, ...] = ("mi-fgsm", "smi-fgrm")
    eps: float = 16 / 255
    eps_text: str = "16/255"
    steps: int | None = None
    ensemble: bool = False
    memory_saving: bool = False
    images: int | None = None
    batch_size: int = 100
    chunk_size: int | None = None
    labels: str = "predicted"
    quantize: bool = True
    examples: int = 8
    pretrained: bool = False
    image_size: int | None = None
    save_images: bool = False
    autocast: bool = False

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ModelsafeError("--attacks names no attack")
        if not 0 <= self.eps <= 1:
            raise ModelsafeError(f"eps must lie in [0, 1] (pixel units), got {self.eps:.4g}")
        if self.images is not None and self.images < 1:
            raise ModelsafeError(f"--images must be >= 1, got {self.images}")


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
    from modelsafe.workflows import init_model

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
                  dataset_options: dict | None) -> tuple[set[str], list[str]]:
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
    if folders and dataset_options:
        raise ModelsafeError("--dataset-option cannot be combined with run folders: they record their dataset's "
                             "options")
    return specs, folders


def _load_runs(folders: list[str], dataset: str | None, dev, data_root: str | None) -> tuple:
    """(dataset shared by the run folders or None, {path: (model, description)})."""
    from modelsafe.workflows import load_target

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
    """({name: model}, {name: description}) for every --surrogate/--target, in order; convolutional nets on CUDA
    in the ``channels_last`` memory format."""
    models, described = {}, {}
    for name, value in zip(_names(values), values):
        if value in specs:
            model = load_model_spec(value, data, pretrained=pretrained, image_size=image_size, seed=seed, device=dev)
            models[name], described[name] = model, {"model": value, "pretrained": pretrained,
                                                    "input_size": list(model.input_size)}
        else:
            models[name], described[name] = runs[value]
        if use_channels_last(models[name], dev):  # conv nets on CUDA: NHWC kernels, same values
            to_channels_last(models[name])
    return models, described


ATTACK_FILES = ("transfer.json", "transfer.csv", "transfer.md", "examples.png", "images")


def attack_run(surrogates: list[str], targets: list[str] | None = None, *, options: AttackRunOptions | None = None,
               dataset: str | None = None, data_root: str | None = None, dataset_options: dict | None = None,
               out: str | os.PathLike | None = None, seed: int = 0, device: str | torch.device | None = None,
               progress: bool = True) -> tuple[TransferMatrix, Path]:
    """Attack every model with adversarial examples made on ``surrogates`` (run folders or model specs; the
    surrogates are always targets too) and write transfer.json / .csv / .md and examples.png into ``out``
    (default ``runs/attack-<dataset>-s<seed>``). Run folders bring their dataset, which ``dataset`` must then
    match. Returns (the transfer matrix, the folder).

    Under ``torchrun`` every rank attacks its share of the image batches (the images are those of one process,
    see :func:`~modelsafe.adversarial.transfer_matrix`) and returns the whole matrix; rank 0 alone claims the
    folder and writes the report; with ``save_images`` each rank writes the PNGs it made (the folder must then
    be on a file system every rank sees)."""
    from modelsafe.data import load_dataset
    from modelsafe.report.transfer import write_transfer_report
    from modelsafe.storage.folder import OwnedFolder
    from modelsafe.utils import resolve_device

    opts = options or AttackRunOptions()
    progress = progress and distributed.is_main()  # one progress display
    dev = distributed.local_device(resolve_device(device))
    surrogate_paths, target_paths = list(surrogates), [t for t in (targets or []) if t not in surrogates]
    if not surrogate_paths:
        raise ModelsafeError("give at least one --surrogate (run folder or model spec)")
    values = surrogate_paths + target_paths
    specs, folders = _split_models(values, opts.pretrained, opts.image_size, dataset, dataset_options)
    data, runs = _load_runs(folders, dataset, dev, data_root)
    if data is None:
        data = load_dataset(dataset, root=data_root, progress=progress, **(dataset_options or {}))
    images = min(DEFAULT_IMAGES, len(data.test)) if opts.images is None else opts.images
    if images > len(data.test):
        raise ModelsafeError(f"--images {images} is more than the {len(data.test)} test images of "
                             f"{data.info.name!r}; pass --images {len(data.test)} or fewer")
    folder = Path(out or Path("runs") / f"attack-{data.info.name}-s{seed}")
    sink = _png_writer(folder / "images", data.extras.get("image_ids")) if opts.save_images else None
    subset = data.test.subset(range(images))
    build = (values, specs, runs, data, opts.pretrained, opts.image_size, seed, dev)
    if not distributed.is_main():  # attack this rank's share of the batches once rank 0 holds the folder
        models, _ = _build_models(*build)
        distributed.broadcast_object()
        return _attack(opts, models, len(surrogate_paths), subset, seed, dev, progress, sink), folder
    with OwnedFolder(folder, "attack", ATTACK_FILES).claim(replace=True):  # refused or locked: nothing built
        distributed.broadcast_object(True)
        models, described = _build_models(*build)
        result = _attack(opts, models, len(surrogate_paths), subset, seed, dev, progress, sink)
        settings = (f"eps = {opts.eps_text} ({opts.eps:.4f}), labels = {opts.labels}, quantize = {opts.quantize}, "
                    f"seed = {seed}" + (", bfloat16 autocast" if opts.autocast else ""))
        write_transfer_report(folder, result, data.info.name, described, list(opts.attacks), images, settings,
                              opts.eps_text, opts.examples)
    return result, folder


def _png_writer(root: Path, image_ids=None):
    """``sink(attack, surrogate, indices, images)`` writing each image to
    ``root/<attack>/<surrogate>/<id>.png`` (id: the dataset's image id, else the test-split index)."""
    from modelsafe.data.images import write_png

    def sink(attack: str, surrogate: str, indices: torch.Tensor, images: torch.Tensor) -> None:
        folder = root / attack / surrogate.replace("/", "_").replace(":", "_")
        for i, image in zip(indices.tolist(), images):
            name = str(image_ids[i]) if image_ids is not None else f"{i:06d}"
            write_png(folder / f"{Path(name).stem}.png", image)

    return sink


def _attack(opts: AttackRunOptions, models: dict, n_surrogates: int, subset, seed: int, dev,
            progress: bool, on_adversarial=None) -> TransferMatrix:
    """The transfer matrix of ``opts.attacks`` made on the first ``n_surrogates`` of ``models`` (or on their
    ensemble) against all of them."""
    from modelsafe.adversarial import Ensemble, transfer_matrix

    surrogate_names = list(models)[:n_surrogates]
    if opts.ensemble and len(surrogate_names) > 1:
        surrogates = {"ensemble(" + "+".join(surrogate_names) + ")":
                      Ensemble([models[n] for n in surrogate_names], memory_saving=opts.memory_saving)}
    else:
        surrogates = {n: models[n] for n in surrogate_names}
    return transfer_matrix(list(opts.attacks), surrogates, models, subset, eps=opts.eps, steps=opts.steps,
                           batch_size=opts.batch_size, chunk_size=opts.chunk_size, quantize=opts.quantize,
                           labels=opts.labels, seed=seed, device=dev, progress=progress,
                           examples=min(opts.examples, len(subset), opts.batch_size),
                           on_adversarial=on_adversarial, autocast=opts.autocast)
