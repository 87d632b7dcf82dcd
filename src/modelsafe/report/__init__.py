"""Reporting: run folders, Markdown tables, the membership-inference audit report and transfer-attack reports. Low-level file writing
(atomic writes, weights, JSON/CSV) lives in :mod:`modelsafe.storage`."""

from modelsafe.report.audit import write_audit_report
from modelsafe.report.run import RunFolder
from modelsafe.report.tables import markdown_table
from modelsafe.report.transfer import example_grid, transfer_table, write_transfer_report

__all__ = ["RunFolder", "example_grid", "markdown_table", "transfer_table", "write_audit_report",
           "write_transfer_report"]
