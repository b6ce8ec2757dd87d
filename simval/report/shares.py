"""Per-option answer shares, human vs simulated, for the report's distribution bars.

A ``Validation`` keeps only the distance between distributions, so the shares are
computed here from answer data frames the caller already has: the report itself
never runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from simval.errors import DataError, OptionError
from simval.study import Study, check_codes

SHARE_COLUMNS = ("simulator", "item", "code", "share")
"""The columns of a shares table; human rows have simulator ``"human"``."""


def option_shares(
    human_df: pd.DataFrame, simulated: Mapping[str, pd.DataFrame], study: Study
) -> pd.DataFrame:
    """Share of each option code among the non-missing answers to each item.

    ``simulated`` maps a simulator's display name to its answers (e.g. the output
    of one ``simulate`` call); the human answers come first, named "human". An
    item nobody answered has NaN shares.
    """
    if "human" in simulated:
        raise OptionError(
            "'human' names the human answers; give the simulator another name"
        )
    rows = []
    for name, answers in {"human": human_df, **simulated}.items():
        if not isinstance(answers, pd.DataFrame):
            raise DataError(
                f"the answers of {name!r} must be a DataFrame, got {type(answers).__name__}"
            )
        check_codes(answers, study.items, what=f"the answers of {name!r}")
        for item in study.items:
            given = pd.to_numeric(answers[item.name], errors="coerce").dropna()
            for code in item.codes:
                share = float((given == code).mean()) if len(given) else float("nan")
                rows.append((name, item.name, code, share))
    return pd.DataFrame(rows, columns=list(SHARE_COLUMNS))
