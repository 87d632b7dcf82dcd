"""The ``modelsafe`` command line: one Typer app assembled from :mod:`modelsafe.commands`."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import typer
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from modelsafe.commands.attack import attack
from modelsafe.commands.audit import audit
from modelsafe.commands.compare import compare
from modelsafe.commands.compress import compress
from modelsafe.commands.datasets import datasets
from modelsafe.commands.demo import demo
from modelsafe.commands.train import train
from modelsafe.distributed import finish, world_size
from modelsafe.errors import ModelsafeError


class OneLineErrors(TyperGroup):
    """The command group, with click's usage errors (unknown option, missing or malformed value) shown like
    every other error: one line ``error: ...`` on stderr, exit status 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        from typer._click.exceptions import NoArgsIsHelpError

        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:  # bare `modelsafe`: the help text
            exc.show()
            sys.exit(exc.exit_code)
        except ClickException as exc:
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(name="modelsafe", cls=OneLineErrors, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, help="Test models the way an attacker would, and compress them so they stay hard to attack.")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


PARALLEL_COMMANDS = ("train", "compress", "compare", "audit", "attack", "demo")
"""The commands that run under ``torchrun`` with several processes; the others refuse to."""


def _check_parallel(name: str) -> None:
    if name not in PARALLEL_COMMANDS and world_size() > 1:
        raise ModelsafeError(f"`modelsafe {name}` does not run on several processes yet (only "
                             f"{', '.join(PARALLEL_COMMANDS)} does); run it without torchrun")


def _command(fn: Callable) -> None:
    """Register ``fn``; bad input (ModelsafeError) becomes one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            _check_parallel(fn.__name__)
            result = fn(*args, **kwargs)
            finish()
            return result
        except ModelsafeError as exc:
            typer.echo(f"error: {_one_line(exc)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; re-run the same command to resume from the last checkpoint", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, ClickException):  # usage errors: shown by OneLineErrors
            raise
        except Exception as exc:  # a bug or an environment failure (disk full, ...): still one line
            if os.environ.get("MODELSAFE_DEBUG"):
                raise
            typer.echo(f"error: {type(exc).__name__}: {_one_line(exc)} (unexpected; MODELSAFE_DEBUG=1 shows the "
                       "traceback)", err=True)
            raise typer.Exit(1) from None

    app.command()(run)


for _fn in (train, attack, audit, compress, compare, datasets, demo):
    _command(_fn)


def main() -> None:
    app()
