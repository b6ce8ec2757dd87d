"""Helpers shared by the seeded-simulation tests.

``binomial_tolerance`` is the one two-sided band every rate check uses: an observed
share of ``trials`` independent Bernoulli(p) outcomes lies within ``Z`` binomial
standard errors of p. Z = 3 (a false alarm in 0.27% of checks when the claim holds)
keeps a seeded suite of dozens of rate checks honest without making it brittle: a
rate that is off by a few standard errors in either direction (too conservative as
well as too liberal) fails.
"""

from __future__ import annotations

import math

Z = 3.0
"""Binomial standard errors either side of a stated rate that an observed rate may lie."""


def binomial_tolerance(p: float, trials: int, *, z: float = Z) -> float:
    """Half-width of the two-sided band for a rate p observed over ``trials`` draws."""
    return z * math.sqrt(p * (1 - p) / trials)
