"""Reporting: run folders, Markdown tables and the membership-inference audit report. Low-level file writing
(atomic writes, weights, JSON/CSV) lives in :mod:`modelsafe.storage`."""

from modelsafe.report.audit import write_audit_report
from modelsafe.report.run import RunFolder
from modelsafe.report.tables import markdown_table

__all__ = ["RunFolder", "markdown_table", "write_audit_report"]
