"""Options shared by every command, including ``--config``: a YAML file whose keys are option names
(``batch_size`` or ``batch-size``). Values given on the command line win over the file."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated

import typer
import yaml


def _load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    if value is None:
        return value
    if not value.is_file():
        raise typer.BadParameter(f"config file {value} does not exist")
    try:
        data = yaml.safe_load(value.read_text()) or {}
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise typer.BadParameter(f"config file {value} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"config file {value} must hold a mapping of option names to values")
    params = {p.name: p for p in ctx.command.params}
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(normalised) - set(params))
    if unknown:
        raise typer.BadParameter(f"config file {value}: unknown option(s) {', '.join(unknown)}")
    for name, given in normalised.items():
        _check_config_value(value, name, given, params[name])
    ctx.default_map = {**(ctx.default_map or {}), **normalised}
    return value


def _kinds(param) -> tuple:
    """The Python types an option's annotation admits (``int | None`` -> (int, NoneType))."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    args = typing.get_args(annotation)
    return args if args and typing.get_origin(annotation) is not list else (annotation,)


def _check_config_value(path: Path, name: str, given, param) -> None:
    """YAML turns ``true`` into a bool that would silently read as 1: refuse a bool for an option that takes a
    number or text, and a list or mapping for an option that takes one value."""
    kinds = _kinds(param)
    shown = " or ".join(getattr(k, "__name__", str(k)) for k in kinds if k is not type(None))
    if isinstance(given, bool) and bool not in kinds:
        raise typer.BadParameter(f"config file {path}: {name} must be {shown}, got {given!r}")
    if isinstance(given, (dict, list)) and not getattr(param, "multiple", False):
        raise typer.BadParameter(f"config file {path}: {name} must be a single {shown} value, got {given!r}")


ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="YAML file of option values (command-line options override it).", is_eager=True,
    callback=_load_config, exists=False)]
SeedOpt = Annotated[int, typer.Option(min=0, max=2**63 - 1,
                                      help="Seed for every random choice (splits, init, shuffling, attacks).")]
DeviceOpt = Annotated[str, typer.Option(help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
DataRootOpt = Annotated[str | None, typer.Option(help="Folder searched first for dataset files.")]
DownloadOpt = Annotated[bool, typer.Option("--download/--no-download",
                                           help="Download missing dataset files (checksums verified).")]
DatasetOptionOpt = Annotated[list[str] | None, typer.Option(
    "--dataset-option", help="Dataset loader option KEY=VALUE (repeatable; VALUE is parsed as YAML), e.g. "
                             "--dataset-option test_fraction=0.3.")]

MethodOptionOpt = Annotated[list[str] | None, typer.Option(
    "--option", help="Method option KEY=VALUE (repeatable; VALUE parsed as YAML), e.g. safecompress.probe_steps=10, "
                     "dp.noise_multiplier=0.5, label_smoothing=0.2.")]


def parse_key_values(items: list[str] | None) -> dict:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def parse_method_options(items: list[str] | None) -> dict:
    """``["safecompress.probe_steps=3"]`` → ``{"safecompress": {"probe_steps": 3}}`` (dots nest)."""
    out: dict = {}
    for key, value in parse_key_values(items).items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise typer.BadParameter(f"--option {key}: {part!r} is given both as a value and as a group")
        node[leaf] = value
    return out
