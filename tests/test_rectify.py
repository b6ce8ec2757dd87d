"""simval.rectify on a study: its rows equal PPI++ on hand-built designs, its intervals
cover at the nominal rate under good, biased and uninformative simulators (seeded
simulations, two-sided binomial tolerances), re-drawn personas need the arm-centred
variance, and bad input fails before any simulation."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.special
from support import binomial_tolerance

from simval.errors import DataError, EstimationError, OptionError, SimvalError
from simval.ppi import Rows, ppi_fit
from simval.rectify import (
    TABLE_COLUMNS,
    Rectified,
    check_inputs,
    rectify,
    split_labeled,
)
from simval.regression import fit as fit_model
from simval.report import rectified_text, write_rectified_report
from simval.simulators.reference import FunctionSimulator
from simval.study import Item, Model, Study

ALPHA = 0.1


# --- a world: a belief (1-5) and an action (0/1), a persona the formula leaves out --------

BELIEF = Item("belief", "How concerned are you?", {str(c): c for c in range(1, 6)})
ACT = Item("act", "Do you share it?", {"No": 0, "Yes": 1})
CUTS = np.array([-2.2, -0.8, 0.8, 2.2])
TERMS = ["Intercept", "C(arm)[T.b]", "belief", "x"]
"""The terms of the action's logit on the arm, the belief and x."""


def belief_shares(x, z, treated, *, shift=0.0, slope=1.0) -> np.ndarray:
    """An ordered logit of the belief on x, the unstated persona z and the arm."""
    latent = slope * (0.5 * x + 1.2 * z - 0.6 * treated) + shift
    cdf = scipy.special.expit(CUTS[None, :] - latent[:, None])
    return np.diff(np.column_stack([np.zeros(len(x)), cdf, np.ones(len(x))]), axis=1)


def act_probability(belief, x, z, treated) -> np.ndarray:
    """The action also depends on z, which the formula leaves out (and a simulator
    that reads the whole persona can know)."""
    linear = -0.3 + 0.6 * treated - 0.5 * belief + 0.4 * x + 1.2 * z
    return scipy.special.expit(linear)


def people(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n humans: persona x, z, a randomised arm, their belief and action."""
    x, z = rng.normal(size=n), rng.normal(size=n)
    arm = rng.choice(["a", "b"], size=n)
    shares = belief_shares(x, z, arm == "b")
    belief = 1 + (rng.random(n)[:, None] > shares.cumsum(axis=1)).sum(axis=1)
    act = rng.binomial(1, act_probability(belief, x, z, arm == "b"))
    return pd.DataFrame({"x": x, "z": z, "arm": arm, "belief": belief, "act": act})


STUDY = Study(
    items=(BELIEF, ACT),
    persona=("x", "z"),
    treatment=("arm",),
    models=(Model("act ~ C(arm) + belief + x", "logit", "HC1"),),
)


@functools.cache
def truth() -> np.ndarray:
    """The formula's population coefficients (z left out: the best logit on the arm,
    the belief and x), from a fit to a million people."""
    population = people(np.random.default_rng(0), 1_000_000)
    found = fit_model(STUDY.models[0].formula, population, family="logit", cov="HC0")
    return found.table["estimate"].to_numpy()


class WorldSimulator:
    """Option probabilities from the world's own equations, distorted as asked:
    ``good`` is the world, ``biased`` shifts and steepens the belief and flattens the
    action, ``uninformative`` answers the same whatever the persona."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"WorldSimulator({self.kind!r})"

    def predict_proba(self, personas: pd.DataFrame, item: Item) -> pd.DataFrame:
        x, z = personas["x"].to_numpy(float), personas["z"].to_numpy(float)
        treated = (personas["arm"] == "b").to_numpy(float)
        if self.kind == "uninformative":
            x, z, treated = 0 * x, 0 * z, 0 * treated
        bias = {"shift": 0.8, "slope": 1.5} if self.kind == "biased" else {}
        shares = belief_shares(x, z, treated, **bias)
        if item.name == "belief":
            values = shares
        else:
            p = sum(
                shares[:, k] * act_probability(k + 1, x, z, treated) for k in range(5)
            )
            p = 0.5 + 0.4 * (p - 0.5) if self.kind == "biased" else p
            values = np.column_stack([1 - p, p])
        return pd.DataFrame(values, index=personas.index, columns=list(item.codes))

    def simulate(self, personas, items, *, seed=None) -> pd.DataFrame:
        """Each item's answer drawn from its option probabilities; the last personas
        and answers are kept (``last``) for the tests to refit."""
        rng = np.random.default_rng(seed)
        answers = {}
        for item in items:
            shares = self.predict_proba(personas, item).to_numpy()
            picked = (rng.random(len(shares))[:, None] > shares.cumsum(axis=1)).sum(1)
            answers[item.name] = np.asarray(item.codes)[picked]
        self.last = personas.assign(**answers)
        return pd.DataFrame(answers, index=personas.index)


# --- equal to PPI++ on designs built by hand ---------------------------------------------


def design(frame: pd.DataFrame) -> Rows:
    """The formula's design by hand: intercept, arm b, belief, x; the action."""
    X = np.column_stack(
        [
            np.ones(len(frame)),
            (frame["arm"] == "b").to_numpy(float),
            frame["belief"].to_numpy(float),
            frame["x"].to_numpy(float),
        ]
    )
    return Rows(X, frame["act"].to_numpy(float))


def expected(simulator: WorldSimulator, personas: pd.DataFrame) -> pd.DataFrame:
    """The personas with the simulator's expected belief and action beside them."""
    out = personas.copy()
    for item in (BELIEF, ACT):
        shares = simulator.predict_proba(personas, item).to_numpy()
        out[item.name] = shares @ np.asarray(item.codes, dtype=float)
    return out


def test_a_persona_frame_gives_ppi_on_the_formulas_design():
    """With a persona frame, every row of the table is ppi_fit on the hand-built
    design (classical: λ = 0; naive: the frame's sampled answers alone; rectified: one
    tuned λ), to 1e-10."""
    rng = np.random.default_rng(3)
    humans = people(rng, 300)
    frame = people(rng, 1200)[["x", "z", "arm"]]
    simulator = WorldSimulator("biased")
    result = rectify(
        STUDY, humans, simulator, unlabeled=frame, alpha=ALPHA, lam="tuned_overall",
        progress=False,
    )  # fmt: skip
    human, own = design(humans), design(expected(simulator, humans[["x", "z", "arm"]]))
    unlabeled = design(expected(simulator, frame))
    options = {"family": "logit", "covariates_predicted": True}
    by_method = {
        "classical": ppi_fit(
            human=human, predicted=own, unlabeled=unlabeled, lam=0.0, **options
        ),
        "naive": ppi_fit(
            human=design(simulator.last), predicted=design(simulator.last),
            unlabeled=design(simulator.last), lam=0.0, **options,
        ),
        "rectified": ppi_fit(
            human=human, predicted=own, unlabeled=unlabeled, tune_at="fit", **options
        ),
    }  # fmt: skip
    table = result.table
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(table["term"]) == TERMS
    for method, estimate in by_method.items():
        low, high = estimate.intervals(alpha=ALPHA)
        np.testing.assert_allclose(
            table[f"{method}_estimate"], estimate.coef, atol=1e-10
        )
        np.testing.assert_allclose(
            table[f"{method}_std_error"], estimate.std_errors(), atol=1e-10
        )
        np.testing.assert_allclose(table[f"{method}_ci_low"], low, atol=1e-10)
        np.testing.assert_allclose(table[f"{method}_ci_high"], high, atol=1e-10)
    rectified = by_method["rectified"]
    np.testing.assert_allclose(table["lam"], rectified.lam)
    np.testing.assert_allclose(table["ppi_correlation"], rectified.correlation)
    effective = rectified.components.human / rectified.std_errors() ** 2
    np.testing.assert_allclose(table["effective_n"], effective)
    np.testing.assert_allclose(table["gain"], effective / 300)
    # the humans' own variance at the rectified fit: near the humans-only one
    classical = by_method["classical"].std_errors() ** 2 * 300
    np.testing.assert_allclose(rectified.components.human, classical, rtol=0.1)
    assert (table["n_human"] == 300).all() and (table["n_unlabeled"] == 1200).all()
    long = result.estimates
    assert len(simulator.last) == len(frame)
    assert len(long) == 3 * len(TERMS)
    assert set(long["method"]) == {"classical", "naive", "rectified"}


def test_a_sampling_simulator_is_predicted_by_its_mean_answer():
    """Without option probabilities the prediction is the mean of ``samples`` sampled
    answers: rectify equals ppi_fit on designs of those means."""
    rng = np.random.default_rng(4)
    humans = people(rng, 200)
    frame = people(rng, 400)[["x", "z", "arm"]]
    world = WorldSimulator("good")
    sampler = FunctionSimulator(
        lambda personas, seed: world.simulate(personas, (BELIEF, ACT), seed=seed)
    )
    result = rectify(
        STUDY, humans, sampler, unlabeled=frame, samples=5, seed=9,
        lam="tuned_overall", progress=False,
    )  # fmt: skip
    assert result.predictions == "mean of 5 sampled answers per persona"
    seeds = np.random.default_rng(9).integers(2**63, size=5)
    personas = pd.concat([humans[["x", "z", "arm"]], frame], ignore_index=True)
    draws = [world.simulate(personas, (BELIEF, ACT), seed=s) for s in seeds]
    means = personas.assign(
        belief=np.mean([d["belief"] for d in draws], axis=0),
        act=np.mean([d["act"] for d in draws], axis=0),
    )
    own, unlabeled = design(means.iloc[:200]), design(means.iloc[200:])
    estimate = ppi_fit(
        human=design(humans), predicted=own, unlabeled=unlabeled, family="logit",
        covariates_predicted=True, tune_at="fit",
    )  # fmt: skip
    np.testing.assert_allclose(
        result.table["rectified_estimate"], estimate.coef, atol=1e-10
    )
    np.testing.assert_allclose(
        result.table["rectified_std_error"], estimate.std_errors(), atol=1e-10
    )


def test_cluster_robust_errors_at_lambda_zero_are_the_clustered_fit():
    """cluster:<column> sums the labeled gradients within clusters: at λ = 0 the
    errors are simval.fit's vcovCL (HC1 type) without its (n − 1)/(n − k) factor."""
    rng = np.random.default_rng(5)
    humans = people(rng, 400).assign(site=lambda d: np.arange(len(d)) // 8)
    study = Study(
        items=(BELIEF, ACT), persona=("x", "z", "site"), treatment=("arm",),
        models=(Model("act ~ C(arm) + belief + x", "logit", "cluster:site"),),
    )  # fmt: skip
    frame = people(rng, 800)[["x", "z", "arm"]].assign(site=-1)
    result = rectify(
        study, humans, WorldSimulator("good"), unlabeled=frame, lam=0.0, progress=False
    )
    reference = fit_model(study.models[0].formula, humans, family="logit",
                          cov="cluster:site").table  # fmt: skip
    n, k = len(humans), len(TERMS)
    np.testing.assert_allclose(
        result.table["rectified_estimate"], reference["estimate"], atol=1e-7
    )
    np.testing.assert_allclose(
        result.table["rectified_std_error"],
        reference["std_error"] * math.sqrt((n - k) / (n - 1)),
        rtol=1e-6,
    )


# --- coverage ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["good", "biased", "uninformative"])
def test_rectified_intervals_cover_with_re_randomised_personas(kind):
    """The humans' personas re-drawn under re-randomised arms (unlabeled=<number>):
    rectified (1 − alpha) intervals cover each true coefficient at the nominal rate
    within a two-sided binomial band; the biased simulator's simulated-only intervals
    do not; the good simulator narrows the arm's interval against the humans-only
    one, the uninformative one leaves every interval within 2% of it."""
    rng = np.random.default_rng({"good": 21, "biased": 22, "uninformative": 23}[kind])
    simulator = WorldSimulator(kind)
    datasets, n, N = 300, 300, 1500
    covered = naive_covered = 0
    ratios = []
    for _ in range(datasets):
        result = rectify(
            STUDY, people(rng, n), simulator, unlabeled=N, alpha=ALPHA,
            seed=int(rng.integers(2**31)), progress=False,
        )  # fmt: skip
        table = result.table
        covered += (table["rectified_ci_low"] <= truth()) & (
            truth() <= table["rectified_ci_high"]
        )
        naive_covered += (table["naive_ci_low"] <= truth()) & (
            truth() <= table["naive_ci_high"]
        )
        ratios.append(table["rectified_std_error"] / table["classical_std_error"])
    rate = covered.to_numpy() / datasets
    band = binomial_tolerance(1 - ALPHA, datasets)
    assert np.all(np.abs(rate - (1 - ALPHA)) <= band), rate
    ratio = np.median(ratios, axis=0)
    if kind == "biased":
        assert (naive_covered.to_numpy() / datasets < 0.5).all()
    if kind == "good":
        assert ratio[1] < 0.98, ratio  # the arm (measured 0.96)
    if kind == "uninformative":
        assert np.all(ratio <= 1.02), ratio


def re_drawn_world(rng: np.random.Generator, n: int, N: int):
    """Linear world y = 1 + 0.5x + 0.8t + 1.5z + e (t a randomised arm, z a persona
    the formula y ~ x + t leaves out); a biased simulator that knows z, answering each
    human under both arms; N simulated rows re-drawn from the humans' personas."""
    x, z = rng.normal(size=n), rng.normal(size=n)
    t = rng.integers(2, size=n).astype(float)
    y = 1 + 0.5 * x + 0.8 * t + 1.5 * z + rng.normal(size=n)

    def rows(arm: np.ndarray) -> Rows:
        guess = 0.3 + 0.6 * x + 1.2 * arm + 1.2 * z + 0.3 * x * arm
        return Rows(np.column_stack([np.ones(n), x, arm]), guess)

    arms = [(rows(np.zeros(n)), 0.5), (rows(np.ones(n)), 0.5)]
    who, which = rng.integers(n, size=N), rng.integers(2, size=N)
    unlabeled = Rows(
        np.stack([a.X for a, _ in arms])[which, who],
        np.stack([a.y for a, _ in arms])[which, who],
    )
    human = Rows(np.column_stack([np.ones(n), x, t]), y)
    return human, rows(t), arms, unlabeled


def test_re_drawn_personas_need_the_arm_centred_variance():
    """Why ``arms``: simulated-only rows re-drawn from the humans' own personas have a
    mean that depends on which humans were sampled. Treated as an independent sample
    (standard PPI variance) the intervals undercover; centred over the arms they cover."""
    rng = np.random.default_rng(31)
    datasets = 1000
    truth = np.array([1.0, 0.5, 0.8])
    covered = {"centred": np.zeros(3), "plain": np.zeros(3)}
    for _ in range(datasets):
        human, own, arms, unlabeled = re_drawn_world(rng, 200, 2000)
        options = {"human": human, "predicted": own, "unlabeled": unlabeled,
                   "family": "ols", "covariates_predicted": False}  # fmt: skip
        for name, given in (("centred", arms), ("plain", ())):
            low, high = ppi_fit(arms=given, **options).intervals(alpha=ALPHA)
            covered[name] += (low <= truth) & (truth <= high)
    band = binomial_tolerance(1 - ALPHA, datasets)
    rate = covered["centred"] / datasets
    assert np.all(np.abs(rate - (1 - ALPHA)) <= band), rate
    assert covered["plain"][0] / datasets < 1 - ALPHA - band, covered["plain"]


# --- per-term λ, the result's sentences ----------------------------------------------------


def test_per_term_lambda_is_tuned_for_each_term():
    """lam='tuned' (the default): each term's numbers are those of ppi_fit with λ tuned
    for that term (tune_for) at its own estimate (tune_at='fit'); λ differs across
    terms."""
    rng = np.random.default_rng(6)
    humans = people(rng, 400)
    frame = people(rng, 2000)[["x", "z", "arm"]]
    simulator = WorldSimulator("biased")
    result = rectify(STUDY, humans, simulator, unlabeled=frame, progress=False)
    table = result.table
    human = design(humans)
    own = design(expected(simulator, humans[["x", "z", "arm"]]))
    unlabeled = design(expected(simulator, frame))
    for j in range(len(TERMS)):
        alone = ppi_fit(
            human=human, predicted=own, unlabeled=unlabeled, family="logit",
            covariates_predicted=True, tune_for=j, tune_at="fit",
        )  # fmt: skip
        assert table["rectified_estimate"][j] == pytest.approx(alone.coef[j], abs=1e-10)
        assert table["lam"][j] == pytest.approx(alone.lam, abs=1e-12)
    assert table["lam"].nunique() > 1
    sentence = result.sentence(STUDY.models[0].formula)
    assert sentence.startswith(f"{STUDY.models[0].formula}: 400 humans plus 2000")
    summary = result.summary()
    assert summary["n_human"] == 400 and summary["n_unlabeled"] == 2000
    assert summary["median_gain"] == pytest.approx(
        table.loc[table["term"] != "Intercept", "gain"].median()
    )


@pytest.mark.parametrize("kind", ["good", "biased", "uninformative"])
@pytest.mark.parametrize("unlabeled", [400, "frame"])
def test_no_term_is_less_precise_than_the_humans_alone(kind, unlabeled):
    """With λ tuned per term at its own estimate (λ = 0 where that is narrower), every
    term's gain (humans-only / rectified SE, squared) is at least 1, whatever the
    simulator, in 5 samples each of 60 humans (where a λ tuned at the λ = 1 fit lost
    up to 4% on the disclosure task)."""
    rng = np.random.default_rng({"good": 41, "biased": 42, "uninformative": 43}[kind])
    for _ in range(5):
        frame = people(rng, 400)[["x", "z", "arm"]]
        result = rectify(
            STUDY, people(rng, 60), WorldSimulator(kind), progress=False,
            unlabeled=frame if unlabeled == "frame" else unlabeled,
        )  # fmt: skip
        assert (result.table["gain"] >= 1 - 1e-9).all(), result.table["gain"]


def test_the_gain_is_measured_against_the_humans_only_interval():
    """gain = (humans-only SE / rectified SE)², effective n = n × gain, for a tuned and
    a fixed λ; at λ = 1 with an uninformative simulator some rectified intervals are
    wider than the humans-only ones (up to 1.22x here), and exactly those rows have a
    gain below 1; tuned, none is wider."""
    rng = np.random.default_rng(44)
    frame = people(rng, 600)[["x", "z", "arm"]]
    humans = people(rng, 300)
    for kind, lam in (("good", "tuned"), ("uninformative", 1.0)):
        table = rectify(
            STUDY, humans, WorldSimulator(kind), unlabeled=frame, lam=lam,
            progress=False,
        ).table  # fmt: skip
        ratio = table["classical_std_error"] / table["rectified_std_error"]
        np.testing.assert_allclose(table["gain"], ratio**2, rtol=1e-12)
        np.testing.assert_allclose(
            table["effective_n"], table["n_human"] * table["gain"], rtol=1e-12
        )
        wider = (table["rectified_ci_high"] - table["rectified_ci_low"]) > (
            table["classical_ci_high"] - table["classical_ci_low"]
        )
        assert ((table["gain"] < 1) == wider).all()
        assert wider.any() if kind == "uninformative" else not wider.any()
        assert (table["warning"] == "").all()  # 300 humans, 4 coefficients


def near_separated(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n humans whose action x almost decides (a logit slope of 8 on x): the
    humans-only fit converges, with fitted probabilities within 1e-6 of 0 or 1."""
    humans = people(rng, n)
    return humans.assign(act=rng.binomial(1, scipy.special.expit(8 * humans["x"])))


def test_small_labeled_samples_are_warned_of_in_the_table_caveats_and_report(tmp_path):
    """39 labeled humans for the 4-coefficient logit: under 10 events per
    coefficient; with an action x almost decides, near separation as well. The
    warning is in the table (every row of the formula), the caveats and the
    report's section; 300 ordinary humans get none (the other test)."""
    rng = np.random.default_rng(45)
    formula = STUDY.models[0].formula
    for humans, separated in (
        (people(rng, 39), False),
        (near_separated(rng, 39), True),
    ):
        result = rectify(
            STUDY, humans, WorldSimulator("good"), unlabeled=200, progress=False
        )
        (warning,) = set(result.table["warning"])
        assert "rarer answer for 4 coefficients (under 10 per" in warning
        assert ("near separation" in warning) == separated, warning
        assert f"{formula}: warning: {warning}." in result.caveats()
    paths = write_rectified_report({"simulator": result}, out=tmp_path / "r.html")
    markdown = paths[1].read_text()
    assert "Small labeled sample: " in markdown and "near separation" in markdown


def test_the_command_prints_the_small_sample_warning(
    capsys, tmp_path, tiny_model_dir, private_cache, example_csv
):
    """simval rectify with 30 labeled humans prints the logit's warning."""
    from simval.cli import main
    from simval.tasks import load_task

    task = load_task("example")
    code = main(
        ["rectify", "simval/tasks/example/study.yaml", "--human", str(example_csv),
         "--model", str(tiny_model_dir), "--labeled-n", "30",
         "--out", str(tmp_path / "r.html")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    logit = next(m.formula for m in task.study.models if m.family == "logit")
    assert f"{logit}: warning: " in out and "per coefficient" in out


def test_split_labeled_labels_some_and_fits_every_human():
    """The labeled humans and the others' personas partition the humans; the
    reference is each model's fit to all of them, declared missing codes blanked
    as rectify blanks them (a 9 would otherwise be an answer of 9)."""
    rng = np.random.default_rng(11)
    humans = people(rng, 200)
    humans.loc[humans.index[:15], "belief"] = 9  # "don't know"
    study = dataclasses.replace(
        STUDY, items=(dataclasses.replace(BELIEF, missing={"don't know": 9}), ACT)
    )
    split = split_labeled(study, humans, frac=0.25, seed=3)
    assert (len(split.labeled), len(split.unlabeled), split.n_human) == (50, 150, 200)
    assert sorted([*split.labeled.index, *split.unlabeled.index]) == list(humans.index)
    assert list(split.unlabeled.columns) == ["x", "z", "arm"]
    formula = study.models[0].formula
    blanked = humans.assign(belief=humans["belief"].mask(humans["belief"] == 9))
    expected = fit_model(formula, blanked, family="logit", cov="HC1").table
    pd.testing.assert_frame_equal(
        split.reference.drop(columns="formula").reset_index(drop=True), expected
    )
    assert set(split.reference["formula"]) == {formula}
    again = split_labeled(study, humans, frac=0.25, seed=3)
    pd.testing.assert_frame_equal(again.labeled, split.labeled)
    with pytest.raises(OptionError, match="frac"):
        split_labeled(study, humans, frac=1.5)


def test_the_labeled_split_from_python_prints_what_the_command_prints(
    capsys, tmp_path, tiny_model_dir, private_cache, example_csv
):
    """simval rectify --labeled-frac 0.3 is split_labeled, rectify and rectified_text:
    the same labeled humans, the same estimates and the same printed table."""
    from simval.cli import main
    from simval.simulators.hf import HFSimulator
    from simval.tasks import load_task, read_human

    task = load_task("example")
    path = example_csv
    code = main(
        ["rectify", "simval/tasks/example/study.yaml", "--human", str(path),
         "--model", str(tiny_model_dir), "--labeled-frac", "0.3",
         "--out", str(tmp_path / "r.html")]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    split = split_labeled(task.study, read_human(path), frac=0.3, seed=0)
    simulator = HFSimulator(str(tiny_model_dir), study=task.study)
    result = rectify(
        task.study, split.labeled, simulator, unlabeled=split.unlabeled, seed=0,
        progress=False,
    )  # fmt: skip
    text = rectified_text(result, reference=split.reference)
    assert printed.startswith(text + "\n")
    assert "all humans" in text.splitlines()[len(result.lines())]
    table = pd.read_csv(tmp_path / "r.csv")
    assert set(table["n_human"]) == {36} and set(table["n_unlabeled"]) == {84}
    np.testing.assert_allclose(
        table["rectified_estimate"], result.table["rectified_estimate"], rtol=1e-12
    )


def test_a_formula_with_a_treatment_argument():
    """A formula names its arm column with treatment=; the simulator's own study
    gives the items' wording."""
    rng = np.random.default_rng(7)
    humans = people(rng, 300)
    simulator = WorldSimulator("good")
    result = rectify(
        "act ~ C(arm) + belief + x", humans, simulator, unlabeled=900,
        family="logit", items=["belief"], treatment="arm", progress=False,
    )  # fmt: skip
    assert isinstance(result, Rectified)
    assert list(result.table["term"]) == TERMS
    assert result.study.treatment == ("arm",)


# --- bad input -------------------------------------------------------------------------------


class Trained(WorldSimulator):
    training_index = (0, 1, 2)


@pytest.mark.parametrize(
    ("change", "error", "culprit"),
    [
        ({"lam": 2.0}, OptionError, "lam"),
        ({"cov": "HC3"}, OptionError, "cov"),
        ({"cov": "robust"}, OptionError,
         r"^cov='robust' is not allowed; choose 'HC0' \(the sandwich\) or 'cluster:<column>'$"),
        ({"samples": 0}, OptionError, "samples"),
        ({"alpha": 1.5}, OptionError, "alpha"),
        ({"unlabeled": 0}, OptionError, "unlabeled"),
        ({"unlabeled": pd.DataFrame({"x": [1.0]})}, DataError, "z"),
        ({"family": "probit"}, OptionError, "come from the study"),
        ({"simulator": Trained("good")}, DataError, "fine-tuning pilot"),
        ({"study": "act ~ C(arm) + belief + x", "family": "logit"}, OptionError,
         "none is declared: pass unlabeled=<DataFrame>"),
        ({"study": "act ~ C(arm) + belief", "family": "logit", "treatment": "group"},
         DataError, "group"),
        ({"study": dataclasses.replace(STUDY, models=(
            dataclasses.replace(STUDY.models[0], family="ologit"),))},
         OptionError, "families ols, logit, probit, poisson, not 'ologit'"),
    ],
)  # fmt: skip
def test_bad_input_fails_before_any_simulation(change, error, culprit):
    """Each bad argument is refused, naming it, before the simulator is asked."""

    class Counting(WorldSimulator):
        calls = 0

        def predict_proba(self, personas, item):
            Counting.calls += 1
            return super().predict_proba(personas, item)

    humans = people(np.random.default_rng(8), 100)
    arguments = {"unlabeled": 500, "progress": False}
    study = change.pop("study", STUDY)
    simulator = change.pop("simulator", Counting("good"))
    arguments.update(change)
    with pytest.raises(error, match=culprit):
        rectify(study, humans, simulator, **arguments)
    assert issubclass(error, SimvalError)
    assert Counting.calls == 0


# --- in the reports ----------------------------------------------------------------------


def test_the_report_shows_every_interval_and_the_sentence(tmp_path):
    """The rectified report of one simulator: the guarantee, the sentence, one forest plot and a table per
    formula with every method's interval; no absolute path of the machine."""
    rng = np.random.default_rng(9)
    result = rectify(
        STUDY, people(rng, 200), WorldSimulator("good"), unlabeled=600, progress=False
    )
    html, md = write_rectified_report({"good": result}, out=tmp_path / "r.html")
    markdown = md.read_text()
    formula = STUDY.models[0].formula
    assert result.sentence(formula).split(":")[1].strip() in markdown.replace("\\", "")
    for header in (
        "humans only \\[CI\\]",
        "simulated only \\[CI\\]",
        "rectified \\[CI\\]",
    ):
        assert header in markdown
    assert (
        "![" in markdown
        and (tmp_path / "r_figures" / "01-valid-inference.png").is_file()
    )
    assert str(tmp_path) not in html.read_text() and str(tmp_path) not in markdown


def test_a_replication_report_gains_the_section_after_the_coefficients(tmp_path):
    """write_report(rectified=): "Valid inference" right after "Coefficients", with every
    human's estimate beside (the validation's own human fit)."""
    from simval.report import write_report
    from simval.validate import validate

    rng = np.random.default_rng(10)
    humans = people(rng, 200)
    simulator = WorldSimulator("good")
    validation = validate(
        STUDY, humans, simulator, reps=2, resamples=10, progress=False
    )
    result = rectify(STUDY, humans, simulator, unlabeled=400, progress=False)
    _, markdown = write_report(
        {"good": validation}, out=tmp_path / "report.html", rectified={"good": result}
    )
    titles = [
        line[3:] for line in markdown.read_text().splitlines() if line[:3] == "## "
    ]
    assert titles[titles.index("Coefficients") + 1] == "Valid inference"
    assert "| all humans |" in markdown.read_text()


def test_humans_left_out_of_a_formula_are_named_in_the_caveats():
    """A human missing a formula's variable is dropped from that formula's fits (R's
    na.omit), and the caveats say how many, never silently."""
    humans = people(np.random.default_rng(11), 200)
    humans.loc[humans.index[:3], "belief"] = np.nan
    result = rectify(
        STUDY, humans, WorldSimulator("good"), unlabeled=400, progress=False
    )
    formula = STUDY.models[0].formula
    assert set(result.table["n_human"]) == {197}
    assert f"{formula}: 3 of the 200 humans are left out" in " ".join(result.caveats())


def test_bench_rectifies_the_formulas_ppi_covers_and_says_which_it_leaves():
    """A study with an ordered-logit formula beside a logit one: bench validates both,
    rectifies the logit one and names the ordered one in its note."""
    from simval.bench import bench

    study = dataclasses.replace(
        STUDY, models=(*STUDY.models, Model("belief ~ C(arm) + x", "ologit", "HC1"))
    )
    humans = people(np.random.default_rng(12), 1000)
    result = bench(
        {"good": WorldSimulator("good")}, humans, study, reps=3, seed=0,
        progress=False, resamples=20,
    )  # fmt: skip
    validation = result.validations["good"]
    assert set(validation.verdicts["formula"]) == {m.formula for m in study.models}
    assert set(result.rectified["good"].table["formula"]) == {STUDY.models[0].formula}
    assert result.inference_note == (
        "valid inference (PPI++) does not cover belief ~ C(arm) + x (family ologit)"
    )


def test_a_continuous_outcome_is_rectified_from_mean_simulated_numbers():
    """Formula mode on a continuous y: an open number item, predicted by the mean of the
    sampled numbers, so a simulator drawing from the true model rectifies the slope."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=600)
    humans = pd.DataFrame({"x": x[:150], "y": 1 + 0.5 * x[:150] + rng.normal(size=150)})

    def truth(personas, seed):
        noise = np.random.default_rng(seed).normal(size=len(personas))
        return pd.DataFrame(
            {"y": 1 + 0.5 * personas["x"] + noise}, index=personas.index
        )

    result = rectify(
        "y ~ x", humans, FunctionSimulator(truth), unlabeled=pd.DataFrame({"x": x[150:]}),
        samples=4, seed=1, progress=False,
    )  # fmt: skip
    row = result.table.set_index("term").loc["x"]
    assert abs(row["rectified_estimate"] - 0.5) < 4 * row["rectified_std_error"]
    assert row["rectified_std_error"] < row["classical_std_error"]


# --- an observational study: no treatment ---------------------------------------------------

VOTE = Item("vote", "Did you vote in the last election?", {"No": 0, "Yes": 1})
SURVEY = Study(
    items=(BELIEF, VOTE),
    persona=("x", "age", "veteran", "z"),
    models=(
        Model("vote ~ x + age + veteran", "logit", "HC1"),
        Model("belief ~ x + veteran", "ols", "HC1"),
    ),
)
"""A survey with no treatment: numeric personas x and age, a rare dummy (7% veterans)
and z, which the formulas leave out and the simulator reads."""


def survey_personas(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n personas of the survey's population."""
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "age": rng.integers(18, 91, size=n).astype(float),
            "veteran": (rng.random(n) < 0.07).astype(float),
            "z": rng.normal(size=n),
        }
    )


def survey_belief(personas: pd.DataFrame, *, biased: bool = False) -> np.ndarray:
    """An ordered logit of the belief on the personas (steeper and shifted if biased)."""
    latent = (
        0.6 * personas["x"] + 0.9 * personas["z"] + 0.8 * personas["veteran"]
        - 0.01 * (personas["age"] - 50)
    ).to_numpy()  # fmt: skip
    if biased:
        latent = 1.5 * latent + 0.7
    cdf = scipy.special.expit(CUTS[None, :] - latent[:, None])
    return np.diff(np.column_stack([np.zeros(len(latent)), cdf, np.ones(len(latent))]))


def survey_vote(personas: pd.DataFrame, *, biased: bool = False) -> np.ndarray:
    """The probability of voting (pulled towards 1/2 if biased)."""
    p = scipy.special.expit(
        -0.4 + 0.5 * personas["x"] + 0.03 * (personas["age"] - 50)
        + 0.9 * personas["veteran"] + personas["z"]
    ).to_numpy()  # fmt: skip
    return 0.5 + 0.4 * (p - 0.5) if biased else p


def surveyed(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n respondents of the survey: personas, belief and vote."""
    personas = survey_personas(rng, n)
    shares = survey_belief(personas)
    belief = 1 + (rng.random(n)[:, None] > shares.cumsum(axis=1)).sum(axis=1)
    return personas.assign(belief=belief, vote=rng.binomial(1, survey_vote(personas)))


class SurveySimulator(WorldSimulator):
    """The survey's own option probabilities (``good``) or distorted ones
    (``biased``); answers sampled from them (``WorldSimulator.simulate``)."""

    def predict_proba(self, personas: pd.DataFrame, item: Item) -> pd.DataFrame:
        biased = self.kind == "biased"
        if item.name == "belief":
            values = survey_belief(personas, biased=biased)
        else:
            p = survey_vote(personas, biased=biased)
            values = np.column_stack([1 - p, p])
        return pd.DataFrame(values, index=personas.index, columns=list(item.codes))


@functools.cache
def survey_truth() -> np.ndarray:
    """Both formulas' population coefficients, from fits to a million respondents."""
    population = surveyed(np.random.default_rng(0), 1_000_000)
    return np.concatenate(
        [
            fit_model(m.formula, population, family=m.family, cov="HC0").table[
                "estimate"
            ]
            for m in SURVEY.models
        ]
    )


@pytest.mark.parametrize("kind", ["good", "biased"])
@pytest.mark.parametrize("source", ["persona frame", "labeled split"])
def test_an_observational_study_covers_with_a_persona_frame_or_a_labeled_split(
    source, kind
):
    """No treatment: the simulated-only personas come from the population,
    independently of the labeled humans, either as a persona frame (--personas) or as
    the other humans of a random split (--labeled-frac). Each term's rectified
    interval, the rare dummy's included, covers at the nominal rate within a two-sided
    binomial band; the biased simulator's simulated-only intervals do not; the good
    simulator narrows every interval against the humans-only one."""
    seed = {"persona frame": 61, "labeled split": 63}[source] + (kind == "biased")
    rng = np.random.default_rng(seed)
    simulator = SurveySimulator(kind)
    datasets = 200
    covered = naive_covered = 0
    ratios = []
    for _ in range(datasets):
        if source == "persona frame":
            humans, frame = surveyed(rng, 300), survey_personas(rng, 1200)
        else:
            split = split_labeled(
                SURVEY, surveyed(rng, 1500), frac=0.2, seed=int(rng.integers(2**31))
            )
            humans, frame = split.labeled, split.unlabeled
        result = rectify(
            SURVEY, humans, simulator, unlabeled=frame, alpha=ALPHA,
            seed=int(rng.integers(2**31)), progress=False,
        )  # fmt: skip
        table = result.table
        assert (len(humans), len(table)) == (300, 7), result.not_estimable
        low, high = table["rectified_ci_low"], table["rectified_ci_high"]
        covered += ((low <= survey_truth()) & (survey_truth() <= high)).to_numpy()
        low, high = table["naive_ci_low"], table["naive_ci_high"]
        naive_covered += ((low <= survey_truth()) & (survey_truth() <= high)).to_numpy()
        ratios.append(table["rectified_std_error"] / table["classical_std_error"])
    rate = covered / datasets
    band = binomial_tolerance(1 - ALPHA, datasets)
    assert np.all(np.abs(rate - (1 - ALPHA)) <= band), rate
    ratio = np.median(ratios, axis=0)
    if kind == "biased":  # the x terms of both formulas
        assert (naive_covered[[1, 5]] / datasets < 0.5).all(), naive_covered
    else:
        assert np.all(ratio < 1), ratio


def test_an_observational_study_refuses_re_drawn_personas_naming_the_fix():
    """unlabeled=<number> without a treatment is refused before the simulator is asked,
    in Python's words: a persona DataFrame, or split_labeled's unlabeled personas."""

    class Counting(SurveySimulator):
        calls = 0

        def predict_proba(self, personas, item):
            Counting.calls += 1
            return super().predict_proba(personas, item)

    humans = surveyed(np.random.default_rng(9), 200)
    with pytest.raises(OptionError) as caught:
        rectify(SURVEY, humans, Counting("good"), unlabeled=500, progress=False)
    message = str(caught.value)
    assert message.startswith("unlabeled=500 re-draws the humans' personas")
    assert "unlabeled=<DataFrame>" in message and "split_labeled" in message
    assert "\n" not in message and Counting.calls == 0


@pytest.mark.parametrize(
    ("change", "error", "culprit"),
    [
        ({"act": np.nan}, DataError, r"item 'act' is missing on every row"),
        ({"x": np.nan}, DataError, r"'x' .*'act ~ C\(arm\) \+ belief \+ x'"),
        ("separated", EstimationError,
         r"^'act ~ C\(arm\) \+ belief \+ x' on the labeled humans: .*separat"),
    ],
)  # fmt: skip
def test_check_inputs_fits_the_humans_own_models(change, error, culprit):
    """check_inputs (what a command runs before it loads a model) makes validate's
    data checks and fits every model to the humans, and refuses a column a formula
    cannot use or a model they cannot estimate, naming the formula."""
    humans = people(np.random.default_rng(8), 100)
    check_inputs(STUDY, humans, unlabeled=500)
    if change == "separated":
        broken = humans.assign(act=(humans["x"] > 0).astype(int))
    else:
        broken = humans.assign(**change)
    with pytest.raises(error, match=culprit):
        check_inputs(STUDY, broken, unlabeled=500)


# --- an observational study on the command line ---------------------------------------------

OBSERVATIONAL_YAML = """\
items:
  - name: concern
    text: How concerned are you about what happens to your email address once you share it?
    options: {Not at all: 1, Slightly: 2, Somewhat: 3, Very: 4, Extremely: 5}
  - name: share
    text: Do you usually enter your email address to read an article?
    options: {"No": 0, "Yes": 1}
persona: [age, age_band, gender]
models:
  - formula: share ~ concern + age
    family: logit
  - formula: concern ~ C(gender) + age
    family: ols
"""
OBSERVATIONAL_FORMULAS = {"share ~ concern + age", "concern ~ C(gender) + age"}


def observational_files(folder: Path) -> tuple[Path, Path, Path]:
    """The example task's respondents as an observational survey (no treatment): its
    study.yaml, 120 of them as the humans and 300 others' personas, as files."""
    from simval.tasks import load_task

    people_ = load_task("example").human.drop(columns="arm")
    study, human, personas = (
        folder / "study.yaml", folder / "data.csv", folder / "personas.csv"
    )  # fmt: skip
    study.write_text(OBSERVATIONAL_YAML)
    people_.iloc[:120].to_csv(human, index_label="respondent")
    people_.iloc[120:420][["age", "age_band", "gender"]].to_csv(personas, index=False)
    return study, human, personas


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command loads its model."""
    from simval.cli_flags import ModelFlags

    def loaded(self, study):
        pytest.fail("the model was loaded")

    monkeypatch.setattr(ModelFlags, "simulator", loaded)


def test_an_observational_study_refuses_unlabeled_naming_the_flags(
    capsys, tmp_path, no_model
):
    """simval rectify --unlabeled on a study without a treatment: exit 2, one line in
    the command's words (--personas FILE.csv, --labeled-frac), before any model."""
    from simval.cli import main

    study, human, _ = observational_files(tmp_path)
    code = main(
        ["rectify", str(study), "--human", str(human), "--model", "m",
         "--unlabeled", "2000", "--out", str(tmp_path / "r.html")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--unlabeled 2000 re-draws the humans' personas" in err
    assert "give --personas FILE.csv" in err and "--labeled-frac / --labeled-n" in err
    assert "unlabeled=" not in err and "treatment=" not in err


def _example_with(frame_change: str, example_csv: Path) -> Path:
    """The example respondents with one thing broken, as a new CSV beside them."""
    people_ = pd.read_csv(example_csv, index_col="respondent")
    if frame_change == "separated at 20":
        people_ = people_.iloc[:20]
        people_["share"] = (people_["age"] > people_["age"].median()).astype(int)
    else:
        people_[frame_change] = np.nan
    path = example_csv.with_name("broken.csv")
    people_.to_csv(path, index_label="respondent")
    return path


@pytest.mark.parametrize(
    ("broken", "culprit"),
    [
        ("concern", "'concern' is missing on every row"),
        ("gender", "'gender' is missing on every row"),
        ("separated at 20", "'share ~ C(arm) + concern + trust + age' on "),
    ],
)
@pytest.mark.parametrize("source", ["--unlabeled", "--labeled-frac"])
def test_the_humans_own_fits_run_before_the_model_loads(
    capsys, tmp_path, example_csv, no_model, broken, culprit, source
):
    """simval rectify on humans whose own model cannot be fitted (an all-missing item
    or persona column, a logit the humans separate): exit 2 with one line naming the
    culprit, and the model never loads."""
    from simval.cli import main

    human = _example_with(broken, example_csv)
    code = main(
        ["rectify", "simval/tasks/example/study.yaml", "--human", str(human),
         "--model", "m", source, "50" if source == "--unlabeled" else "0.5",
         "--out", str(tmp_path / "r.html")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert culprit in err, err
    if broken == "separated at 20":  # a split checks every human first (its reference)
        who = "the labeled humans" if source == "--unlabeled" else "all the humans"
        assert f"on {who}: logit model of 'share' cannot be estimated" in err, err


@pytest.mark.parametrize("source", ["--personas", "--labeled-frac"])
def test_an_observational_study_is_rectified_from_personas_or_a_labeled_split(
    capsys, tmp_path, tiny_model_dir, private_cache, source
):
    """simval rectify on a study without a treatment, with --personas FILE.csv (300
    personas) or --labeled-frac 0.5 (60 labeled, the other 60's personas): a report and
    a table with both formulas' terms and their simulated-only rows."""
    from simval.cli import main

    study, human, personas = observational_files(tmp_path)
    given = [source, str(personas) if source == "--personas" else "0.5"]
    code = main(
        ["rectify", str(study), "--human", str(human), "--model", str(tiny_model_dir),
         *given, "--out", str(tmp_path / "r.html")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    table = pd.read_csv(tmp_path / "r.csv")
    assert set(table["formula"]) == OBSERVATIONAL_FORMULAS
    expected = (120, 300) if source == "--personas" else (60, 60)
    assert set(zip(table["n_human"], table["n_unlabeled"])) == {expected}
    assert table["rectified_std_error"].gt(0).all()
    assert (tmp_path / "r.html").stat().st_size > 1000 and "report:" in out
