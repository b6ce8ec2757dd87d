"""The example task's reference population: simulated respondents from a stated structural model.

This is NOT human data. Each respondent has a latent concern about sharing data,
shifted by age, gender and the warning arm; the two belief items are ordinal cuts
of noisy readings of it, and sharing is a logistic function of the stated concern,
trust, arm and age. The effects are chosen to be of plausible size, so the
study's models have terms that are clearly non-zero and terms that are null.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CUTS = np.array([-1.2, -0.4, 0.4, 1.2])


def population(*, n: int = 600, seed: int = 0) -> pd.DataFrame:
    """``n`` simulated respondents of the example study, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 76, size=n)
    female = rng.random(n) < 0.5
    warning = rng.random(n) < 0.5
    latent = 0.02 * (age - 45) + 0.3 * female + 0.6 * warning + rng.normal(size=n)
    concern = 1 + np.searchsorted(CUTS, latent + rng.normal(scale=0.5, size=n))
    trust = 1 + np.searchsorted(CUTS, -0.6 * latent + rng.normal(size=n))
    logit = 0.3 - 0.7 * (concern - 3) + 0.4 * (trust - 3) - 0.5 * warning
    share = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "age": age,
            "age_band": pd.cut(
                age, [17, 34, 54, 120], labels=["18-34", "35-54", "55+"]
            ).astype(str),
            "gender": np.where(female, "Female", "Male"),
            "arm": np.where(warning, "warning", "control"),
            "concern": concern,
            "trust": trust,
            "share": share,
        }
    )
