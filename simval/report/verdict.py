"""A plain-language verdict per formula and simulator: would the study's inference survive?

Counts are over the overall coefficient rows, the intercept left out (as
``simval.validate.NOT_FINDINGS``). Each term's simulated class is the replicates'
commonest class (positive, negative or null; null on a tie); comparing it with the
human class puts every term in exactly one bin: recovered (same class), lost (a
human effect the simulations call null), reversed (significant with the opposite
sign) or a false positive (no human effect, but the simulations call it
significant). "Fit for inference" uses the pooled scalars of the recovery table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from simval.validate import NOT_FINDINGS, OVERALL, Validation

MIN_SIGN_F1 = 0.9
"""Fit for inference needs sign-F1 at least this high (NaN, no effect on either side, passes)."""

MAX_FALSE_POSITIVE_RATE = 0.05
"""... a false-positive rate at most this (NaN, no human null term, passes) ..."""

MIN_COVERAGE_SHARE = 0.9
"""... and coverage at least this share of the nominal level 1 - alpha."""

FIT = "fit for inference"
NOT_FIT = "not fit for inference"
NO_VERDICT = "no verdict"


@dataclass(frozen=True)
class Verdict:
    """The verdict on one formula for one simulator, with the counts behind it.

    ``fit`` is None when no verdict is possible (the human model could not be
    estimated, there is no term besides the intercept, or none of its terms is
    significant on the human data, as in small samples); ``failing`` names the
    thresholds missed; ``text`` is the sentence the report shows.
    """

    simulator: str
    formula: str
    fit: bool | None
    n_terms: int
    recovered: int
    lost: int
    reversed: int
    false_positives: int
    sign_f1: float
    false_positive_rate: float
    coverage: float
    nominal_coverage: float
    failing: tuple[str, ...]
    text: str

    @property
    def conclusion(self) -> str:
        """``FIT``, ``NOT_FIT`` or ``NO_VERDICT``."""
        return NO_VERDICT if self.fit is None else FIT if self.fit else NOT_FIT


def verdict(validation: Validation, formula: str, *, simulator: str) -> Verdict:
    """Judge whether ``validation``'s simulator reproduces the inference drawn from ``formula``."""
    nominal = 1 - validation.alpha
    empty = {
        "simulator": simulator,
        "formula": formula,
        "n_terms": 0,
        "recovered": 0,
        "lost": 0,
        "reversed": 0,
        "false_positives": 0,
        "sign_f1": math.nan,
        "false_positive_rate": math.nan,
        "coverage": math.nan,
        "nominal_coverage": nominal,
        "failing": (),
    }
    recovery = _overall(validation.recovery, formula)
    if recovery.empty:
        return Verdict(
            **empty,
            fit=None,
            text=f"no estimates for this formula in the validation: {NO_VERDICT}.",
        )
    row = recovery.iloc[0]
    if isinstance(row["failure"], str) and row["failure"]:
        return Verdict(
            **empty,
            fit=None,
            text=f"the human model could not be estimated ({row['failure']}): {NO_VERDICT}.",
        )
    terms = _overall(validation.coefficients, formula)
    terms = terms[~terms["term"].isin(NOT_FINDINGS)]
    judged = terms[terms["human_class"].notna()]
    human, sim = judged["human_class"], judged["sim_class"]
    counts = {
        "n_terms": len(judged),
        "recovered": int((human == sim).sum()),
        "lost": int(((human != "null") & (sim == "null")).sum()),
        "reversed": int(((human != "null") & (sim != "null") & (human != sim)).sum()),
        "false_positives": int(((human == "null") & (sim != "null")).sum()),
    }
    scalars = {
        "sign_f1": float(row["sign_f1"]),
        "false_positive_rate": float(row["false_positive_rate"]),
        "coverage": float(row["coverage"]),
    }
    unjudged = len(terms) - len(judged)
    if not len(judged):
        return Verdict(
            **{**empty, **scalars},
            fit=None,
            text=f"no term besides the intercept to compare: {NO_VERDICT}.",
        )
    if (human == "null").all():
        return Verdict(
            **{**empty, **counts, **scalars},
            fit=None,
            text=(
                f"the humans show no significant effect among the {len(judged)} "
                f"term{_s(len(judged))} (n = {validation.n_human}), so there is no "
                f"finding to recover; simulated samples call "
                f"{counts['false_positives']} of them significant: {NO_VERDICT}."
            ),
        )
    failing = _failing(**scalars, nominal=nominal)
    return Verdict(
        **{**empty, **counts, **scalars, "failing": failing},
        fit=not failing,
        text=_sentence(counts, scalars, failing, nominal=nominal, unjudged=unjudged),
    )


def _overall(table: pd.DataFrame, formula: str) -> pd.DataFrame:
    """The rows of ``table`` for ``formula`` over all respondents."""
    if table.empty or "subgroup" not in table.columns:
        return table.iloc[0:0]
    keep = (
        (table["formula"] == formula)
        & (table["subgroup"] == OVERALL)
        & (table["level"] == OVERALL)
    )
    return table[keep]


def _failing(
    *, sign_f1: float, false_positive_rate: float, coverage: float, nominal: float
) -> tuple[str, ...]:
    """The thresholds missed; a NaN scalar (nothing to count) misses none."""
    floor = MIN_COVERAGE_SHARE * nominal
    checks = (
        (sign_f1 < MIN_SIGN_F1, f"sign-F1 below {MIN_SIGN_F1:g}"),
        (
            false_positive_rate > MAX_FALSE_POSITIVE_RATE,
            f"false-positive rate above {MAX_FALSE_POSITIVE_RATE:g}",
        ),
        (coverage < floor, f"coverage below {floor:.3g}"),
    )
    return tuple(reason for missed, reason in checks if missed)


def _sentence(
    counts: dict[str, int],
    scalars: dict[str, float],
    failing: tuple[str, ...],
    *,
    nominal: float,
    unjudged: int,
) -> str:
    """The verdict as one sentence a researcher can read without the definitions."""
    n = counts["n_terms"]
    fp, lost, rev = counts["false_positives"], counts["lost"], counts["reversed"]
    parts = [
        "human class (positive, negative or not significant) recovered for "
        + f"{counts['recovered']} of {n} term{_s(n)}",
        f"{fp} false positive{_s(fp)} (terms the humans show no effect for "
        + "but the simulated samples call significant)",
        f"{lost} lost finding{_s(lost)} (human effects the simulated samples "
        + "do not call significant)",
        f"{rev} sign reversal{_s(rev)}",
    ]
    if unjudged:
        parts.append(
            f"{unjudged} term{_s(unjudged)} not estimable on the human data, not counted"
        )
    numbers = (
        f"sign-F1 {_num(scalars['sign_f1'])}, false-positive rate "
        f"{_num(scalars['false_positive_rate'])}, coverage {_num(scalars['coverage'])} "
        f"(nominal {nominal:g})"
    )
    conclusion = f"{NOT_FIT} ({'; '.join(failing)})" if failing else FIT
    return f"{'; '.join(parts)}. {numbers}: {conclusion}."


def _s(n: int) -> str:
    """Plural ending."""
    return "" if n == 1 else "s"


def _num(value: float) -> str:
    """A scalar to two places, "n/a" when it is undefined."""
    return "n/a" if math.isnan(value) else f"{value:.2f}"
