"""``modelsafe datasets``: list the datasets modelsafe can load."""

from __future__ import annotations

import typer

from modelsafe.data import dataset_entry, list_datasets


def datasets() -> None:
    """List dataset names with a one-line description."""
    entries = [dataset_entry(name) for name in list_datasets()]
    width = max(len(e.name) for e in entries)
    for entry in entries:
        typer.echo(f"{entry.name:<{width}}  {entry.description}")
