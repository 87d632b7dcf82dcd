"""MkDocs hook for the API reference: the docstrings cross-reference with Sphinx roles
(:func:`fit`, :class:`~modelsafe.data.TensorData`), which Markdown renders as the role name followed by
the code. This hook drops the role name and, for a ``~`` target, keeps only the last dotted part, as Sphinx
would show it."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj|const):(<code>)(~?)([^<]*)(</code>)")


def _shown(match: re.Match) -> str:
    target = match.group(3)
    if match.group(2):
        target = target.rsplit(".", 1)[-1]
    return f"{match.group(1)}{target}{match.group(4)}"


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(_shown, html)
