"""The layering and size rules of docs/conventions.md, checked on the source tree."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "modelsafe"
LAYERS = {
    "errors": 0, "utils": 1, "_checks": 1, "registry": 1, "distributed": 1,
    "storage": 2, "data": 3, "models": 4, "training": 5,
    "sparse": 6, "privacy": 6, "adversarial": 6,
    "compress": 7, "report": 8, "workflows": 9, "commands": 10, "cli": 11, "__main__": 12,
}
MAX_FUNCTION_LINES = 60


def _unit(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    """modelsafe units imported anywhere in the file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("modelsafe."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "modelsafe":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("modelsafe."))
    return found


SOURCES = sorted(p for p in SRC.rglob("*.py") if _unit(p) != "__init__")


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in SOURCES}
    assert units <= set(LAYERS), f"add to LAYERS and docs/conventions.md: {sorted(units - set(LAYERS))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_only(path):
    unit = _unit(path)
    wrong = sorted(u for u in _imports(path) - {unit} if u in LAYERS and LAYERS[u] >= LAYERS[unit])
    assert not wrong, f"{unit} (layer {LAYERS[unit]}) imports {wrong}: same or higher layer"


def test_the_checker_sees_a_function_level_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from modelsafe.report.run import RunFolder\n    return RunFolder\n")
    assert "report" in _imports(bad)


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in SOURCES + sorted(SRC.rglob("__init__.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
