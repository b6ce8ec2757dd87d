"""Reports: a self-contained HTML replication report with its Markdown twin, and leaderboards.

Reports only read ``Validation`` results and data frames; they never run a model.
matplotlib is imported when the first figure is drawn, and ``import simval`` does
not import this package.
"""

from simval.report.leaderboard import (
    DIRECTIONS,
    mark_best,
    write_leaderboard,
)
from simval.report.render import (
    SECTION_TITLES,
    build_sections,
    write_html,
    write_markdown,
    write_report,
)
from simval.report.shares import option_shares
from simval.report.verdict import Verdict, verdict

__all__ = [
    "DIRECTIONS",
    "SECTION_TITLES",
    "Verdict",
    "build_sections",
    "mark_best",
    "option_shares",
    "verdict",
    "write_html",
    "write_leaderboard",
    "write_markdown",
    "write_report",
]
