"""The disclosure task's reference population: 929 SIMULATED respondents, not human data.

A documented structural model stands in for the human sample until a researcher
supplies their own (``simval bench disclosure --human data.csv``):

1. Persona: age (18-80, right-skewed), gender, ethnicity (a crowd-work platform's
   categories), education and political leaning, drawn with the shares in
   ``PERSONA_SHARES``; arms block-randomised over the 2x2x2 design (116-117 each).
2. A latent privacy disposition ``theta`` (higher = more protective): a standard
   normal shifted by demographics (``DEMOGRAPHIC_SHIFT``, plus 0.015 per year of
   age over 38) and by the arm (``ARM_SHIFT``: an unknown startup raises it, a
   security assurance lowers it).
3. Beliefs: each 1-5 agreement item is an ordinal cut (``CUTS``) of
   ``loading * theta + item-specific arm effects + item noise`` (``BELIEFS``); the
   item noise is what gives hundreds of distinct belief patterns.
4. Actions: each disclosure is Bernoulli with
   ``logit p = intercept - weight * theta + arm effects (+ assurance x incentive)``
   (``ACTIONS``), so stated concern and action agree only loosely, as in the
   privacy paradox: about a quarter of respondents fall under each coherence rule.

Effects are of plausible size for a vignette experiment (odds ratios 1.3-2.5 for
the arms, a few tenths of a scale point for beliefs), so the study's models have
clearly non-zero terms as well as null ones (incentive on concern, age and gender
on disclosure). Gender is recorded as the platform's binary field (Woman, Man): a 2%
category makes the disclosure logit inestimable (perfect separation) in the small
samples a CPU demo can score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_RESPONDENTS = 929
FACTORS = {
    "requester": ("company", "startup"),
    "assurance": ("none", "shown"),
    "incentive": ("none", "offered"),
}
PERSONA_SHARES = {
    "gender": {"Woman": 0.5, "Man": 0.5},
    "ethnicity": {
        "White": 0.64,
        "Black": 0.12,
        "Asian": 0.11,
        "Mixed": 0.07,
        "Other": 0.06,
    },
    "education": {
        "High school or less": 0.15,
        "Some college": 0.27,
        "Bachelor's degree": 0.38,
        "Graduate degree": 0.20,
    },
    "political_leaning": {"Liberal": 0.45, "Moderate": 0.30, "Conservative": 0.25},
}
AGE_BANDS = {"18-29": 29, "30-44": 44, "45-59": 59, "60+": 200}
DEMOGRAPHIC_SHIFT = {
    "Woman": 0.15, "Black": 0.15, "Asian": 0.05, "Mixed": 0.1,
    "Other": 0.05, "Graduate degree": 0.1, "Conservative": 0.1,
}  # fmt: skip
ARM_SHIFT = {"startup": 0.5, "shown": -0.4, "offered": 0.05}
CUTS = np.array([-1.6, -0.6, 0.3, 1.3])
BELIEFS = {
    # item: (centre, loading on theta, noise sd, {arm level: effect})
    "concern": (0.2, 1.0, 0.5, {}),
    "risk": (0.3, 0.9, 0.55, {"startup": 0.2}),
    "trust": (-0.1, -0.8, 0.55, {"startup": -0.5, "shown": 0.4}),
    "benefit": (-0.3, -0.4, 0.65, {"offered": 0.8}),
    "control": (-0.4, -0.5, 0.65, {"shown": 0.3}),
}
ACTIONS = {
    # item: (intercept, weight on theta, {arm level: log-odds effect})
    "share_email": (1.0, 0.8, {"startup": -0.3, "offered": 0.4}),
    "share_location": (
        -0.1,
        0.95,
        {"startup": -0.5, "shown": 0.3, "offered": 0.6, "shown*offered": 0.6},
    ),
    "share_contacts": (-1.2, 0.9, {"startup": -0.5, "offered": 0.6}),
}


def population(*, n: int = N_RESPONDENTS, seed: int = 0) -> pd.DataFrame:
    """``n`` simulated respondents of the disclosure study, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    people = _persona(n=n, rng=rng)
    levels = _arms(n=n, rng=rng)
    people = pd.concat([people, levels], axis=1)
    present = _indicators(people)
    theta = (
        rng.normal(size=n)
        + 0.015 * (people["age"].to_numpy() - 38)
        + sum(shift * present[key] for key, shift in DEMOGRAPHIC_SHIFT.items())
        + sum(shift * present[key] for key, shift in ARM_SHIFT.items())
    )
    for item, (centre, loading, noise, effects) in BELIEFS.items():
        reading = centre + loading * theta + rng.normal(scale=noise, size=n)
        reading += sum(effect * present[key] for key, effect in effects.items())
        people[item] = 1 + np.searchsorted(CUTS, reading)
    for item, (intercept, weight, effects) in ACTIONS.items():
        logit = intercept - weight * theta
        logit += sum(effect * present[key] for key, effect in effects.items())
        people[item] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    people.index.name = "respondent"
    return people


def _persona(*, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Age, age band and the categorical persona columns."""
    age = np.clip(np.round(18 + rng.gamma(shape=2.2, scale=9.0, size=n)), 18, 80)
    bands = pd.cut(age, [17, *AGE_BANDS.values()], labels=list(AGE_BANDS))
    columns = {"age": age.astype(int), "age_band": bands.astype(str)}
    for column, shares in PERSONA_SHARES.items():
        columns[column] = rng.choice(list(shares), size=n, p=list(shares.values()))
    return pd.DataFrame(columns)


def _arms(*, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Block-randomised 2x2x2 arms: every arm gets n/8 respondents, give or take one."""
    cells = pd.MultiIndex.from_product(list(FACTORS.values())).to_list()
    order = rng.permutation(np.resize(np.arange(len(cells)), n))
    return pd.DataFrame([cells[i] for i in order], columns=list(FACTORS))


def _indicators(people: pd.DataFrame) -> dict[str, np.ndarray]:
    """0/1 arrays for each persona level and treated arm level, plus the assurance x incentive cell."""
    present = {}
    for column, shares in PERSONA_SHARES.items():
        for level in shares:
            present[level] = (people[column] == level).to_numpy(dtype=float)
    for column, (_, treated) in FACTORS.items():
        present[treated] = (people[column] == treated).to_numpy(dtype=float)
    present["shown*offered"] = present["shown"] * present["offered"]
    return present
