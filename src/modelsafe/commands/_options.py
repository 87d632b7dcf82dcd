"""Options shared by the commands, each declared once (single options and :class:`OptionGroup` s), and
``--config``: a YAML file whose keys are option names (``batch_size`` or ``batch-size``). Values given on the
command line win over the file."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from modelsafe.data.split import get_recipe
from modelsafe.training import TrainConfig


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


# --------------------------------------------------------------------------- option groups
@dataclass(frozen=True)
class OptionGroup:
    """Options several commands share, declared once. ``options`` maps each option's parameter name to its
    annotated type and default; :func:`with_groups` appends them to a command's signature. With ``build``, the
    command receives ``build(**values)`` under the parameter ``key`` instead of the single values."""

    options: dict[str, tuple[Any, Any]]
    key: str | None = None
    build: Callable[..., Any] | None = None

    def defaults(self, **overrides: Any) -> OptionGroup:
        """The same group with other defaults for some options (per command)."""
        unknown = set(overrides) - set(self.options)
        if unknown:
            raise ValueError(f"no such options in the group: {sorted(unknown)}")
        options = {n: (kind, overrides.get(n, default)) for n, (kind, default) in self.options.items()}
        return replace(self, options=options)


def with_groups(*groups: OptionGroup) -> Callable[[Callable], Callable]:
    """Add the options of ``groups`` to a command (after its own); built groups reach it as one value. The
    command's own parameters of the same names only say what it reads: the groups' declarations win."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn, eval_str=True)
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
                 for g in groups for name, (kind, default) in g.options.items()]
        # the command may name a group's options (or its built value) in its own signature, to read them
        taken = {g.key for g in groups if g.key} | {p.name for p in added}
        own = [p for p in signature.parameters.values() if p.name not in taken]

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            for group in groups:
                if group.build is not None:
                    values[group.key] = group.build(**{n: values.pop(n) for n in group.options})
            return fn(**values)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        command.__signature__ = signature.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


TRAINING = OptionGroup({
    "epochs": (Annotated[int, typer.Option(help="Training epochs.")], TrainConfig.epochs),
    "batch_size": (Annotated[int, typer.Option(help="Mini-batch size.")], TrainConfig.batch_size),
    "lr": (Annotated[float, typer.Option(help="Base learning rate.")], TrainConfig.lr),
    "optimizer": (Annotated[str, typer.Option(help="sgd, adam or adamw.")], TrainConfig.optimizer),
    "momentum": (Annotated[float, typer.Option(help="SGD momentum.")], TrainConfig.momentum),
    "weight_decay": (Annotated[float, typer.Option(help="L2 weight decay.")], TrainConfig.weight_decay),
    "schedule": (Annotated[str, typer.Option(help="LR schedule: cosine, multistep or constant.")],
                 TrainConfig.schedule),
    "augment": (Annotated[str, typer.Option(help="none, flip or crop-flip.")], TrainConfig.augment),
    "autocast": (Annotated[bool, typer.Option(help="Training steps under bfloat16 autocast (faster on GPUs; "
                                                   "evaluation stays in full precision).")], TrainConfig.autocast),
}, key="train", build=TrainConfig)

SPLIT = OptionGroup({
    "split": (Annotated[str, typer.Option(help="Membership split recipe: safecompress (all train samples are "
                                               "members) or small (2,500 members).")], "safecompress"),
    "members": (Annotated[int | None, typer.Option(help="Override the recipe's member count.")], None),
    "validation": (Annotated[int | None, typer.Option(help="Override the recipe's validation size.")], None),
}, key="split_spec", build=lambda split, members, validation: get_recipe(split, members=members,
                                                                          validation=validation))

TARGET = OptionGroup({
    "dataset": (Annotated[str, typer.Option(help="Dataset name (see `modelsafe datasets`).")], "fashion-mnist"),
    "model": (Annotated[str, typer.Option(help="Model name: cnn, mlp, vgg11, vgg16, vgg-c, resnet18, text, "
                                               "timm:<arch>, torchvision:<arch>.")], "cnn"),
    "width": (Annotated[float, typer.Option(help="Width multiplier of the model.")], 1.0),
})

RUNTIME = OptionGroup({
    "device": (DeviceOpt, "auto"),
    "progress": (ProgressOpt, True),
    "config": (ConfigOpt, None),
})

OverwriteOpt = Annotated[bool, typer.Option(help="Replace a run folder that holds a different run.")]
