"""``demo_run``: the main job, end to end, in a few minutes on a laptop CPU.

1. SafeCompress: a target trained on a small member set of Fashion-MNIST (so that it leaks membership) is
   compressed to 5% density by plain dynamic sparse training (RigL) and by BMIA-SafeCompress; both are audited
   afresh on held-out members / non-members by the learned black-box attack (the papers' judge) and the
   loss-threshold attack (``modelsafe compare`` adds the slower white-box audit).
2. Transfer attacks: MI-FGSM and SMI-FGRM adversarial examples made on a CNN are tested on an MLP and on the
   compressed models.

Everything is written to a report folder (``report.md``, ``tradeoff.png``, JSON/CSV). Without Fashion-MNIST
the demo runs on scikit-learn's digits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from modelsafe import distributed
from modelsafe.errors import ModelsafeError


def demo_run(out: str | os.PathLike = "runs/demo", *, dataset: str = "fashion-mnist", epochs: int = 20,
             density: float = 0.05, images: int = 200, seed: int = 0, device: str | torch.device | None = None,
             progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Compress a leaky model with BMIA-SafeCompress and plain DST, audit both, test transfer attacks, and write
    ``out/report.md`` (returned). ``dataset``: ``fashion-mnist`` (falls back to scikit-learn's digits when its
    files are missing) or ``digits``; ``log`` receives the progress lines and tables. Under ``torchrun`` every
    step runs on all ranks (data-parallel training, sharded attacks); rank 0 alone writes and logs."""
    from modelsafe._checks import check_density, check_positive_int
    from modelsafe.compress import CompressOptions
    from modelsafe.data import SplitSpec, load_dataset
    from modelsafe.data.files import find_files
    from modelsafe.data.idx import IDX_FILES
    from modelsafe.storage.folder import OwnedFolder
    from modelsafe.training import TrainConfig
    from modelsafe.utils import resolve_device

    start = time.perf_counter()
    check_positive_int("--epochs", epochs)
    check_positive_int("--images", images)
    check_density(density, "--density")
    dev = distributed.local_device(resolve_device(device))
    log = log if distributed.is_main() else (lambda line: None)
    root = Path(out)
    if dataset not in ("fashion-mnist", "digits"):
        raise ModelsafeError(f"the demo runs on 'fashion-mnist' or 'digits', got {dataset!r}")
    if dataset == "fashion-mnist" and find_files("fashion-mnist", IDX_FILES, None) is not None:
        data, model, width = load_dataset("fashion-mnist"), "mlp", 4.0
        split = SplitSpec(members=2500, validation=1000, reference=1250, eval_nonmembers=1250)
    else:
        if dataset == "fashion-mnist":
            log("Fashion-MNIST not found (apt-get install dataset-fashion-mnist); using scikit-learn digits.")
        data, model, width = load_dataset("digits"), "mlp", 2.0
        split = SplitSpec(members=600, validation=150, reference=300, eval_nonmembers=300)
    if images > len(data.test):
        raise ModelsafeError(f"--images {images} is more than the {len(data.test)} test images of "
                             f"{data.info.name!r}; pass --images {len(data.test)} or fewer")
    # min-max weight λ = 1 and a 100-epoch black-box judge, as in benchmarks/safecompress.py (docs/safecompress.md)
    options = CompressOptions(density=density, update_interval=50, extra={"safecompress": {"minmax_lambda": 1.0}},
                              train=TrainConfig(epochs=epochs, batch_size=64, lr=0.05))
    if not distributed.is_main():  # under torchrun: compute alongside rank 0 once it holds the folder
        distributed.broadcast_object()
        _demo_in(root, data, model, width, split, options, images, seed, dev, False, start, log)
        return root / "report.md"
    with OwnedFolder(root, "demo", ("compare", "report.md", "transfer.json")).claim():
        distributed.broadcast_object(True)
        _demo_in(root, data, model, width, split, options, images, seed, dev, progress, start, log)
    return root / "report.md"



def _demo_in(root: Path, data, model: str, width: float, split, options, images: int, seed: int, dev,
             progress: bool, start: float, log: Callable[[str], None]) -> None:
    """Both demo parts, written into the claimed folder ``root``."""
    from modelsafe.adversarial import transfer_matrix
    from modelsafe.report import transfer_table
    from modelsafe.report.compare import format_table
    from modelsafe.sparse import load_sparse
    from modelsafe.storage.io import write_json, write_text
    from modelsafe.training import fit
    from modelsafe.workflows.compare import compare_run
    from modelsafe.workflows.targets import init_model

    density, epochs = options.density, options.train.epochs
    log(f"[1/2] SafeCompress on {data.info.name}: {model} (width {width}), density {density}, "
               f"{epochs} epochs")
    methods = ["rigl", "bmia-safecompress"]
    result = compare_run(methods, data, model, options=options, split=split, seeds=[seed], width=width,
                     out=root / "compare", device=dev, progress=progress, audit_attacks=("blackbox-nn", "loss"),
                     attack_options={"blackbox-nn": {"epochs": 100}})
    table = format_table(result["summary"])
    log(table)

    log(f"[2/2] Transfer attacks on {images} test images")
    surrogate = init_model("cnn", data, 1.0, seed)
    fit(surrogate, data.train.subset(range(min(10000, len(data.train)))), epochs=2, lr=0.05, seed=seed,
        device=dev, progress=progress)
    targets = {"mlp-dense": init_model("mlp", data, 1.0, seed + 1)}
    fit(targets["mlp-dense"], data.train.subset(range(min(10000, len(data.train)))), epochs=2, lr=0.05,
        seed=seed + 1, device=dev, progress=progress)
    for method in methods:
        compressed = init_model(model, data, width, seed)
        compressed.load_state_dict(load_sparse(root / "compare" / method / f"seed{seed}" / "model.sparse.safetensors"))
        targets[f"{model}-{method}"] = compressed.to(dev).eval()
    eps = 0.1 if data.info.name == "fashion-mnist" else 0.2
    matrix = transfer_matrix(["mi-fgsm", "smi-fgrm"], {"cnn": surrogate}, targets,
                             data.test.subset(range(images)), eps=eps, seed=seed, device=dev,
                             progress=progress)
    transfer = transfer_table(matrix)
    log(transfer)

    if not distributed.is_main():
        return
    report = (f"# modelsafe demo\n\n## SafeCompress at density {density} ({data.info.name}, {model} width {width}, "
              f"{epochs} epochs, seed {seed})\n\nFresh audit on held-out members / non-members: `bmia` = learned "
              f"black-box attack, `loss` = loss-threshold attack (advantage = 2·accuracy − 1; lower is safer). "
              f"One seed: see benchmarks/safecompress.py for means over seeds.\n\n{table}\n"
              f"![trade-off](compare/tradeoff.png)\n\n"
              f"## Transfer attacks (ε = {eps}, surrogate: CNN)\n\n{transfer}\n\n"
              f"Wall time: {time.perf_counter() - start:.0f} s\n")
    write_text(root / "report.md", report)
    write_json(root / "transfer.json", matrix.to_dict())
    log(f"report: {root / 'report.md'} ({time.perf_counter() - start:.0f} s)")
