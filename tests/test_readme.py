"""The README's Python tour runs as written: its ```python blocks, joined in order, are one script."""

from __future__ import annotations

import re
import time
from pathlib import Path

from .test_examples import run_script

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced ```python blocks, in order."""
    return FENCE.findall(markdown)


def test_python_blocks_are_found():
    text = "intro\n```python\nx = 1\n```\n\n```bash\nls\n```\n```python\nprint(x)\n```\n"
    assert python_blocks(text) == ["x = 1\n", "print(x)\n"]


def test_readme_tour_runs(tmp_path):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    script = tmp_path / "readme_tour.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    start = time.perf_counter()
    proc = run_script(script)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"the README's Python tour failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "'accuracy'" in proc.stdout and "'nonzero'" in proc.stdout, proc.stdout
    assert (tmp_path / "runs" / "tour-mlp" / "audit" / "report.md").is_file(), proc.stdout
    print(f"README tour: {seconds:.1f} s")
