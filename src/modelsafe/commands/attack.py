"""``modelsafe attack``: transfer attacks between models given as run folders (from ``modelsafe train``) or as
``timm:<name>`` / ``torchvision:<name>`` specs; writes a transfer-success matrix
(:func:`modelsafe.workflows.attack_run`)."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated

import typer

from modelsafe import distributed
from modelsafe.commands import _options as opt
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


def attack_names(text: str) -> tuple[str, ...]:
    """``"all"`` (every preset, in table order) or comma-separated preset names."""
    from modelsafe.adversarial import PRESETS

    if text.strip() == "all":
        return tuple(p.name for p in PRESETS.entries())
    return tuple(a.strip() for a in text.split(",") if a.strip())


AutocastOpt = Annotated[bool, typer.Option(help="Run the gradient evaluations under bfloat16 autocast (faster on GPUs; "
                                                "the steps stay in full precision).")]


@opt.with_groups(opt.RUNTIME)
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
        help="Images per model call inside an attack (default: 50 on CPU, everything at once on GPU).")] = None,
    labels: Annotated[str, typer.Option(help="Labels to attack: 'predicted' (surrogate's clean prediction, the "
                                             "S-FGRM protocol) or 'true'.")] = "predicted",
    quantize: Annotated[bool, typer.Option("--quantize/--no-quantize",
                                           help="Round adversarial images to 8 bits (like saved PNGs).")] = True,
    examples: Annotated[int, typer.Option(help="Images in the example grid (0: no grid).")] = 8,
    save_images: Annotated[bool, typer.Option(help="Write every adversarial image as an 8-bit PNG to "
                                                   "<out>/images/<attack>/<surrogate>/<image id>.png.")] = False,
    autocast: AutocastOpt = False,
    out: Annotated[str | None, typer.Option(help="Output folder (default runs/attack-<dataset>-s<seed>).")] = None,
    seed: opt.SeedOpt = 0,
    data_root: opt.DataRootOpt = None,
    dataset_option: opt.DatasetOptionOpt = None,
    device: str = "auto", progress: bool = True, config: None = None,
) -> None:
    """Run transfer attacks made on the surrogate(s) against every model and write transfer.json,
    transfer.csv, transfer.md and examples.png (clean / adversarial / perturbation)."""
    from modelsafe.report import transfer_table
    from modelsafe.workflows.attack import AttackRunOptions, attack_run

    options = AttackRunOptions(attacks=attack_names(attacks), eps=parse_eps(eps), eps_text=eps, steps=steps,
                               ensemble=ensemble, memory_saving=memory_saving, images=images, batch_size=batch_size,
                               chunk_size=chunk_size, labels=labels, quantize=quantize, examples=examples,
                               pretrained=pretrained, image_size=image_size, save_images=save_images, autocast=autocast)
    result, folder = attack_run(list(surrogate), target, options=options, dataset=dataset, data_root=data_root,
                                dataset_options=opt.parse_key_values(dataset_option), out=out, seed=seed,
                                device=device, progress=progress)
    if not distributed.is_main():  # under torchrun rank 0 prints
        return
    typer.echo(transfer_table(result, "all"))
    typer.echo(f"results in {folder}")
