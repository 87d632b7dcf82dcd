"""Helpers for the robustness suite: run a command in-process and check that it failed the way every modelsafe
failure must (exit status 2, exactly one line ``error: ...`` on stderr naming the problem, no traceback),
snapshot folders to prove no user file was touched, and count the cases tried per group."""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelsafe.cli import app

CASES: Counter = Counter()
PROBLEMS: Counter = Counter()  # "tracebacks", "files lost"
GROUPS = ("overwrite/ownership", "tracebacks/damaged files", "two writers", "silently wrong", "security")


class Cli:
    """``cli(*args)`` runs ``modelsafe args``; ``cli.fails(group, *args, match=...)`` asserts a clean failure."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str):
        return self.runner.invoke(app, [str(a) for a in args])

    def fails(self, group: str, *args: str, match: str | tuple[str, ...]):
        assert group in GROUPS, group
        CASES[group] += 1
        res = self(*args)
        if "Traceback" in res.output or (res.exception is not None and not isinstance(res.exception, SystemExit)):
            PROBLEMS["tracebacks"] += 1
        assert res.exception is None or isinstance(res.exception, SystemExit), (res.exception, res.output)
        assert "Traceback" not in res.output, res.output
        assert res.exit_code == 2, (res.exit_code, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        if os.environ.get("MODELSAFE_SHOW_ERRORS"):
            print(f"\n[{group}] {lines[0]}", file=sys.__stderr__)
        for m in (match,) if isinstance(match, str) else match:
            assert m in lines[0], (m, lines[0])
        return lines[0]

    count = staticmethod(lambda group, n=1: count(group, n))
    snapshot = staticmethod(lambda folder: snapshot(folder))
    untouched = staticmethod(lambda folder, before: assert_untouched(folder, before))


def count(group: str, n: int = 1) -> None:
    """Count cases checked outside :meth:`Cli.fails` (Python API calls, direct checks)."""
    assert group in GROUPS, group
    CASES[group] += n


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_untouched(folder: Path, before: dict[str, bytes]) -> None:
    after = snapshot(folder) if folder.is_dir() else {}
    lost = [name for name, data in before.items() if after.get(name) != data]
    PROBLEMS["files lost"] += len(lost)
    assert not lost, f"user files changed or removed: {lost}"


@pytest.fixture
def cli() -> Cli:
    return Cli()


TRAIN = ("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress", "--device", "cpu")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One finished digits run folder (1 epoch, tiny MLP); tests copy it before damaging it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    res = Cli()(*TRAIN, "--out", out, "--members", "200", "--validation", "100", "--split", "small")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def pytest_terminal_summary(terminalreporter) -> None:
    if not CASES:
        return
    terminalreporter.section("robustness cases")
    for group in GROUPS:
        terminalreporter.write_line(f"{group}: {CASES[group]}")
    terminalreporter.write_line(f"total: {sum(CASES.values())} | tracebacks: {PROBLEMS['tracebacks']}, "
                                f"files lost: {PROBLEMS['files lost']}")
