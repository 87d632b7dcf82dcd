"""CLI command implementations; :mod:`modelsafe.cli` assembles them into one Typer app."""
