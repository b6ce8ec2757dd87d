"""rectify(): valid estimates of a study's regressions from few humans and a simulator.

Orchestration only, as ``validate`` is: it asks the simulator for the humans' own
personas and for simulated-only ones, builds each model's design on the humans, on
the simulator's answers for them and on the simulated-only rows with the humans' fit
(``Fit.arrays``), and solves PPI++ (``simval.ppi``) beside the humans-only and the
simulated-only fits. The estimator and its variance live in ``simval.ppi``.

Simulated-only personas come from one of two places:

- a persona frame (``unlabeled=<DataFrame>``): personas drawn from the population
  the humans were sampled from, independently of them (arms drawn where the frame
  has none): standard PPI;
- ``unlabeled=<number>``: the humans' own personas re-drawn with the study's
  treatment re-randomised (arm shares as in the human data). Every human persona
  is answered under every arm and the simulated-only rows are drawn from those
  answers; their mean then depends on which humans were sampled, so the variance
  centres each human's predicted gradient on its mean over the arms
  (``ppi.ppi_fit(arms=...)``). What this gains is the variance due to which arm each
  human drew, as regression adjustment does in an experiment. Without a treatment
  (an observational study) it is refused: the humans' personas re-drawn estimate the
  simulator's mean over the labeled humans themselves, so the rectified estimate is
  the humans-only one plus resampling noise (the centred gradients are zero: the
  tuned λ is 0, the gain 1), and personas drawn from any model fitted to the humans
  are not the population's, which biases it under a biased simulator. An
  observational study needs a persona frame, or ``split_labeled``.

``split_labeled`` makes a study of this from the humans alone: a random share of them
labeled, the others' personas simulated-only, and every human's own fit kept to judge
the rectified estimates by (what ``simval rectify --labeled-frac`` runs).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.special
import scipy.stats

from simval.binding import check_no_leakage
from simval.comparison import check_human_models
from simval.errors import (
    DataError,
    EstimationError,
    OptionError,
    check_alpha,
    check_count,
    check_option,
    refuse,
)
from simval.families import CLUSTER_PREFIX, PPI_FAMILIES
from simval.finetune import pilot
from simval.formulas import formula_variables
from simval.ppi import Estimate, Lam, Rows, ppi_fit
from simval.progress import progress as progress_bar
from simval.regression import fit
from simval.results import (
    identity_of,
    interval_text,
    is_finding,
    number,
    summary_html,
)
from simval.simulators.base import (
    Simulator,
    StudySimulator,
    answers_by_scoring,
    check_output,
)
from simval.study import Item, Model, Study, categorical_items, formula_study

__all__ = ["LabeledSplit", "Rectified", "check_inputs", "rectify", "split_labeled"]

METHODS = ("classical", "naive", "rectified")
"""Humans only; simulated-only respondents only; PPI++ on both."""

ESTIMATE_COLUMNS = (
    "formula", "term", "method", "estimate", "std_error", "statistic", "p_value",
    "ci_low", "ci_high",
)  # fmt: skip

TABLE_COLUMNS = (
    "formula", "term", "n_human", "n_unlabeled", "lam", "ppi_correlation",
    *(f"{method}_{column}" for method in METHODS
      for column in ("estimate", "std_error", "ci_low", "ci_high")),
    "rectified_p_value", "effective_n", "gain", "warning",
)  # fmt: skip

EVENTS_PER_TERM = 10
"""Fewer labeled events (the rarer outcome of a binary one; rows otherwise) per
coefficient than this, and the humans-only fit, hence the rectified one, is warned of
(Peduzzi et al. 1996's rule for logistic regression)."""

NEAR_CERTAIN = 1e-6
"""A humans-only logit or probit fit giving some human a fitted probability this
close to 0 or 1 is near separation: its estimates run off towards infinity."""

_CERTAIN_ETA = {
    "logit": float(-scipy.special.logit(NEAR_CERTAIN)),
    "probit": float(-scipy.stats.norm.ppf(NEAR_CERTAIN)),
}
"""The |linear predictor| beyond which a fitted probability is within NEAR_CERTAIN
of 0 or 1."""

COMPONENTS = ("human", "cross", "predicted", "unlabeled")
"""The variance components of a rectified fit (``simval.ppi.Components``)."""

ERRORS = ("human_error", "correlation_error")
"""How well a rectified fit knows its components (``simval.ppi.Components``)."""

COMPONENT_COLUMNS = (
    "formula", "term", "n_human", "n_unlabeled", "lam", *COMPONENTS, "ppi_correlation",
    *ERRORS,
)  # fmt: skip

SANDWICH = "HC0"
"""The covariance a model is rectified with unless it clusters (``fit``'s name for the
sandwich without a small-sample factor, which PPI++'s variance is at λ = 0)."""
OVERALL_LAM = "tuned_overall"
"""``lam`` value: one λ per model, minimising its terms' summed variance (ppi-python's
default criterion); rectify's ``"tuned"`` tunes λ for each term. Either is tuned at
its own estimate (``ppi_fit(tune_at="fit")``)."""


@dataclass(frozen=True)
class Rectified:
    """PPI++ estimates of a study's regressions beside the humans-only and the
    simulated-only ones.

    ``table``: a row per (formula, term): the humans used (``n_human``) and the
    simulated-only rows (``n_unlabeled``), λ, the PPI correlation, each method's
    estimate, standard error and (1 − alpha) interval, the rectified p-value, the
    gain, (humans-only SE / rectified SE)², the humans-only interval's width over the
    rectified one's, squared (below 1 where the rectified interval is the wider), the
    effective sample size n × gain (the humans whose own fit would be as precise) and
    ``warning``: why the formula's humans-only fit may be unstable (too few events
    per coefficient, near separation; "" where neither). ``estimates``: the
    same numbers long, a row per (formula, term, method) with ``Fit.table``'s
    columns. ``not_estimable``: formula -> why it could not be estimated (no rows
    for it in the tables). ``components``: a row per (formula, term) with the
    rectified fit's variance components and how well the pilot knows them
    (``simval.ppi.Components``), from which ``simval.plan`` extrapolates.
    """

    study: Study
    table: pd.DataFrame
    estimates: pd.DataFrame
    components: pd.DataFrame
    n_human: int
    n_unlabeled: int
    unlabeled: str
    alpha: float
    lam: Lam | str
    simulator: str
    predictions: str
    not_estimable: Mapping[str, str]
    notes: Mapping[str, Any]

    def summary(self) -> dict[str, float]:
        """Headline numbers: the sample sizes and the median gain and λ over terms."""
        slopes = self._slopes()
        return {
            "n_human": float(self.n_human),
            "n_unlabeled": float(self.n_unlabeled),
            "median_gain": _median(slopes["gain"]),
            "median_lam": _median(slopes["lam"]),
        }

    def sentence(self, formula: str) -> str:
        """One plain sentence on what the simulated respondents bought for ``formula``."""
        if formula in self.not_estimable:
            return f"{formula}: not estimable ({self.not_estimable[formula]})."
        rows = self._slopes()
        rows = rows[rows["formula"] == formula]
        if rows.empty:
            check_option("formula", formula, self.table["formula"].unique())
        n, N = int(rows["n_human"].iloc[0]), int(rows["n_unlabeled"].iloc[0])
        effective = _median(rows["effective_n"])
        return (
            f"{formula}: {n} humans plus {N} simulated respondents give the precision "
            f"of {effective:.0f} humans (median over its terms; gain "
            f"{effective / n:.2f}x, λ {_median(rows['lam']):.2f})."
        )

    def caveats(self) -> tuple[str, ...]:
        """A sentence per fit that could not be estimated (a formula's humans-only or
        rectified fit: no rows in the tables; its simulated-only one: NaN columns), per
        formula whose humans-only fit is warned of (``table["warning"]``) and per
        formula that left humans out."""
        failed = [
            f"{f}: not estimable ({why})." for f, why in self.not_estimable.items()
        ]
        for formula, note in self.notes["rows"].items():
            if note["warning"]:
                failed.append(f"{formula}: warning: {note['warning']}.")
            if note["dropped"]:
                failed.append(
                    f"{formula}: {note['dropped']} of the {self.n_human} humans are left "
                    "out (a missing value in a variable it uses, or no prediction)."
                )
            if note["naive_not_estimable"]:
                failed.append(
                    f"{formula}: the simulated-only fit is not estimable "
                    f"({note['naive_not_estimable']})."
                )
        return tuple(failed)

    def lines(self) -> tuple[str, ...]:
        """Each formula's ``sentence``, then the ``caveats``."""
        formulas = dict.fromkeys(self.table["formula"])
        return (*(self.sentence(formula) for formula in formulas), *self.caveats())

    def _repr_html_(self) -> str:
        """Jupyter's display: ``lines()``, then a row per formula and term with the
        humans-only and rectified estimates [CI] and the gain."""
        return summary_html(
            heading=f"Rectified estimates with {self.simulator}",
            about=f"{self.n_human} humans, {self.n_unlabeled} simulated-only "
            f"respondents, {1 - self.alpha:.0%} intervals",
            lines=self.lines(),
            columns=("formula", "term", "humans only [CI]", "rectified [CI]", "gain"),
            labels=2,
            rows=[
                (row["formula"], row["term"],
                 interval_text(row["classical_estimate"], row["classical_ci_low"],
                               row["classical_ci_high"]),
                 interval_text(row["rectified_estimate"], row["rectified_ci_low"],
                               row["rectified_ci_high"]),
                 number(row["gain"], digits=2))
                for row in self.table.to_dict("records")
            ],
        )  # fmt: skip

    def _slopes(self) -> pd.DataFrame:
        """The table without intercepts (what the headline numbers summarise)."""
        return self.table[self.table["term"].map(is_finding).astype(bool)]


def rectify(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulator: Simulator,
    *,
    unlabeled: int | pd.DataFrame,
    family: str = "ols",
    cov: str = SANDWICH,
    items: Sequence[str] | None = None,
    treatment: Sequence[str] | str | None = None,
    alpha: float = 0.05,
    lam: Lam | Literal["tuned_overall"] = "tuned",
    samples: int = 10,
    seed: int | None = 0,
    progress: bool | None = None,
) -> Rectified:
    """PPI++ estimates of every model of the study (or of ``formula``) from the humans,
    the simulator's answers for them and ``unlabeled`` simulated-only respondents.

    ``unlabeled``: a persona frame, or a number of the humans' personas re-drawn with
    the treatment re-randomised (a study with a treatment only; see the module
    docstring). Predictions are the
    simulator's expected answers where it gives option probabilities
    (``predict_proba``, in score mode), else the mean of ``samples`` sampled answers;
    an item a formula uses as a factor (``C(item)``) takes the most likely answer.
    ``cov``: ``"HC0"`` (the sandwich, as ``fit`` names it) or ``"cluster:<column>"``
    (labeled rows summed within clusters); with a study, each model's own ``cluster:``
    covariance, else the sandwich. ``treatment``: the arm column(s) of a formula (a study declares its own).
    ``lam``: ``"tuned"`` (each term's estimate from the fit whose λ minimises that
    term's variance, so no term pays for another's), ``"tuned_overall"`` (one λ per
    model minimising its terms' summed variance, ppi-python's default criterion) or a
    number in [0, 1]; tuned at its own estimate. Respondents a fine-tuned simulator
    was trained on cannot be labeled data.
    """
    setup = _setup(
        formula_or_study, human_df, simulator, unlabeled=unlabeled, family=family,
        cov=cov, items=items, treatment=treatment, alpha=alpha, lam=lam,
        samples=samples,
    )  # fmt: skip
    human_df = setup.study.blank_missing(human_df)  # declared non-answers are missing
    rng = np.random.default_rng(seed)
    frames = _frames(setup, human_df, unlabeled, rng=rng)
    predicted = _predict(
        simulator, frames, setup, samples=samples, rng=rng, progress=progress
    )
    rows, not_estimable, notes = [], {}, {}
    for model in setup.study.models:
        try:
            found, note = _rectify_model(
                model, setup, human_df, predicted, lam=lam, alpha=alpha, rng=rng,
                redrawn=0 if isinstance(unlabeled, pd.DataFrame) else unlabeled,
            )  # fmt: skip
        except (EstimationError, DataError) as exc:  # DataError: a level the labeled
            not_estimable[model.formula] = str(exc)  # humans lack among the others
            continue
        rows.extend(found)
        notes[model.formula] = note
    estimates = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    return Rectified(
        study=setup.study,
        table=_wide(estimates, notes),
        estimates=estimates,
        components=_components(notes),
        n_human=len(human_df),
        n_unlabeled=len(frames["unlabeled"]) if "unlabeled" in frames else unlabeled,
        unlabeled="persona frame" if isinstance(unlabeled, pd.DataFrame)
        else "re-randomised humans",
        alpha=alpha,
        lam=lam,
        simulator=repr(simulator),
        predictions=_prediction_kind(simulator, samples=samples),
        not_estimable=not_estimable,
        notes={"rows": notes, "identity": identity_of(simulator)},
    )  # fmt: skip


# --- a labeled subsample of the humans ----------------------------------------------------


@dataclass(frozen=True)
class LabeledSplit:
    """Some of the humans as the labeled data, the others' personas as the
    simulated-only respondents, and every human's own fit to judge the result by.

    ``labeled``: the humans drawn (answers included): ``rectify``'s ``human_df``.
    ``unlabeled``: the other humans' personas, their answers dropped: ``rectify``'s
    ``unlabeled`` (standard PPI, as the personas come from the same population).
    ``reference``: each model fitted to all the humans (``Fit.table``'s columns and
    ``formula``; declared missing codes blanked, as ``rectify`` blanks them), what the
    report and ``report.rectified_text`` show as "all humans". ``n_human``: all the humans.
    """

    labeled: pd.DataFrame
    unlabeled: pd.DataFrame
    reference: pd.DataFrame
    n_human: int


def split_labeled(
    study: Study,
    human_df: pd.DataFrame,
    *,
    frac: float | None = None,
    n: int | None = None,
    seed: int | None = 0,
) -> LabeledSplit:
    """Label a random ``frac`` (or ``n``) of the humans, drawn with ``seed``; the others'
    personas become the simulated-only respondents and all of them the reference.

    How good is rectifying on a few humans? Here the answer is known: the fit to every
    human. Respondents a fine-tuned simulator was trained on must be left out of
    ``human_df`` first: ``rectify`` refuses them as labeled data
    (``simval.bench.evaluation_sample(exclude=...)`` drops them).
    """
    labeled, rest = pilot(human_df, frac=frac, n=n, seed=seed)
    _check_humans(study, human_df, who="all the humans")
    everyone = study.blank_missing(human_df)
    reference = pd.concat(
        [
            fit(m.formula, everyone, family=m.family, cov=m.cov).table.assign(
                formula=m.formula
            )
            for m in study.models
        ]
    )
    return LabeledSplit(
        labeled=labeled,
        unlabeled=rest.drop(columns=list(study.item_names)),
        reference=reference,
        n_human=len(human_df),
    )


# --- checks before any work ---------------------------------------------------------------


def check_inputs(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    *,
    unlabeled: int | pd.DataFrame,
    lam: Lam | Literal["tuned_overall"] = "tuned",
    alpha: float = 0.05,
) -> None:
    """Every check ``rectify`` makes that needs no simulator, and every model's
    data checks and fit to the humans (``comparison.check_human_models``, as
    ``validate`` makes them), so that a command refuses bad input (and a model the
    humans cannot estimate) before it loads a model."""
    setup = _setup(
        formula_or_study, human_df, None, unlabeled=unlabeled, family="ols",
        cov=SANDWICH, items=None, treatment=None, alpha=alpha, lam=lam, samples=1,
    )  # fmt: skip
    _check_humans(setup.study, human_df, who="the labeled humans")


def _check_humans(study: Study, human_df: pd.DataFrame, *, who: str) -> None:
    """Each model's data checks and fit to ``who`` (``check_human_models``, one model
    at a time, as each may cluster on its own column), the failing formula named."""
    for model in study.models:
        alone = dataclasses.replace(study, models=(model,))
        try:
            check_human_models(alone, human_df)
        except (EstimationError, DataError) as exc:
            named = model.formula in str(exc)
            raise type(exc)(
                str(exc) if named else f"{model.formula!r} on {who}: {exc}"
            ) from None


@dataclass(frozen=True)
class _Setup:
    """The resolved study and what each model needs, checked before any simulation."""

    study: Study
    simulated: tuple[Item, ...]
    factors: frozenset[str]
    persona_columns: tuple[str, ...]
    treatment: tuple[str, ...]
    arms: pd.DataFrame  # one row per arm: its treatment levels and its share
    covs: Mapping[str, str]  # formula -> "HC0" or "cluster:<column>"


def _setup(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulator: object,
    *,
    unlabeled: object,
    family: str,
    cov: str,
    items: Sequence[str] | None,
    treatment: Sequence[str] | str | None,
    alpha: float,
    lam: object,
    samples: object,
) -> _Setup:
    """Resolve the study and check every input against the human data."""
    check_alpha(alpha)
    if lam not in ("tuned", OVERALL_LAM) and not (
        isinstance(lam, int | float) and not isinstance(lam, bool) and 0 <= lam <= 1
    ):
        raise refuse("lam", lam, f"'tuned', {OVERALL_LAM!r} or a number in [0, 1]")
    check_count("samples", samples)
    if cov != SANDWICH and not (
        isinstance(cov, str) and cov.startswith(CLUSTER_PREFIX)
    ):
        raise refuse("cov", cov, "'HC0' (the sandwich) or 'cluster:<column>'")
    if not isinstance(human_df, pd.DataFrame) or human_df.empty:
        raise DataError("the human data is empty")
    if not human_df.index.is_unique:
        raise DataError("the human data's index is not unique; reset it first")
    study = _study(
        formula_or_study, human_df, simulator, family=family, cov=cov, items=items,
        treatment=treatment,
    )  # fmt: skip
    if simulator is not None:
        check_no_leakage(human_df, simulator)
        if not isinstance(simulator, Simulator):
            raise OptionError(
                f"{type(simulator).__name__} has no simulate(personas, items, *, seed)"
            )
    if study.weight is not None:
        raise OptionError(
            f"the study declares survey weights ({study.weight!r}); PPI++ here assumes "
            "equally weighted, randomly labeled humans, so rectify does not take them"
        )
    persona_columns = study.persona_columns_of(human_df)
    for model in study.models:
        if model.family not in PPI_FAMILIES:
            raise OptionError(
                f"formula {model.formula!r}: PPI++ rectifies the families "
                f"{', '.join(PPI_FAMILIES)}, not {model.family!r}"
            )
    covs = {m.formula: _fit_cov(m, persona_columns) for m in study.models}
    _check_unlabeled(unlabeled, study=study, persona_columns=persona_columns)
    used = set().union(*(formula_variables(m.formula) for m in study.models))
    return _Setup(
        study=study,
        simulated=tuple(i for i in study.items if i.name in used),
        factors=frozenset(i.name for i in categorical_items(study)),
        persona_columns=persona_columns,
        treatment=study.treatment,
        arms=_arm_shares(human_df, study.treatment),
        covs=covs,
    )


def _study(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulator: object,
    *,
    family: str,
    cov: str,
    items: Sequence[str] | None,
    treatment: Sequence[str] | str | None,
) -> Study:
    """The study to rectify: the one given, or a one-model study of the formula."""
    if isinstance(formula_or_study, Study):
        if (family, cov, items, treatment) != ("ols", SANDWICH, None, None):
            raise OptionError(
                "family, cov, items and treatment come from the study; leave them unset"
            )
        study = formula_or_study
        study.check_data(human_df)
    else:
        declared = simulator.study if isinstance(simulator, StudySimulator) else None
        base = formula_study(
            formula_or_study, human_df, declared=declared, family=family, cov=cov,
            items=items,
        )  # fmt: skip
        arms = (treatment,) if isinstance(treatment, str) else tuple(treatment or ())
        absent = [c for c in arms if c not in human_df.columns]
        if absent:
            raise DataError(
                f"treatment column(s) {', '.join(absent)} are not in the human data"
            )
        persona = tuple(c for c in base.persona if c not in arms)
        study = Study(
            items=base.items, persona=persona, treatment=arms, models=base.models
        )
    return study


def _fit_cov(model: Model, persona_columns: Sequence[str]) -> str:
    """The covariance a model is rectified with: its clustering, else the sandwich."""
    if not model.cov.startswith(CLUSTER_PREFIX):
        return SANDWICH
    column = model.cov.removeprefix(CLUSTER_PREFIX)
    if column not in persona_columns:
        raise DataError(
            f"cluster column {column!r} of {model.formula!r} is not a persona column"
        )
    return model.cov


def _check_unlabeled(
    unlabeled: object, *, study: Study, persona_columns: Sequence[str]
) -> None:
    """A persona frame with the persona columns, or a positive number with a treatment."""
    if isinstance(unlabeled, pd.DataFrame):
        if unlabeled.empty:
            raise DataError("the unlabeled persona frame has no rows")
        missing = [
            c
            for c in persona_columns
            if c not in unlabeled.columns and c not in study.treatment
        ]
        if missing:
            raise DataError(
                f"the unlabeled persona frame lacks persona column(s): {', '.join(missing)}"
            )
        return
    if isinstance(unlabeled, bool) or not isinstance(unlabeled, int) or unlabeled < 1:
        raise refuse(
            "unlabeled", unlabeled, "a persona frame or a whole number of at least 1"
        )
    if not study.treatment:
        raise OptionError(
            f"unlabeled={unlabeled} re-draws the humans' personas under a re-randomised "
            "treatment, and none is declared: pass unlabeled=<DataFrame> of personas "
            "drawn from the population independently of the humans, or label some "
            "humans with split_labeled and pass its .unlabeled (re-drawn personas "
            "alone add only noise)"
        )


def _arm_shares(human_df: pd.DataFrame, treatment: Sequence[str]) -> pd.DataFrame:
    """Each arm's treatment levels and its share of the humans with a complete arm."""
    if not treatment:
        return pd.DataFrame({"share": [1.0]})
    counts = human_df[list(treatment)].value_counts(dropna=True, sort=False)
    if counts.empty:
        raise DataError("no human respondent has every treatment column answered")
    arms = counts.reset_index(name="count")
    arms["share"] = arms.pop("count") / counts.sum()
    return arms


# --- the personas and the simulator's answers for them --------------------------------------


def _frames(
    setup: _Setup,
    human_df: pd.DataFrame,
    unlabeled: int | pd.DataFrame,
    *,
    rng: np.random.Generator,
) -> dict[str, pd.DataFrame]:
    """The personas the simulator answers: the humans' own (``labeled``), and either
    the persona frame (``unlabeled``, its missing arms drawn) or the humans under every
    arm (``arm <i>``); ``naive``: the simulated-only respondents the naive fit uses
    (the frame, or the humans' personas re-drawn with re-randomised arms)."""
    columns = list(setup.persona_columns)
    frames = {"labeled": human_df[columns]}
    if isinstance(unlabeled, pd.DataFrame):
        frame = unlabeled.reset_index(drop=True)
        frames["unlabeled"] = _with_arms(frame, setup, rng=rng)[columns]
        frames["naive"] = frames["unlabeled"]
        return frames
    for position, arm in setup.arms.iterrows():
        frames[f"arm {position}"] = human_df[columns].assign(
            **{column: arm[column] for column in setup.treatment}
        )
    drawn = human_df[columns].iloc[rng.integers(len(human_df), size=unlabeled)]
    frame = drawn.drop(columns=list(setup.treatment)).reset_index(drop=True)
    frames["naive"] = _with_arms(frame, setup, rng=rng)[columns]
    return frames


def _with_arms(
    frame: pd.DataFrame, setup: _Setup, *, rng: np.random.Generator
) -> pd.DataFrame:
    """``frame`` with the treatment columns it lacks drawn with the humans' arm shares."""
    absent = [c for c in setup.treatment if c not in frame.columns]
    if not absent:
        return frame
    drawn = rng.choice(len(setup.arms), size=len(frame), p=setup.arms["share"])
    return frame.assign(**{c: setup.arms[c].to_numpy()[drawn] for c in absent})


def _predict(
    simulator: Simulator,
    frames: Mapping[str, pd.DataFrame],
    setup: _Setup,
    *,
    samples: int,
    rng: np.random.Generator,
    progress: bool | None,
) -> dict[str, pd.DataFrame]:
    """Each frame's personas with the simulator's answers for the used items beside
    them (same index as the frame): predictions (``_predictions``), and for the
    ``naive`` frame sampled answers, as a study run on simulated respondents alone
    would have them."""
    predicting = {name: frame for name, frame in frames.items() if name != "naive"}
    stacked = pd.concat(predicting.values(), ignore_index=True)
    answers = _predictions(
        simulator, stacked, setup.simulated, factors=setup.factors, samples=samples,
        rng=rng, progress=progress,
    )  # fmt: skip
    predicted, start = {}, 0
    for name, frame in predicting.items():
        block = answers.iloc[start : start + len(frame)].set_axis(frame.index)
        predicted[name] = pd.concat([frame, block], axis=1)
        start += len(frame)
    naive = frames["naive"]
    sampled = simulator.simulate(naive, setup.simulated, seed=rng.integers(2**63))
    sampled = check_output(
        sampled, personas=naive, items=setup.simulated, simulator=simulator
    )
    predicted["naive"] = pd.concat([naive, sampled], axis=1)
    return predicted


def _predictions(
    simulator: Simulator,
    personas: pd.DataFrame,
    items: Sequence[Item],
    *,
    factors: frozenset[str],
    samples: int,
    rng: np.random.Generator,
    progress: bool | None,
) -> pd.DataFrame:
    """Per persona and item, the expected answer (the most likely one for a factor),
    from option probabilities where the simulator gives them (a number item too wide
    to score aside), else from samples (a number item's mean answer)."""
    scored = [
        i for i in items if answers_by_scoring(simulator) and i.choices is not None
    ]
    drawn = [i for i in items if i not in scored]
    columns = {}
    steps = progress_bar(
        scored, desc=f"rectify: {simulator!r} answers", total=len(scored),
        unit="items", enabled=(progress is not False) and bool(scored),
    )  # fmt: skip
    for item in steps:
        probabilities = simulator.predict_proba(personas, item).to_numpy(dtype=float)
        columns[item.name] = _summarise(
            probabilities, list(item.choices.values()), factor=item.name in factors
        )
    if drawn:
        draws = _draws(
            simulator, personas, drawn, samples=samples, rng=rng, progress=progress
        )
    for item in drawn:
        values = np.stack([d[item.name].to_numpy(dtype=float) for d in draws], axis=1)
        if item.is_number:
            answered = np.isfinite(values).sum(axis=1)
            total = np.nansum(values, axis=1)
            columns[item.name] = np.where(
                answered > 0, total / np.maximum(answered, 1), np.nan
            )
            continue
        counts = np.stack([(values == code).sum(axis=1) for code in item.codes], axis=1)
        shares = (
            counts
            / np.where(counts.sum(axis=1) > 0, counts.sum(axis=1), np.nan)[:, None]
        )
        columns[item.name] = _summarise(shares, item.codes, factor=item.name in factors)
    return pd.DataFrame({i.name: columns[i.name] for i in items}, index=personas.index)


def _draws(
    simulator: Simulator,
    personas: pd.DataFrame,
    items: Sequence[Item],
    *,
    samples: int,
    rng: np.random.Generator,
    progress: bool | None,
) -> list[pd.DataFrame]:
    """``samples`` checked answer sets of the simulator for the personas."""
    draws = []
    seeds = rng.integers(2**63, size=samples)
    steps = progress_bar(
        seeds, desc=f"rectify: {simulator!r} samples", total=samples,
        unit="samples", enabled=progress,
    )  # fmt: skip
    for seed in steps:
        answers = simulator.simulate(personas, items, seed=seed)
        draws.append(
            check_output(answers, personas=personas, items=items, simulator=simulator)
        )
    return draws


def _summarise(
    shares: np.ndarray, codes: Sequence[float], *, factor: bool
) -> np.ndarray:
    """The expected code per row of answer shares (over ``codes``), or the most likely
    code for a factor; NaN where a row has no answer."""
    codes = np.asarray(codes, dtype=float)
    missing = ~np.isfinite(shares).all(axis=1)
    safe = np.where(missing[:, None], 0.0, shares)
    if factor:
        value = codes[np.argmax(safe, axis=1)]
    else:
        value = safe @ codes / np.where(missing, 1.0, safe.sum(axis=1))
    return np.where(missing, np.nan, value)


def _prediction_kind(simulator: object, *, samples: int) -> str:
    """How the predictions were made, in words (for the result and its report)."""
    if answers_by_scoring(simulator):
        return "expected answers from the simulator's option probabilities"
    return f"mean of {samples} sampled answers per persona"


# --- one model --------------------------------------------------------------------------


def _rectify_model(
    model: Model,
    setup: _Setup,
    human_df: pd.DataFrame,
    predicted: Mapping[str, pd.DataFrame],
    *,
    redrawn: int,
    lam: Lam,
    alpha: float,
    rng: np.random.Generator,
) -> tuple[list[tuple], dict[str, Any]]:
    """The classical, naive and rectified rows of one model, and its row counts."""
    cov = setup.covs[model.formula]
    human_fit = fit(model.formula, human_df, family=model.family, cov=cov)
    arm_names = [name for name in predicted if name.startswith("arm ")]
    designs = {
        name: human_fit.arrays(frame)
        for name, frame in (("human", human_df), *predicted.items())
    }
    index = designs["human"][0]
    for name in ("labeled", *arm_names):  # humans with an answer of their own and
        index = index.intersection(designs[name][0], sort=False)  # every predicted one
    if len(index) < 2:
        raise EstimationError(
            "fewer than 2 humans have both their own and the simulator's answers"
        )
    keep = ~human_fit.table["term"].isin(human_fit.aliased).to_numpy()
    terms = human_fit.table["term"][keep].tolist()

    def rows_of(name: str, labels: pd.Index | None = None) -> Rows:
        kept, X, y = designs[name]
        at = slice(None) if labels is None else kept.get_indexer(labels)
        return Rows(X[at][:, keep], y[at])

    human, own = rows_of("human", index), rows_of("labeled", index)
    arms = [
        (rows_of(name, index), float(share))
        for name, share in zip(arm_names, setup.arms["share"])
    ]
    unlabeled = _redrawn(arms, size=redrawn, rng=rng) if arms else rows_of("unlabeled")
    clusters = (
        human_df.loc[index, cov.removeprefix(CLUSTER_PREFIX)].to_numpy()
        if cov.startswith(CLUSTER_PREFIX)
        else None
    )
    simulated = {i.name for i in setup.simulated}
    rhs = formula_variables(model.formula) - {model.outcome}
    options = {
        "tune_at": "fit",
        "family": model.family,
        "covariates_predicted": bool(rhs & simulated),
        "clusters": clusters,
        "arms": arms,
    }
    classical = ppi_fit(
        human=human, predicted=own, unlabeled=unlabeled, lam=0.0, **options
    )
    sampled = rows_of("naive")
    try:  # the simulated rows alone may not identify the model (a constant answer)
        naive = _inference(
            ppi_fit(
                human=sampled, predicted=sampled, unlabeled=sampled, lam=0.0,
                family=model.family, covariates_predicted=True,
            ),
            alpha=alpha,
        )  # fmt: skip
        naive_problem = None
    except EstimationError as exc:
        naive = [(math.nan,) * 6] * len(terms)
        naive_problem = str(exc)
    if lam == "tuned":  # each term from the fit whose λ is tuned for it
        fits = [
            ppi_fit(human=human, predicted=own, unlabeled=unlabeled, lam="tuned",
                    tune_for=j, **options)
            for j in range(len(terms))
        ]  # fmt: skip
    else:
        overall = "tuned" if lam == OVERALL_LAM else lam
        fits = [
            ppi_fit(
                human=human, predicted=own, unlabeled=unlabeled, lam=overall, **options
            )
        ] * len(terms)
    rectified = [_inference(f, alpha=alpha)[j] for j, f in enumerate(fits)]
    rows = [
        (model.formula, term, method, *values)
        for method, found in (
            ("classical", _inference(classical, alpha=alpha)),
            ("naive", naive),
            ("rectified", rectified),
        )
        for term, values in zip(terms, found)
    ]
    note = {
        "n_human": len(index),
        "n_unlabeled": len(unlabeled.y),
        "dropped": len(human_df) - len(index),
        "naive_not_estimable": naive_problem,
        "warning": _small_sample(human, classical, family=model.family),
        "lam": {t: f.lam for t, f in zip(terms, fits)},
        "components": {
            t: {
                part: float(getattr(f.components, part)[j])
                for part in (*COMPONENTS, *ERRORS)
            }
            for j, (t, f) in enumerate(zip(terms, fits))
        },
    }
    return rows, note


def _small_sample(human: Rows, classical: Estimate, *, family: str) -> str:
    """Why the humans-only fit may be unstable, in words ("" where nothing is): fewer
    than ``EVENTS_PER_TERM`` events (the rarer outcome of a binary one; rows of any
    other) per coefficient, or near separation (``NEAR_CERTAIN``)."""
    rows, terms = human.X.shape
    found = []
    if family in ("logit", "probit"):
        events = int(min(np.sum(human.y == 1), np.sum(human.y == 0)))
        if events < EVENTS_PER_TERM * terms:
            found.append(
                f"{events} humans give the rarer answer for {terms} coefficients "
                f"(under {EVENTS_PER_TERM} per coefficient)"
            )
        eta = human.X @ classical.coef
        sure = np.sum(np.abs(eta) > _CERTAIN_ETA[family])
        if sure:
            found.append(
                f"near separation: the humans-only fit gives {sure} of them a "
                f"probability within {NEAR_CERTAIN:g} of 0 or 1 (largest |estimate| "
                f"{np.max(np.abs(classical.coef)):.1f})"
            )
    elif rows < EVENTS_PER_TERM * terms:
        found.append(
            f"{rows} humans for {terms} coefficients (under {EVENTS_PER_TERM} per "
            "coefficient)"
        )
    if found:
        found.append("its intervals are large-sample approximations")
    return "; ".join(found)


def _redrawn(
    arms: Sequence[tuple[Rows, float]], *, size: int, rng: np.random.Generator
) -> Rows:
    """``size`` simulated-only rows: a labeled persona drawn uniformly, its arm drawn
    with the arms' shares, and the simulator's answers for it under that arm."""
    shares = np.array([share for _, share in arms])
    people = rng.integers(len(arms[0][0].y), size=size)
    chosen = rng.choice(len(arms), size=size, p=shares / shares.sum())
    X = np.stack([rows.X for rows, _ in arms])[chosen, people]
    y = np.stack([rows.y for rows, _ in arms])[chosen, people]
    return Rows(X, y)


def _inference(estimate: Estimate, *, alpha: float) -> list[tuple[float, ...]]:
    """Per coefficient: estimate, standard error, z, two-sided p-value, interval."""
    errors = estimate.std_errors()
    low, high = estimate.intervals(alpha=alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = estimate.coef / errors
    p = 2 * scipy.stats.norm.sf(np.abs(z))
    return [tuple(map(float, v)) for v in zip(estimate.coef, errors, z, p, low, high)]


def _wide(
    estimates: pd.DataFrame, notes: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """A row per (formula, term): each method's numbers side by side, λ, the PPI
    correlation, the effective sample size and the gain."""
    if estimates.empty:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    values = ["estimate", "std_error", "ci_low", "ci_high", "p_value"]
    keys = ["formula", "term"]
    wide = estimates.loc[estimates["method"] == METHODS[0], keys].reset_index(drop=True)
    for method in METHODS:
        part = estimates.loc[estimates["method"] == method, [*keys, *values]]
        wide = wide.merge(
            part.rename(columns={v: f"{method}_{v}" for v in values}), on=keys
        )
    note = wide["formula"].map
    wide["n_human"] = note(lambda f: notes[f]["n_human"])
    wide["n_unlabeled"] = note(lambda f: notes[f]["n_unlabeled"])
    wide["lam"] = [notes[f]["lam"][t] for f, t in zip(wide["formula"], wide["term"])]
    components = _components(notes)
    wide["ppi_correlation"] = components["ppi_correlation"].to_numpy()
    # against the humans-only interval the table shows, so that a rectified interval
    # wider than it is a gain below 1 (both share the variance's λ = 0 end: ppi.py)
    wide["gain"] = (wide["classical_std_error"] / wide["rectified_std_error"]) ** 2
    wide["effective_n"] = wide["n_human"] * wide["gain"]
    wide["warning"] = note(lambda f: notes[f]["warning"])
    return wide[list(TABLE_COLUMNS)]


def _components(notes: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """A row per (formula, term): the rows used, λ, the variance components of the
    rectified fit (``simval.ppi.Components``) and the PPI correlation."""
    rows = [
        {"formula": formula, "term": term, "n_human": note["n_human"],
         "n_unlabeled": note["n_unlabeled"], "lam": note["lam"][term], **parts}
        for formula, note in notes.items()
        for term, parts in note["components"].items()
    ]  # fmt: skip
    columns = [c for c in COMPONENT_COLUMNS if c != "ppi_correlation"]
    frame = pd.DataFrame(rows, columns=columns)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["ppi_correlation"] = frame["cross"] / np.sqrt(
            frame["human"] * frame["predicted"]
        )
    return frame[list(COMPONENT_COLUMNS)]


def _median(values: pd.Series) -> float:
    """The median of the finite values (NaN when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan
