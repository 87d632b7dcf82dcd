"""Markdown tables of result rows."""

from __future__ import annotations

from collections.abc import Mapping


def markdown_table(rows: list[Mapping], columns: list[str] | None = None, floatfmt: str = ".4f") -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (floats formatted with ``floatfmt``)."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))

    def fmt(v) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
