"""The fresh-sample reference: a whole-row double bootstrap, and its calibration.

The unit tests pin the scheme (``validate.fresh_reference``): one bootstrap
pseudo-population of whole humans, each replicate a resample of it in which every
person keeps their own answers, clusters drawn whole and renumbered, survey weights
used in the second draw, declared missing answers blank. The calibration tests run
``validate`` end to end on seeded data with realistic personas (nine persona
columns, four numeric ones with real slopes, a rare dummy, a four-level factor; a
6-term OLS formula and a 6-term logit) and read the reference's values from each
result: its difference-CI coverage must be 1 - alpha and its Wald rejection rate
alpha, within the binomial tolerance, on an independent, a clustered and a weighted
design, as those of a perfect simulator (fresh answers from the true process,
validated in the same call) are.

Measured before the change, the donor reference (answers of the 5 nearest persons
on numeric persona columns) covered 0.62 (OLS) and 0.85 (logit) on the independent
design, and its Wald test rejected in every data set for the OLS formula.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support import binomial_tolerance

import simval
from simval import FunctionSimulator, Item, MarginalSimulator, Model, Study
from simval.errors import OptionError
from simval.validate import fresh_reference, validate

N_HUMANS = 400
PERSON = Item(
    "who",
    "Which human answered (a copy of the persona id)",
    {str(i): i for i in range(N_HUMANS)},
)
ANSWER = Item("answer", "An answer with a declared don't-know", {"no": 0, "yes": 1})
ANSWER_DK = Item(
    "answer",
    "An answer with a declared don't-know",
    {"no": 0, "yes": 1},
    missing={"dk": 9},
)


def tiny_study(
    *, cov: str = "HC1", weight: str | None = None, dk: bool = False
) -> Study:
    """Items that copy who answered, so each replicate row reveals its human."""
    return Study(
        items=(PERSON, ANSWER_DK if dk else ANSWER),
        persona=("id", "site", "group"),
        models=(Model("answer ~ C(group)", "logit", cov),),
        weight=weight,
    )


@pytest.fixture
def human() -> pd.DataFrame:
    """400 humans in 40 sites of 10, a persona id copied by the item ``who``."""
    rng = np.random.default_rng(7)
    ids = np.arange(N_HUMANS)
    return pd.DataFrame(
        {
            "id": ids,
            "site": ids // 10,
            "group": rng.choice(["a", "b"], N_HUMANS),
            "who": ids,
            "answer": rng.integers(0, 2, N_HUMANS),
            "w": np.where(ids < 100, 4.0, 1.0),
        },
        index=pd.Index(ids * 3 + 1000, name="respondent"),
    )


# --- the scheme ---------------------------------------------------------------------


def test_replicates_keep_each_persons_own_answers(human):
    samples = fresh_reference(tiny_study(), human.drop(columns="w"), reps=5, seed=1)
    assert len(samples) == 5
    for sample in samples:
        assert sample.columns.tolist() == ["id", "site", "group", "who", "answer"]
        assert len(sample) == N_HUMANS
        assert (sample["who"] == sample["id"]).all()
        pd.testing.assert_frame_equal(
            sample, human.loc[sample.index, sample.columns], check_dtype=False
        )


def test_replicates_resample_one_pseudo_population(human):
    """A replicate holds 1 - exp(e^-1 - 1) = 0.47 of the humans (a resample of a
    resample: a human drawn c ~ Poisson(1) times into the pseudo-population is absent
    from a replicate with probability E[exp(-c)] = exp(e^-1 - 1));
    all replicates together hold only the pseudo-population's 1 - e^-1 = 0.63."""
    samples = fresh_reference(tiny_study(), human.drop(columns="w"), reps=40, seed=2)
    distinct = np.mean([s["id"].nunique() / N_HUMANS for s in samples])
    assert distinct == pytest.approx(1 - np.exp(np.exp(-1) - 1), abs=0.02)
    pooled = pd.concat(samples)["id"].nunique() / N_HUMANS
    assert pooled == pytest.approx(1 - np.exp(-1), abs=0.07)


def test_clusters_are_drawn_whole_and_renumbered(human):
    study = tiny_study(cov="cluster:site")
    for sample in fresh_reference(study, human.drop(columns="w"), reps=10, seed=3):
        sites = sample.groupby("site")["id"]
        # each new cluster is one whole original site, drawn once
        assert (sites.size() == 10).all()
        assert (sites.agg(lambda ids: ids.nunique()) == 10).all()
        assert (sites.agg(lambda ids: (ids // 10).nunique()) == 1).all()
        assert sample["site"].nunique() == 40  # a site drawn twice is two clusters


def test_weights_steer_the_replicates_not_the_pseudo_population(human):
    """The pseudo-population is a plain resample; each replicate draws from it in
    proportion to the weights (the first 100 humans weigh 4: 4/7 of the total)."""
    samples = fresh_reference(tiny_study(weight="w"), human, reps=40, seed=4)
    heavy = np.mean([(s["id"] < 100).mean() for s in samples])
    assert heavy == pytest.approx(400 / 700, abs=0.05)
    assert all("w" not in s.columns for s in samples)


def test_declared_missing_answers_are_blank(human):
    human = human.drop(columns="w").assign(
        answer=np.where(np.arange(N_HUMANS) % 4 == 0, 9, human["answer"])
    )
    samples = fresh_reference(tiny_study(dk=True), human, reps=3, seed=5)
    for sample in samples:
        assert (
            sample["answer"].isna().to_numpy().tolist()
            == (sample["id"] % 4 == 0).tolist()
        )
        assert (sample["answer"].dropna() != 9).all()


def test_seeds_reproduce_and_differ(human):
    human = human.drop(columns="w")
    first = fresh_reference(tiny_study(), human, reps=2, seed=6)
    again = fresh_reference(tiny_study(), human, reps=2, seed=6)
    other = fresh_reference(tiny_study(), human, reps=2, seed=7)
    for a, b in zip(first, again):
        pd.testing.assert_frame_equal(a, b)
    assert not first[0].index.equals(other[0].index)


def test_bad_reps_names_the_culprit(human):
    with pytest.raises(
        OptionError,
        match=r"^reps=0 is not allowed; choose a whole number of at least 1$",
    ):
        fresh_reference(tiny_study(), human, reps=0)


def test_validation_notes_describe_the_reference(human):
    result = validate(
        tiny_study(), human.drop(columns="w"), MarginalSimulator(human), reps=3,
        resamples=0, progress=False,
    )  # fmt: skip
    assert "double bootstrap" in result.notes["reference"]
    assert "reference_fallback_share" not in result.notes
    (formula,) = result.notes["reference_recovery"]
    assert formula == "answer ~ C(group)"
    found = result.notes["reference_recovery"][formula]
    assert set(found) == {
        "coverage", "false_positive_rate", "wald_p_value", "failed_share",
    }  # fmt: skip
    assert found["failed_share"] == 0
    assert result.notes["reference_redraws"] == 0
    headline = result.headline.set_index("metric")["reference"]
    assert found["coverage"] == pytest.approx(headline["coverage"])
    assert not hasattr(simval, "FreshSampleSimulator")
    assert "FreshSampleSimulator" not in simval.simulators.__all__


# --- calibration on realistic personas ---------------------------------------------------

ALPHA = 0.05
N = 350
REPS = 4
OLS = "y ~ age + income + ideology + educ + C(veteran) + C(gender)"
LOGIT = "z ~ age + ideology + educ + C(veteran) + C(region)"
DESIGNS = {"independent": 100, "clustered": 50, "weighted": 50}
"""Data sets per design (n = 350 each; about 0.4 s per data set)."""
SITES = 50


def people(rng: np.random.Generator, design: str) -> pd.DataFrame:
    """Nine persona columns (age, ideology, education, income and children numeric;
    veteran a 7% dummy), a site for the clustered design, weights for the weighted one."""
    age = rng.integers(18, 90, N).astype(float)
    ideology = np.clip(np.round(4 + 1.5 * rng.normal(size=N) + 0.01 * (age - 50)), 1, 7)
    educ = np.clip(np.round(13 + 2.5 * rng.normal(size=N)), 8, 20)
    frame = pd.DataFrame(
        {
            "age": age,
            "ideology": ideology,
            "educ": educ,
            "income": np.exp(0.08 * (educ - 13) + 0.5 * rng.normal(size=N)) * 3.6,
            "children": rng.poisson(1.0, N).astype(float),
            "gender": rng.choice(["f", "m"], N),
            "veteran": np.where(rng.random(N) < 0.07, "yes", "no"),
            "region": rng.choice(["ne", "mw", "s", "w"], N, p=[0.2, 0.25, 0.35, 0.2]),
            "urban": rng.choice(["urban", "suburb", "rural"], N),
        }
    )
    if design == "clustered":
        frame["site"] = rng.integers(0, SITES, N)
    if design == "weighted":  # the south over-sampled threefold, weights that undo it
        frame["w"] = np.where(frame["region"] == "s", 1 / 3, 1.0) * rng.uniform(
            0.5, 1.5, N
        )
    return frame


def true_answers(personas: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The true process: a 0-10 score (OLS) and a yes/no (logit) with slopes on every
    numeric persona column the formulas read; in the clustered design a site effect."""
    site = 0.0
    if "site" in personas:
        site = np.random.default_rng(99).normal(0, 0.5, SITES)[
            personas["site"].to_numpy()
        ]
    veteran = (personas["veteran"] == "yes").to_numpy()
    south = (personas["region"] == "s").to_numpy()
    score = (
        4 + 0.03 * (personas["age"] - 50) + 0.25 * personas["income"]
        + 0.5 * (personas["ideology"] - 4) + 0.15 * (personas["educ"] - 13)
        + 0.8 * veteran - 0.4 * (personas["gender"] == "m") + 0.3 * south + site
        + 1.3 * rng.normal(size=len(personas))
    )  # fmt: skip
    eta = (
        -0.3 + 0.02 * (personas["age"] - 50) + 0.45 * (personas["ideology"] - 4)
        - 0.12 * (personas["educ"] - 13) + 0.7 * veteran + 0.4 * south + site
    )  # fmt: skip
    return pd.DataFrame(
        {
            "y": np.clip(np.round(score), 0, 10).astype(int),
            "z": (rng.random(len(personas)) < 1 / (1 + np.exp(-eta))).astype(int),
        },
        index=personas.index,
    )


def realistic_study(design: str) -> Study:
    cov = "cluster:site" if design == "clustered" else "HC1"
    persona = ("age", "ideology", "educ", "income", "children", "gender", "veteran",
               "region", "urban") + (("site",) if design == "clustered" else ())  # fmt: skip
    return Study(
        items=(
            Item("y", "Score 0-10", {str(k): k for k in range(11)}),
            Item("z", "Yes or no", {"no": 0, "yes": 1}),
        ),
        persona=persona,
        models=(Model(OLS, "ols", cov), Model(LOGIT, "logit", cov)),
        weight="w" if design == "weighted" else None,
    )


def perfect(personas: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """The perfect simulator: fresh answers from the true process."""
    return true_answers(personas, np.random.default_rng(seed))


@pytest.fixture(scope="module", params=list(DESIGNS))
def calibration(request) -> tuple[str, pd.DataFrame]:
    """Per data set and formula: the reference's and the perfect simulator's coverage
    and Wald rejection, and both headline JSDs, all from one validate call."""
    design = request.param
    rows = []
    for s in range(DESIGNS[design]):
        rng = np.random.default_rng(s)
        personas = people(rng, design)
        human = pd.concat([personas, true_answers(personas, rng)], axis=1)
        result = validate(
            realistic_study(design), human, FunctionSimulator(perfect),
            reps=REPS, resamples=0, seed=s, subgroups=[], progress=False,
        )  # fmt: skip
        headline = result.headline.set_index("metric")
        for row in result.verdicts.itertuples(index=False):
            reference = result.notes["reference_recovery"][row.formula]
            simulated = result.recovery.query(
                "formula == @row.formula and subgroup == 'overall'"
            ).iloc[0]
            rows.append(
                {
                    "dataset": s,
                    "formula": row.formula,
                    "reference_coverage": reference["coverage"],
                    "reference_p": reference["wald_p_value"],
                    "redraws": result.notes["reference_redraws"],
                    "perfect_coverage": simulated["coverage"],
                    "perfect_p": simulated["wald_p_value"],
                    "reference_jsd": headline.loc["jsd", "reference"],
                    "perfect_jsd": headline.loc["jsd", "value"],
                }
            )
    return design, pd.DataFrame(rows)


def test_reference_covers_and_rejects_like_a_perfect_simulator(calibration):
    """Per formula, the reference's mean difference-CI coverage lies within the
    binomial band of 1 - alpha (each data set's coverage is an average, so the band
    over data sets is conservative) and its Wald test rejects in alpha of the data
    sets where the perfect simulator's is defined (the F reference needs more human
    degrees of freedom than terms), as a perfect simulator's do."""
    design, frame = calibration
    datasets = DESIGNS[design]
    for formula, rows in frame.groupby("formula"):
        for who in ("reference", "perfect"):
            p_values = rows[f"{who}_p"].astype(float)
            # the reference's test is defined wherever the perfect simulator's is
            defined = rows["perfect_p"].astype(float).notna()
            assert p_values[defined].notna().all(), (design, formula, who)
            coverage = rows[f"{who}_coverage"].mean()
            rejection = (p_values[defined] < ALPHA).mean()
            assert abs(coverage - (1 - ALPHA)) <= binomial_tolerance(1 - ALPHA, datasets), (
                design, formula, who, coverage,
            )  # fmt: skip
            assert abs(rejection - ALPHA) <= binomial_tolerance(ALPHA, datasets), (
                design, formula, who, rejection,
            )  # fmt: skip


def test_reference_jsd_is_the_noise_of_an_independent_sample(calibration):
    """The reference's JSD matches the perfect simulator's (two independent samples'
    noise) within four standard errors of the paired difference over data sets."""
    _, frame = calibration
    per_dataset = frame.groupby("dataset").first()
    gap = per_dataset["reference_jsd"] - per_dataset["perfect_jsd"]
    assert abs(gap.mean()) <= 4 * gap.std(ddof=1) / np.sqrt(len(gap)), gap.mean()
