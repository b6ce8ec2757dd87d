"""Reports: a self-contained HTML replication report with its Markdown twin, and leaderboards.

Reports read ``Validation`` (and ``Rectified``) results and nothing else (each carries its study, option
shares, decisions, intervals and notes); they never run a model and compute no statistic,
and no library module imports them (the import contracts in pyproject.toml). matplotlib
is imported when the first figure is drawn, and ``import simval`` does not import this
package.
"""

from simval.report.inference import rectified_text, write_rectified_report
from simval.report.leaderboard import (
    leaderboard_marks,
    write_aggregate_leaderboard,
    write_leaderboard,
)
from simval.report.render import (
    SECTION_TITLES,
    build_sections,
    write_html,
    write_markdown,
    write_report,
)

__all__ = [
    "SECTION_TITLES",
    "build_sections",
    "leaderboard_marks",
    "rectified_text",
    "write_aggregate_leaderboard",
    "write_html",
    "write_leaderboard",
    "write_markdown",
    "write_rectified_report",
    "write_report",
]
