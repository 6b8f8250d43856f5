"""The HTML report of an output folder (``OUT/report.html``): summary, thumbnails of what was
kept and of what each filter dropped, dedup groups, distributions, licenses and policy.
See docs/report.md."""

from clipfactory.report.build import REPORT_FILE, ReportResult, build_report, report_after_finalize

__all__ = ["REPORT_FILE", "ReportResult", "build_report", "report_after_finalize"]
