"""FreshSampleSimulator: matched donors from a bootstrap pseudo-population, and its calibration.

The unit tests pin the donor rule (never the persona itself, exact match on
categorical columns, nearest on numeric ones, fallbacks, seeds, errors). The
calibration tests run a known data-generating process many times and check, with
a two-sided binomial tolerance, that a replicate from the fresh-sample reference
compares with the humans as an independent sample would, and that
``BootstrapSimulator`` (a resampling reference) does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import simval
from simval import (
    BootstrapSimulator,
    DataError,
    FreshSampleSimulator,
    Item,
    Simulator,
    jsd,
)
from simval.simulators import check_output

N_HUMANS = 400
ROW = Item(
    "row",
    "Which human answered (the donor's position)",
    {str(i): i for i in range(N_HUMANS + 1)},
)
ARM = Item("arm_code", "The donor's arm, coded", {"a": 0, "b": 1})
GENDER = Item("gender_code", "The donor's gender, coded", {"f": 0, "m": 1, "x": 2})
AGE = Item("age_copy", "The donor's age", {str(a): a for a in range(18, 81)})
ITEMS = (ROW, ARM, GENDER, AGE)


def binomial_tolerance(p: float, trials: int, *, z: float = 4.0) -> float:
    """Half-width of a two-sided band for an observed rate: z binomial standard errors."""
    return z * np.sqrt(p * (1 - p) / trials)


@pytest.fixture
def human() -> pd.DataFrame:
    """Humans whose items copy who they are, so each answer reveals its donor."""
    rng = np.random.default_rng(7)
    arm = rng.choice(["a", "b"], N_HUMANS)
    gender = rng.choice(["f", "m"], N_HUMANS)
    age = rng.integers(18, 81, N_HUMANS)
    return pd.DataFrame(
        {
            "arm": arm,
            "gender": gender,
            "age": age,
            "income": rng.normal(50_000, 10_000, N_HUMANS),
            "row": np.arange(N_HUMANS),
            "arm_code": (arm == "b").astype(int),
            "gender_code": (gender == "m").astype(int),
            "age_copy": age,
        },
        index=pd.Index(np.arange(N_HUMANS) * 3 + 1000, name="respondent"),
    )


def resample(frame: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Rows drawn with replacement, keeping their index labels (duplicates included)."""
    rng = np.random.default_rng(seed)
    return frame.iloc[rng.integers(len(frame), size=len(frame))]


# --- the donor rule --------------------------------------------------------------


def test_follows_protocol_and_is_exported(human):
    simulator = FreshSampleSimulator(human, match=["arm", "gender", "age"])
    assert isinstance(simulator, Simulator)
    assert simval.FreshSampleSimulator is FreshSampleSimulator
    assert "FreshSampleSimulator" in simval.__all__
    assert "FreshSampleSimulator" in simval.simulators.__all__
    assert repr(simulator) == (
        f"FreshSampleSimulator(n={N_HUMANS}, match=['arm', 'gender', 'age'])"
    )
    assert repr(FreshSampleSimulator(human)) == f"FreshSampleSimulator(n={N_HUMANS})"


def test_population_is_a_bootstrap_resample_keeping_labels(human):
    simulator = FreshSampleSimulator(human, seed=3)
    population = simulator.population
    assert len(population) == N_HUMANS
    assert population.index.isin(human.index).all()
    assert not population.index.is_unique  # drawn with replacement
    pd.testing.assert_frame_equal(population, human.loc[population.index])
    assert population.index.nunique() / N_HUMANS == pytest.approx(0.632, abs=0.06)


@pytest.mark.parametrize(
    ("match", "neighbours"),
    [((), 5), (("arm", "gender"), 5), (("age",), 1), (("arm", "age"), 3)],
)
def test_never_returns_a_personas_own_answers(human, match, neighbours):
    personas = resample(human, seed=1)
    simulator = FreshSampleSimulator(human, match=match, neighbours=neighbours, seed=2)
    out = simulator.simulate(personas, ITEMS, seed=3)
    own_row = human.index.get_indexer(personas.index)
    assert (out["row"].to_numpy() != own_row).all()
    assert out.index.equals(personas.index)


def test_output_follows_item_order_and_passes_the_contract(human):
    personas = resample(human, seed=1)[["arm", "gender"]]
    items = (AGE, ROW, GENDER)
    out = FreshSampleSimulator(human, match=["gender"]).simulate(
        personas, items, seed=0
    )
    assert out.columns.tolist() == ["age_copy", "row", "gender_code"]
    check_output(out, personas=personas, items=items, simulator="test")


def test_returns_one_donors_whole_answer_vector(human):
    out = FreshSampleSimulator(human).simulate(resample(human, seed=1), ITEMS, seed=0)
    donors = human.iloc[out["row"].to_numpy()]
    for item in (ARM, GENDER, AGE):
        assert (out[item.name].to_numpy() == donors[item.name].to_numpy()).all()


def test_missing_answers_stay_missing(human):
    human = human.assign(maybe=np.where(np.arange(N_HUMANS) % 4 == 0, np.nan, 1.0))
    maybe = Item("maybe", "Sometimes unanswered", {"yes": 1})
    out = FreshSampleSimulator(human).simulate(human, (ROW, maybe), seed=0)
    expected = human["maybe"].to_numpy()[out["row"].to_numpy()]
    np.testing.assert_array_equal(out["maybe"].to_numpy(), expected)
    assert out["maybe"].isna().any()


def test_categorical_match_is_exact(human):
    personas = resample(human, seed=4)
    out = FreshSampleSimulator(human, match=["arm", "gender"], seed=5).simulate(
        personas, ITEMS, seed=6
    )
    assert (out["arm_code"].to_numpy() == personas["arm_code"].to_numpy()).all()
    assert (out["gender_code"].to_numpy() == personas["gender_code"].to_numpy()).all()


def test_empty_cell_drops_the_last_categorical_column_and_is_counted(human):
    lone = pd.DataFrame(
        {
            "arm": ["a"],
            "gender": ["x"],
            "age": [40],
            "income": [50_000.0],
            "row": [N_HUMANS],
            "arm_code": [0],
            "gender_code": [2],
            "age_copy": [40],
        },
        index=pd.Index([1], name="respondent"),
    )
    human = pd.concat([human, lone])
    simulator = FreshSampleSimulator(human, match=["arm", "gender"], seed=0)
    assert simulator.fallbacks == 0
    out = simulator.simulate(human, ITEMS, seed=1)
    assert simulator.fallbacks == 1  # only the lone gender-x human
    donor = out.loc[1]
    assert donor["arm_code"] == 0  # arm kept, gender dropped
    assert donor["gender_code"] != 2 and donor["row"] != N_HUMANS
    rest = out.drop(index=1)
    assert (rest["gender_code"] == human.drop(index=1)["gender_code"]).all()
    simulator.simulate(human.loc[[1, 1, 1000]], ITEMS, seed=2)
    assert simulator.fallbacks == 3  # cumulative over calls


def test_unknown_cell_of_a_stranger_falls_back_to_everyone(human):
    strangers = pd.DataFrame({"arm": ["c"] * 20, "gender": ["z"] * 20})
    simulator = FreshSampleSimulator(human, match=["arm", "gender"], seed=0)
    out = simulator.simulate(strangers, ITEMS, seed=1)
    assert simulator.fallbacks == 20
    assert out["row"].between(0, N_HUMANS - 1).all()


def test_missing_categorical_value_is_a_level_of_its_own(human):
    human = human.assign(
        gender=human["gender"].where(human["row"] % 5 != 0),
        gender_code=human["gender_code"].where(human["row"] % 5 != 0, 2),
    )
    personas = resample(human, seed=2)
    out = FreshSampleSimulator(human, match=["gender"], seed=3).simulate(
        personas, ITEMS, seed=4
    )
    assert (out["gender_code"].to_numpy() == personas["gender_code"].to_numpy()).all()
    assert (personas["gender_code"] == 2).sum() > 20


def test_missing_numeric_value_counts_as_zero_distance(human):
    personas = resample(human, seed=2).assign(age=np.nan)
    out = FreshSampleSimulator(human, match=["arm", "age"], seed=3).simulate(
        personas, ITEMS, seed=4
    )
    assert (out["arm_code"].to_numpy() == personas["arm_code"].to_numpy()).all()
    # Age is no guide, so donors are spread over the whole cell, not near any age.
    assert out["age_copy"].std() == pytest.approx(human["age"].std(), rel=0.15)


def test_numeric_match_takes_near_neighbours(human):
    personas = resample(human, seed=8)
    simulator = FreshSampleSimulator(human, match=["age"], neighbours=5, seed=9)
    out = simulator.simulate(personas, ITEMS, seed=10)
    gap = np.abs(out["age_copy"].to_numpy() - personas["age"].to_numpy())
    shuffled = np.abs(
        np.random.default_rng(0).permutation(personas["age"].to_numpy())
        - personas["age"].to_numpy()
    )
    assert shuffled.mean() > 15  # a random donor is about 21 years away
    assert gap.mean() < 1.0  # about 6 humans share each age


def test_numeric_columns_are_standardised(human):
    human = human.assign(income_copy=human["income"])
    income = Item("income_copy", "The donor's income", {"any": 0})
    personas = resample(human, seed=11)
    out = FreshSampleSimulator(human, match=["age", "income"], seed=12).simulate(
        personas, (AGE, income), seed=13
    )
    for persona_column, item in (("age", AGE), ("income", income)):
        gap = out[item.name].to_numpy() - personas[persona_column].to_numpy()
        # Unscaled, income (SD 10,000) would swamp age (SD 18) and age gaps would
        # be as large as a random donor's.
        assert np.abs(gap).mean() / human[persona_column].std() < 0.25


def test_seeds_reproduce_and_differ(human):
    personas = resample(human, seed=1)
    simulator = FreshSampleSimulator(human, match=["arm", "age"], seed=0)
    first = simulator.simulate(personas, ITEMS, seed=5)
    pd.testing.assert_frame_equal(first, simulator.simulate(personas, ITEMS, seed=5))
    assert not first.equals(simulator.simulate(personas, ITEMS, seed=6))
    again = FreshSampleSimulator(human, match=["arm", "age"], seed=0)
    pd.testing.assert_frame_equal(first, again.simulate(personas, ITEMS, seed=5))
    other = FreshSampleSimulator(human, match=["arm", "age"], seed=1)
    assert not other.population.index.equals(simulator.population.index)


def test_bad_input_names_the_culprit(human):
    with pytest.raises(DataError, match="empty"):
        FreshSampleSimulator(human.iloc[0:0])
    with pytest.raises(DataError, match="not unique.*1000"):
        FreshSampleSimulator(pd.concat([human, human.iloc[[0]]]))
    with pytest.raises(DataError, match="single row"):
        FreshSampleSimulator(human.iloc[[0]])
    with pytest.raises(DataError, match="match column.*region"):
        FreshSampleSimulator(human, match=["arm", "region"])
    with pytest.raises(DataError, match="neighbours=0"):
        FreshSampleSimulator(human, match=["age"], neighbours=0)
    simulator = FreshSampleSimulator(human, match=["arm", "age"])
    with pytest.raises(DataError, match="personas lack match column.*arm"):
        simulator.simulate(human[["age"]], ITEMS)
    with pytest.raises(DataError, match="item.*: zz"):
        simulator.simulate(human, (Item("zz", "Z?", {"a": 1}),))
    with pytest.raises(DataError, match="not in the personas: age"):
        simulator.simulate(human.assign(age="old"), ITEMS)


# --- calibration against a known data-generating process ---------------------------

DATASETS = 600  # S: the binomial band 0.95 +- 0.036 excludes the resampling reference
SAMPLE = 300
LEVEL_Z = stats.norm.ppf(0.975)
Y = Item("y", "Continuous outcome (the simulator only reads the name)", {"any": 0})
Z = Item("z", "Binary outcome", {"no": 0, "yes": 1})
Q = Item("q", "Five-option item", {str(k): k for k in range(1, 6)})
Q_PROBS = np.array([[0.1, 0.2, 0.3, 0.25, 0.15], [0.3, 0.3, 0.2, 0.1, 0.1]])


def draw_population_sample(rng: np.random.Generator) -> pd.DataFrame:
    """One human sample: y = 1 + 0.5[arm=b] - 0.3[gender=m] + N(0, 1), a logit z, a 5-option q."""
    arm = rng.choice(["a", "b"], SAMPLE)
    gender = rng.choice(["f", "m"], SAMPLE)
    b, m = (arm == "b").astype(float), (gender == "m").astype(float)
    y = 1 + 0.5 * b - 0.3 * m + rng.normal(size=SAMPLE)
    z = rng.random(SAMPLE) < 1 / (1 + np.exp(-(-0.2 + 0.8 * b - 0.4 * m)))
    cdf = np.cumsum(Q_PROBS[m.astype(int)], axis=1)
    q = 1 + (rng.random(SAMPLE)[:, None] > cdf).sum(axis=1)
    return pd.DataFrame(
        {"arm": arm, "gender": gender, "y": y, "z": z.astype(int), "q": q}
    )


def arm_estimates(data: pd.DataFrame) -> np.ndarray:
    """(b, se) of the arm term for OLS y ~ C(arm) + C(gender) and the logit of z, HC1."""
    design = np.column_stack(
        [
            np.ones(len(data)),
            (data["arm"] == "b").to_numpy(float),
            (data["gender"] == "m").to_numpy(float),
        ]
    )
    ols = sm.OLS(data["y"].to_numpy(), design).fit(cov_type="HC1")
    logit = sm.Logit(data["z"].to_numpy(), design).fit(disp=0, cov_type="HC1")
    return np.array([[ols.params[1], ols.bse[1]], [logit.params[1], logit.bse[1]]])


def difference_ci_covers_zero(
    human: pd.DataFrame, replicate: pd.DataFrame
) -> np.ndarray:
    """Per outcome: |b_rep - b_h| <= z * sqrt(se_h^2 + se_rep^2)."""
    h, r = arm_estimates(human), arm_estimates(replicate)
    return np.abs(r[:, 0] - h[:, 0]) <= LEVEL_Z * np.hypot(h[:, 1], r[:, 1])


@pytest.fixture(scope="module")
def calibration() -> dict[str, np.ndarray]:
    """Per dataset and reference: difference-CI coverage (OLS, logit) and JSD of q."""
    results: dict[str, list] = {"fresh": [], "bootstrap": []}
    distances: dict[str, list] = {"fresh": [], "bootstrap": [], "independent": []}
    for s in range(DATASETS):
        rng = np.random.default_rng(s)
        human = draw_population_sample(rng)
        personas = resample(human, seed=10_000 + s)[["arm", "gender"]]
        references = {
            "fresh": FreshSampleSimulator(human, match=["arm", "gender"], seed=s),
            "bootstrap": BootstrapSimulator(human),
        }
        for name, simulator in references.items():
            answers = simulator.simulate(personas, (Y, Z, Q), seed=rng)
            replicate = answers.assign(
                arm=personas["arm"].to_numpy(), gender=personas["gender"].to_numpy()
            )
            results[name].append(difference_ci_covers_zero(human, replicate))
            distances[name].append(jsd(human["q"], replicate["q"]))
        distances["independent"].append(
            jsd(human["q"], draw_population_sample(rng)["q"])
        )
    return {
        **{f"cover_{k}": np.array(v) for k, v in results.items()},
        **{f"jsd_{k}": np.array(v) for k, v in distances.items()},
    }


def test_fresh_sample_difference_ci_covers_at_the_nominal_rate(calibration):
    tolerance = binomial_tolerance(0.95, DATASETS)
    coverage = calibration["cover_fresh"].mean(axis=0)  # (OLS, logit)
    assert (np.abs(coverage - 0.95) <= tolerance).all(), coverage
    # The band is two-sided: an interval that always covers would fail it.
    assert 0.95 + tolerance < 0.99


def test_bootstrap_difference_ci_over_covers(calibration):
    """A bootstrap replicate is centred on the humans: b_rep - b_h has variance V_h
    only, not V_h + V_rep, so the interval is ~sqrt(2) too wide and covers with
    probability P(|Z| <= 1.96 sqrt 2) = 0.994: a resampling reference, not the
    value a perfect simulator would reach."""
    theory = 2 * stats.norm.cdf(LEVEL_Z * np.sqrt(2)) - 1
    coverage = calibration["cover_bootstrap"].mean(axis=0)
    assert (coverage > 0.95 + binomial_tolerance(0.95, DATASETS)).all(), coverage
    assert (np.abs(coverage - theory) <= binomial_tolerance(theory, DATASETS)).all(), (
        coverage
    )
    assert (coverage >= 0.99).all(), coverage


def test_fresh_sample_jsd_shows_the_noise_of_two_independent_samples(calibration):
    fresh = calibration["jsd_fresh"]
    independent = calibration["jsd_independent"]
    bootstrap = calibration["jsd_bootstrap"]
    # Four standard errors of a difference of two means over the datasets.
    tolerance = 4 * np.hypot(
        fresh.std(ddof=1) / np.sqrt(DATASETS),
        independent.std(ddof=1) / np.sqrt(DATASETS),
    )
    assert abs(fresh.mean() - independent.mean()) <= tolerance
    # A bootstrap replicate carries one sample's noise, not two: about 1/sqrt(2) less.
    assert bootstrap.mean() < independent.mean() - tolerance
    assert bootstrap.mean() / independent.mean() == pytest.approx(2**-0.5, abs=0.08)
