"""Run folders, atomic result files and tables."""

from modelsafe.report.io import (
                                 atomic_write,
                                 load_weights,
                                 markdown_table,
                                 read_json,
                                 save_weights,
                                 write_csv,
                                 write_json,
                                 write_text,
)
from modelsafe.report.run import RunFolder

__all__ = ["RunFolder", "atomic_write", "load_weights", "markdown_table", "read_json", "save_weights", "write_csv",
           "write_json", "write_text"]
