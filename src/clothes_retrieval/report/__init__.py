"""The evaluation report: Markdown and a self-contained HTML page with tables and pictures."""

from clothes_retrieval.report.build import (
    AccCurve,
    ExampleQuery,
    ExampleResult,
    ReportInputs,
    ReportTable,
    write_report,
)

__all__ = [
    "AccCurve",
    "ExampleQuery",
    "ExampleResult",
    "ReportInputs",
    "ReportTable",
    "write_report",
]
