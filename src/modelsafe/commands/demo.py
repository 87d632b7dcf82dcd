"""``modelsafe demo``: SafeCompress and transfer attacks end to end in a few minutes on a laptop CPU
(:func:`modelsafe.workflows.demo_run`, which describes both parts)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe.commands._options import DeviceOpt, ProgressOpt, SeedOpt


def demo(
    out: Annotated[str, typer.Option(help="Folder for the demo's runs and report.")] = "runs/demo",
    dataset: Annotated[str, typer.Option(help="fashion-mnist (falls back to digits when its files are missing) "
                                              "or digits (offline, a minute).")] = "fashion-mnist",
    epochs: Annotated[int, typer.Option(help="Training epochs of each compression run.")] = 20,
    density: Annotated[float, typer.Option(help="Density of the compressed models.")] = 0.05,
    images: Annotated[int, typer.Option(help="Test images attacked in the transfer table.")] = 200,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = True,
) -> None:
    """Compress a leaky Fashion-MNIST model with BMIA-SafeCompress and plain DST, audit both, and test
    transfer attacks; writes OUT/report.md (about 10 minutes on 2 CPU cores)."""
    from modelsafe.workflows import demo_run

    demo_run(out, dataset=dataset, epochs=epochs, density=density, images=images, seed=seed, device=device,
             progress=progress, log=typer.echo)
