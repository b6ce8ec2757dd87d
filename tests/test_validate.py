"""validate(): coverage and sign recovery by seeded simulation, failure reporting, bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from support import binomial_tolerance

from simval import (
    BootstrapSimulator,
    DataError,
    EstimationError,
    FormulaError,
    FunctionSimulator,
    Item,
    MarginalSimulator,
    Model,
    OptionError,
    SimulatorError,
    Study,
    StudyError,
    Validation,
    validate,
)
from simval.headline import HEADLINE, HUMAN_LEVELS
from simval.results import decide
from simval.tasks import load_task
from simval.validate import OVERALL, compare, validate_each


def known_effects(n: int = 400, seed: int = 1) -> pd.DataFrame:
    """y = 1 + 0.5 x1 - 0.8 g + 0 x2 + noise: two clear effects, one null, an intercept."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(2, n))
    g = rng.integers(0, 2, size=n)
    y = 1 + 0.5 * x1 - 0.8 * g + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


FORMULA = "y ~ x1 + x2 + g"


def test_resampling_reference_is_centred_on_the_humans():
    """BootstrapSimulator reuses the humans' answers: every replicate estimate sits near
    the human one, so its difference CIs cover 0 nearly always (above the nominal 0.95
    a perfect simulator gets; tests/test_calibration.py) and it recovers every sign."""
    human = known_effects()
    result = validate(FORMULA, human, BootstrapSimulator(human), reps=50, seed=2)
    terms = result.coefficients.query("term != 'Intercept'")
    assert terms["coverage"].mean() >= 0.99
    summary = result.summary()
    assert summary["sign_f1"] > 0.95
    assert result.verdicts["decision"].iloc[0] != "inconsistent"


def test_marginal_simulator_loses_the_effects():
    """A simulator that ignores the covariates finds no effect and rarely covers the human one."""
    human = known_effects()
    result = validate(FORMULA, human, MarginalSimulator(human), reps=100, seed=2)
    summary = result.summary()
    assert summary["sign_f1"] < 0.1
    assert summary["coverage"] < 0.5
    effects = result.coefficients.set_index("term").loc[["x1", "g"]]
    assert (effects["coverage"] < 0.05).all()


def test_study_validation_has_every_table_per_subgroup():
    task = load_task("example")
    result = validate(
        task.study, task.human, BootstrapSimulator(task.human), reps=3, seed=0
    )
    levels = {
        ("gender", "Female"),
        ("gender", "Male"),
        ("age_band", "18-34"),
        (OVERALL, OVERALL),
    }
    for table in (
        result.distributions,
        result.variance,
        result.heterogeneity,
        result.coherence,
    ):
        assert levels <= set(zip(table["subgroup"], table["level"]))
    assert set(result.coefficients["formula"]) == {m.formula for m in task.study.models}
    keys = {"n_human", "reps"}
    keys |= {
        f"{m.name}{end}"
        for m in HEADLINE
        for end in ("", "_ci_low", "_ci_high", "_reference")
    }
    keys |= {
        f"{name}{end}" for name in HUMAN_LEVELS for end in ("", "_ci_low", "_ci_high")
    }
    assert set(result.summary()) == keys
    assert result.pattern_items == ("concern", "trust")
    overall = result.heterogeneity.query("subgroup == 'overall'").iloc[0]
    assert overall["unique_patterns_human"] > 10


def test_same_seed_same_numbers_and_json_round_trip():
    task = load_task("example")
    sim = MarginalSimulator(task.human)
    first = validate(task.study, task.human, sim, reps=2, seed=7)
    second = validate(task.study, task.human, sim, reps=2, seed=7)
    pd.testing.assert_frame_equal(first.coefficients, second.coefficients)
    restored = Validation.from_json(first.to_json())
    for field in dataclasses.fields(Validation):
        mine, theirs = getattr(restored, field.name), getattr(first, field.name)
        if isinstance(mine, pd.DataFrame):
            pd.testing.assert_frame_equal(mine, theirs)
        else:
            assert mine == theirs, field.name
    assert restored.summary() == pytest.approx(first.summary(), nan_ok=True)


def test_validate_of_a_mapping_is_validate_of_each_simulator():
    """Sharing the simulator-independent work changes no number: each result equals the
    simulator's own validate call, bootstrap draws included; ``validate_each`` and
    ``compare`` are validate of the mapping."""
    task = load_task("example")
    simulators = {
        "marginal": MarginalSimulator(task.human),
        "resampling": BootstrapSimulator(task.human),
    }
    options = {"reps": 3, "resamples": 20, "seed": 4, "progress": False}
    together = validate(task.study, task.human, simulators, **options)
    assert list(together) == list(simulators)
    for name, simulator in simulators.items():
        alone = validate(task.study, task.human, simulator, **options)
        for field in dataclasses.fields(Validation):
            mine, theirs = (
                getattr(together[name], field.name),
                getattr(alone, field.name),
            )
            if isinstance(mine, pd.DataFrame):
                pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
            else:
                assert mine == theirs, field.name
    with pytest.raises(
        OptionError,
        match=r"^simulator=\{\} is not allowed; choose a simulator or a mapping of names "
        "to simulators$",
    ):
        validate_each(task.study, task.human, {})
    for wrapper in (
        lambda: validate_each(task.study, task.human, simulators["marginal"]),
        lambda: compare(simulators["marginal"], task.human, task.study),
    ):
        with pytest.raises(
            OptionError,
            match=r"^simulators=MarginalSimulator\(n=\d+\) is not allowed; choose a "
            "mapping of names to simulators$",
        ):
            wrapper()


def test_every_input_is_checked_before_any_simulator_is_asked():
    """The human data is bound to the study first (``bind``): bad data, a bad option or
    a mapping holding a non-simulator fails with no replicate simulated."""
    human = known_effects(n=60)
    asked = []

    def answer(people):
        asked.append(len(people))
        return pd.DataFrame({"y": 0.0}, index=people.index)

    counting = FunctionSimulator(answer)
    with pytest.raises(SimulatorError, match="object has no simulate"):
        validate(FORMULA, human, {"counting": counting, "broken": object()})
    with pytest.raises(DataError, match="region"):
        validate(FORMULA, human, {"counting": counting}, subgroups=["region"])
    with pytest.raises(OptionError, match=r"^seed=-1 is not allowed"):
        validate(FORMULA, human, counting, seed=-1)
    assert asked == []


def test_the_binding_holds_the_blanked_answers_and_the_notes_about_the_data():
    """``bind`` blanks the declared missing answers once: the binding's frame, cells and
    notes are what every later step reads."""
    from simval.binding import bind

    study, human = _example(weighted=True)
    item = study.items[0]
    study = dataclasses.replace(
        study,
        items=(dataclasses.replace(item, missing={"Refused": 9}), *study.items[1:]),
    )
    human = human.assign(**{item.name: human[item.name].mask(human.index < 7, 9)})
    binding = bind(study, human)
    assert binding.human[item.name].isna().sum() == 7
    assert not (binding.human[item.name] == 9).any()
    assert binding.missing_answers == study.missing_answers_note(human)
    assert f"{item.name} 7 (Refused: 7)" in binding.missing_answers
    assert binding.missing_personas is None
    assert list(binding.cells) == [(OVERALL, OVERALL)] + [
        (s, str(level)) for s in binding.subgroups for level in binding.levels[s]
    ]
    assert binding.cells[OVERALL, OVERALL] is binding.human
    assert binding.weights(binding.human) == pytest.approx(human["w"].to_numpy())
    assert binding.personas.columns.tolist() == list(study.persona_columns)
    with pytest.raises(
        OptionError,
        match=r"^min_subgroup_n=0 is not allowed; choose a whole number of at least 1$",
    ):
        bind(study, human, min_subgroup_n=0)


def test_progress_is_shown_unless_silenced(capsys):
    """A bar over the simulator's replicates ends with a summary line on stderr;
    progress=False writes nothing."""
    human = known_effects(n=60)
    validate(FORMULA, human, MarginalSimulator(human), reps=2, resamples=0)
    shown = capsys.readouterr().err
    assert "validating MarginalSimulator(n=60): replicates: 2 replicates in" in shown
    validate(
        FORMULA, human, MarginalSimulator(human), reps=2, resamples=0, progress=False
    )
    assert capsys.readouterr().err == ""


def test_notes_say_which_humans_miss_persona_values():
    human = known_effects(n=80)
    human.loc[:4, "x2"] = np.nan
    sim = MarginalSimulator(human)
    result = validate(FORMULA, human, sim, reps=2, resamples=0, progress=False)
    assert result.notes["missing_personas"].startswith(
        "5 respondents have missing persona values (x2: 5)"
    )
    complete = validate(FORMULA, known_effects(n=80), sim, reps=2, resamples=0)
    assert complete.notes["missing_personas"] is None


def test_unestimable_replicate_is_reported_not_dropped(tmp_path):
    """A simulator that always answers 0 makes the logit unestimable; the term rows stay."""
    rng = np.random.default_rng(0)
    human = pd.DataFrame({"x": rng.normal(size=200)})
    human["y"] = (human["x"] + rng.normal(size=200) > 0).astype(int)
    always_no = FunctionSimulator(lambda p: pd.DataFrame({"y": 0}, index=p.index))
    result = validate("y ~ x", human, always_no, family="logit", reps=4)
    rows = result.coefficients
    assert rows["term"].tolist() == ["Intercept", "x"]
    assert (rows["n_failed"] == 4).all() and (rows["n_reps"] == 0).all()
    assert rows["failure"].str.contains("constant").all()
    assert (rows["sim_class"] == "failed").all()
    assert result.summary()["sign_f1"] == 0
    verdict = result.verdicts.iloc[0]
    assert verdict["decision"] == "inconsistent" and verdict["failed_share"] == 1
    assert result.decision("y ~ x") == "inconsistent"
    with pytest.raises(OptionError, match="'y ~ z'"):
        result.decision("y ~ z")
    from simval.report import write_report

    _, markdown = write_report({"always no": result}, out=tmp_path / "r.html")
    assert "| 4 of 4 (" in markdown.read_text()  # failed of all replicates


def test_subgroup_where_human_model_fails_is_reported():
    human = known_effects(n=60)
    human["site"] = ["big"] * 57 + ["tiny"] * 3
    result = validate(
        FORMULA, human, BootstrapSimulator(human), subgroups=["site"], reps=2
    )
    tiny = result.recovery.query("level == 'tiny'").iloc[0]
    assert tiny["n_terms"] == 0 and tiny["failure"]
    assert not result.coefficients.query("level == 'big'").empty


# --- bad input: the error type, and a message that names the culprit ------------------


def test_formula_naming_a_missing_column():
    human = known_effects()
    with pytest.raises(FormulaError, match="income"):
        validate("y ~ x1 + income", human, BootstrapSimulator(human))


def test_non_binary_outcome_for_logit():
    human = known_effects().assign(y=lambda d: d["g"] * 2)
    with pytest.raises(DataError, match="'y'"):
        validate("y ~ x1", human, BootstrapSimulator(known_effects()), family="logit")


def test_empty_human_data():
    with pytest.raises(DataError, match="empty"):
        validate(FORMULA, known_effects().iloc[0:0], MarginalSimulator(known_effects()))


def test_empty_subgroup_level():
    human = known_effects()
    human["region"] = pd.Categorical(
        ["north"] * len(human), categories=["north", "south"]
    )
    with pytest.raises(DataError, match="'region'.*south"):
        validate(FORMULA, human, BootstrapSimulator(human), subgroups=["region"])


def test_unknown_subgroup_column():
    human = known_effects()
    with pytest.raises(DataError, match="region"):
        validate(FORMULA, human, BootstrapSimulator(human), subgroups=["region"])


@pytest.mark.parametrize(
    "answer, culprit",
    [
        (lambda p: pd.DataFrame({"y": 1.0}, index=range(len(p))), "index"),
        (lambda p: pd.DataFrame({"outcome": 1.0}, index=p.index), "'y'|: y"),
        (lambda p: pd.DataFrame({"y": "lots"}, index=p.index), "'y'.*lots"),
    ],
)
def test_simulator_breaking_the_contract(answer, culprit):
    with pytest.raises(SimulatorError, match=culprit):
        validate(FORMULA, known_effects(), FunctionSimulator(answer), reps=1)


@pytest.mark.parametrize(
    "options, culprit",
    [
        ({"family": "tobit"}, "tobit"),
        ({"cov": "HC7"}, "HC7"),
        ({"reps": 0}, r"^reps=0 is not allowed; choose a whole number of at least 1$"),
        ({"reps": True}, r"^reps=True is not allowed"),
        (
            {"resamples": -1},
            r"^resamples=-1 is not allowed; choose a whole number of at least 0$",
        ),
        (
            {"alpha": 1.5},
            r"^alpha=1.5 is not allowed; choose a number strictly between 0 and 1$",
        ),
        ({"min_subgroup_n": 2.5}, r"^min_subgroup_n=2.5 is not allowed"),
        ({"seed": "x"}, r"^seed='x' is not allowed"),
    ],
)
def test_bad_options(options, culprit):
    human = known_effects()
    with pytest.raises(OptionError, match=culprit):
        validate(FORMULA, human, BootstrapSimulator(human), **options)


def test_object_without_simulate():
    with pytest.raises(SimulatorError, match="simulate"):
        validate(FORMULA, known_effects(), object())


def test_human_model_that_cannot_be_estimated_is_an_error():
    human = known_effects().assign(y=1.0)
    with pytest.raises(EstimationError, match="'y'"):
        validate(FORMULA, human, BootstrapSimulator(human))


def test_coherence_pair_counts_a_respondent_breaking_any_of_its_rules():
    """The example declares two rules on (concern, share): the pair row is their union and is
    what summary() reports; each rule keeps its own row."""
    task = load_task("example")
    result = validate(task.study, task.human, BootstrapSimulator(task.human), reps=3)
    overall = result.coherence.query("subgroup == @OVERALL")
    assert overall["scope"].tolist() == ["pair", "rule", "rule"]
    pair, high, low = overall["incoherence_human"]
    human = task.human
    union = ((human.concern >= 4) & (human.share == 1)) | (
        (human.concern <= 2) & (human.share == 0)
    )
    assert pair == pytest.approx(union.mean())
    assert pair == pytest.approx(high + low)  # the two directions cannot both hold
    assert result.summary()["incoherence_human"] == pytest.approx(pair)


# --- alignment and failures (the calibration issue) --------------------------------------


def factor_study() -> tuple[Study, pd.DataFrame]:
    """y depends on a 1..5 trust item used as a factor; the humans never answer 5."""
    rng = np.random.default_rng(3)
    n = 300
    trust = rng.integers(1, 5, size=n)
    y = (rng.random(n) < 0.2 + 0.15 * (trust - 1)).astype(int)
    human = pd.DataFrame({"age": rng.integers(18, 80, size=n), "trust": trust, "y": y})
    study = Study(
        items=(
            Item("trust", "trust", {str(c): c for c in range(1, 6)}),
            Item("y", "y", {"no": 0, "yes": 1}),
        ),
        persona=("age",),
        models=(Model("y ~ C(trust)", family="ols"),),
    )
    return study, human


def test_an_option_the_humans_never_chose_keeps_the_human_contrasts():
    """A replicate answering trust = 5 is fitted on the declared levels: the human
    contrasts keep their meaning and only the humans' empty level is left out."""
    study, human = factor_study()

    def with_fives(people, seed):
        rng = np.random.default_rng(seed)
        out = human.loc[people.index, ["trust", "y"]].copy()
        out.index = people.index
        out.loc[rng.random(len(out)) < 0.1, "trust"] = 5
        return out

    result = validate(study, human, FunctionSimulator(with_fives), reps=3, resamples=0)
    terms = result.coefficients.set_index("term")
    assert math.isnan(terms.loc["C(trust)[T.5]", "human_estimate"])
    for term in ("C(trust)[T.2]", "C(trust)[T.3]", "C(trust)[T.4]"):
        assert terms.loc[term, "n_failed"] == 0


def test_a_replicate_without_the_reference_level_is_failed_not_re_referenced():
    study, human = factor_study()

    def no_ones(people, seed):
        out = human.loc[people.index, ["trust", "y"]].copy()
        out.index = people.index
        out["trust"] = out["trust"].replace(1, 2)
        return out

    result = validate(study, human, FunctionSimulator(no_ones), reps=3, resamples=0)
    terms = result.coefficients.set_index("term")
    for term in ("C(trust)[T.2]", "C(trust)[T.3]", "C(trust)[T.4]"):
        assert terms.loc[term, "n_failed"] == 3
        assert "reference level" in terms.loc[term, "failure"]
    assert result.verdicts["decision"].iloc[0] == "inconsistent"


def test_cluster_covariance_resamples_whole_clusters_and_warns_with_few():
    rng = np.random.default_rng(4)
    sites = np.repeat(np.arange(12), 25)
    human = known_effects(n=len(sites), seed=4).assign(site=sites)
    seen = []

    def record(people):
        seen.append(people["site"].value_counts())
        return human.loc[people.index, ["y"]].set_axis(people.index)

    result = validate(
        FORMULA,
        human,
        FunctionSimulator(record),
        cov="cluster:site",
        reps=3,
        resamples=0,
    )
    for counts in seen:  # every drawn cluster comes whole: multiples of 25 rows
        assert (counts % 25 == 0).all()
    assert any("12 clusters" in w for w in result.notes["warnings"])
    del rng


def test_small_subgroup_cells_are_flagged_and_tests_corrected():
    human = known_effects(n=300)
    human["site"] = np.where(np.arange(300) < 280, "big", "tiny")
    human["half"] = np.where(np.arange(300) % 2 == 0, "even", "odd")
    result = validate(
        FORMULA, human, BootstrapSimulator(human), subgroups=["site", "half"],
        reps=3, resamples=20,
    )  # fmt: skip
    recovery = result.recovery.set_index(["subgroup", "level"])
    assert bool(recovery.loc[("site", "tiny"), "small"])
    assert not bool(recovery.loc[("site", "big"), "small"])
    assert recovery.loc[("site", "tiny"), "n_human"] == 20
    assert math.isnan(recovery.loc[("site", "tiny"), "wald_p_adjusted"])
    judged = recovery.drop(index=[("overall", "overall"), ("site", "tiny")])
    raw, adjusted = judged["wald_p_value"], judged["wald_p_adjusted"]
    assert (adjusted >= raw - 1e-12).all()  # Holm never lowers a p-value
    distributions = result.distributions.set_index(["subgroup", "level"])
    assert distributions.loc[("site", "tiny"), "small"].all()
    tiny = recovery.loc[("site", "tiny")]
    assert tiny["decision"] == "undetermined" and "too small" in tiny["reason"]
    for (
        _,
        row,
    ) in judged.iterrows():  # each cell's decision follows its adjusted p-values
        expected, _ = decide(
            n_terms=int(row["n_terms"]), failed_share=row["failed_share"],
            wald_p_value=row["wald_p_adjusted"],
            equivalence_p_value=row["equivalence_p_adjusted"], alpha=0.05,
        )  # fmt: skip
        assert row["decision"] == expected


def test_nobs_and_nonresponse_are_reported_and_never_help():
    human = known_effects(n=300)

    def half_answered(people, seed):
        rng = np.random.default_rng(seed)
        y = human.loc[people.index, "y"].to_numpy()
        return pd.DataFrame(
            {"y": np.where(rng.random(len(y)) < 0.5, y, np.nan)}, index=people.index
        )

    result = validate(
        FORMULA, human, FunctionSimulator(half_answered), reps=4, resamples=20
    )
    verdict = result.verdicts.iloc[0]
    assert verdict["nobs_human"] == 300
    assert 120 < verdict["nobs_sim"] < 180
    assert 0.4 < result.summary()["nonresponse"] < 0.6
    assert 0.4 < result.notes["nonresponse"]["y"] < 0.6
    full = validate(FORMULA, human, BootstrapSimulator(human), reps=4, resamples=20)
    assert result.summary()["coverage"] <= full.summary()["coverage"]


def test_headline_metrics_carry_intervals_and_references():
    task = load_task("example")
    result = validate(
        task.study, task.human, MarginalSimulator(task.human), reps=4, resamples=50
    )
    summary = result.summary()
    for metric in HEADLINE:
        value = summary[metric.name]
        if metric.name in ("nonresponse",):
            continue
        low, high = summary[f"{metric.name}_ci_low"], summary[f"{metric.name}_ci_high"]
        assert low <= value <= high or math.isclose(low, high), metric.name
        assert not math.isnan(summary[f"{metric.name}_reference"]), metric.name
    # the marginal floor is far from the fresh-sample reference on the coefficients
    assert summary["coverage"] < summary["coverage_reference"]
    assert summary["jsd_reference"] > 0  # sampling noise alone


def _example(*, weighted: bool, numbers: bool = False) -> tuple[Study, pd.DataFrame]:
    """The example task, with survey weights (lognormal, unrelated to the answers) and
    with two number items (a whole 0-100 thermometer, an open number of hours)."""
    task = load_task("example")
    study, human = task.study, task.human
    rng = np.random.default_rng(3)
    if numbers:
        warmth = Item("warmth", "How warm do you feel toward the website?", number={"min": 0, "max": 100, "whole": True}, role="belief")  # fmt: skip
        hours = Item("hours", "Hours online yesterday?", number={"min": 0})
        study = dataclasses.replace(study, items=(*study.items, warmth, hours))
        human = human.assign(
            warmth=rng.integers(0, 101, len(human)).astype(float),
            hours=rng.exponential(3.0, len(human)).round(2),
        )
    if not weighted:
        return study, human
    weights = rng.lognormal(sigma=0.6, size=len(human))
    return dataclasses.replace(study, weight="w"), human.assign(w=weights)


def _noisy(human: pd.DataFrame):
    """A simulator drawing each answer from the humans' marginals, number answers new."""
    marginal = MarginalSimulator(human)

    def answer(people, seed):
        rng = np.random.default_rng(seed)
        names = [
            c for c in ("concern", "trust", "share", "warmth", "hours") if c in human
        ]
        answers = marginal.simulate(
            people, [Item(n, n, {"a": 0}) for n in names], seed=seed
        )
        if "hours" in answers:
            answers["hours"] = rng.exponential(2.5, len(people)).round(2)
            answers["warmth"] = rng.integers(20, 101, len(people)).astype(float)
        return answers

    return FunctionSimulator(answer)


@pytest.mark.parametrize(
    ("weighted", "numbers"), [(False, False), (True, False), (True, True)]
)
def test_bootstrap_identity_draw_reproduces_the_tables(weighted, numbers):
    """The bootstrap recomputes the headline metrics from coded arrays; on the data as
    drawn (no resampling) it must give the tables' values, weighted or not, with number
    items (whole and binned) or not."""
    from simval.binding import bind
    from simval.resampling import draw_rows, headline_values, simulate_replicates
    from simval.validate import _code

    study, human = _example(weighted=weighted, numbers=numbers)
    sim = _noisy(human) if numbers else MarginalSimulator(human)
    result = validate(study, human, sim, reps=3, resamples=0, seed=5)
    binding = bind(study, human)
    rng = np.random.default_rng(5)
    personas = binding.personas
    weights = binding.weights(binding.human)
    draws = [
        draw_rows(personas, rng=rng, cluster=None, weights=weights) for _ in range(3)
    ]
    seeds = rng.integers(2**63, size=3)
    samples = simulate_replicates(binding, sim, personas, draws, seeds)
    coded = _code(binding, samples)
    values = headline_values(
        coded, np.arange(len(human)), [np.arange(len(s)) for s in samples]
    )
    summary = result.summary()
    for name, value in values.items():
        assert value == pytest.approx(summary[name], rel=1e-9, nan_ok=True), name


# --- survey weights ---------------------------------------------------------------------


def test_a_weighted_study_weights_every_human_number_and_hides_the_weights():
    """The human fits are R's weighted ones (fit(weights=)), the human shares, variances,
    pattern entropy and incoherence rates are weighted, and no simulator sees w."""
    from simval import fit
    from simval.metrics import heterogeneity, incoherence_rate, weighted_variance

    study, human = _example(weighted=True)
    seen = []

    def answer(people, seed):
        seen.append(set(people.columns))
        rng = np.random.default_rng(seed)
        return pd.DataFrame(
            {
                "concern": rng.integers(1, 6, len(people)),
                "trust": rng.integers(1, 6, len(people)),
                "share": rng.integers(0, 2, len(people)),
            },
            index=people.index,
        )

    result = validate(study, human, FunctionSimulator(answer), reps=2, resamples=0)
    assert seen and all("w" not in columns for columns in seen)
    w = human["w"].to_numpy()
    shares = result.shares.set_index(["item", "code"])["human"]
    assert shares["concern", 4.0] == pytest.approx(
        np.average(human["concern"] == 4, weights=w)
    )
    model = study.models[1]
    own = fit(model.formula, human.assign(gender=human["gender"].astype("category")),
              family=model.family, cov=model.cov, weights="w")  # fmt: skip
    overall = result.coefficients[
        (result.coefficients["formula"] == model.formula)
        & (result.coefficients["subgroup"] == OVERALL)
    ]
    assert np.allclose(overall["human_estimate"], own.table["estimate"], rtol=1e-9)
    assert np.allclose(overall["human_std_error"], own.table["std_error"], rtol=1e-9)
    variance = result.variance.set_index(["item", "subgroup"])["human_var"]
    assert variance["trust", OVERALL] == pytest.approx(
        weighted_variance(human["trust"], w)
    )
    patterns = result.heterogeneity.set_index("subgroup").loc[OVERALL]
    items = list(result.pattern_items)
    assert patterns["entropy_human"] == pytest.approx(
        heterogeneity(human, items, weights=w).entropy_corrected
    )
    rule = study.coherence[0]
    rates = result.coherence
    row = rates[(rates["rule"] == rule.rule) & (rates["subgroup"] == OVERALL)].iloc[0]
    assert row["incoherence_human"] == pytest.approx(
        incoherence_rate(human, rule, weights=w)
    )
    kish = w.sum() ** 2 / (w**2).sum()
    assert (
        f"Kish effective sample size {kish:.0f} of {len(w)}" in result.notes["weights"]
    )
    unweighted = validate(_example(weighted=False)[0], human.drop(columns="w"),
                          FunctionSimulator(answer), reps=2, resamples=0)  # fmt: skip
    assert not np.isclose(
        unweighted.shares.set_index(["item", "code"])["human"]["concern", 4.0],
        shares["concern", 4.0],
    )


def test_replicate_personas_are_drawn_in_proportion_to_the_weights():
    """Each persona's share of the drawn rows is its weight's share (binomial tolerance
    over the seeded draws), one persona per draw, and whole clusters by weight total."""
    from simval.resampling import draw_rows

    people = pd.DataFrame({"c": [0, 0, 1, 1, 2]})
    w = np.array([1.0, 1.0, 4.0, 2.0, 2.0])
    rng = np.random.default_rng(11)
    draws = np.concatenate(
        [draw_rows(people, rng=rng, cluster=None, weights=w) for _ in range(400)]
    )
    for row, expected in enumerate(w / w.sum()):
        share = float((draws == row).mean())
        assert abs(share - expected) <= binomial_tolerance(expected, len(draws)), row
    clusters = [draw_rows(people, rng=rng, cluster="c", weights=w) for _ in range(400)]
    first = np.array([people["c"].iloc[d[0]] for d in clusters])
    totals = np.array([2.0, 6.0, 2.0]) / 10
    for cluster, expected in enumerate(totals):
        share = float((first == cluster).mean())
        assert abs(share - expected) <= binomial_tolerance(expected, len(first)), (
            cluster
        )


@pytest.mark.parametrize(
    ("change", "error", "culprit"),
    [
        (lambda h: h.drop(columns="w"), DataError, "weight column 'w'"),
        (lambda h: h.assign(w=h["w"].where(h.index != 3, 0.0)), DataError, "rows 3"),
        (
            lambda h: h.assign(w=h["w"].where(h.index != 7)),
            DataError,
            "missing on rows 7",
        ),
        (lambda h: h.assign(w="heavy"), DataError, "must hold numbers"),
    ],
)
def test_bad_survey_weights_are_named(change, error, culprit):
    study, human = _example(weighted=True)
    with pytest.raises(error, match=culprit):
        validate(study, change(human), MarginalSimulator(human), reps=1)


def test_a_weight_column_declared_as_a_persona_is_refused():
    study, _ = _example(weighted=False)
    with pytest.raises(StudyError, match="weight column 'age'"):
        dataclasses.replace(study, weight="age")


def test_weights_round_trip_through_yaml_and_reach_the_report(tmp_path):
    from simval.report import write_report

    study, human = _example(weighted=True)
    study.to_yaml(tmp_path / "study.yaml")
    assert Study.from_yaml(tmp_path / "study.yaml").weight == "w"
    result = validate(study, human, MarginalSimulator(human), reps=1, resamples=0)
    _, markdown = write_report({"marginal": result}, out=tmp_path / "r.html")
    assert "Survey weights from column 'w'" in markdown.read_text()
    assert _example(weighted=False)[0].weight is None


def test_rectify_refuses_survey_weights():
    from simval import rectify

    study, human = _example(weighted=True)
    with pytest.raises(OptionError, match="survey weights"):
        rectify(
            study, human, MarginalSimulator(human), unlabeled=human.drop(columns="w")
        )


# --- number answers -------------------------------------------------------------------


def test_a_continuous_outcome_is_simulated_as_a_number():
    """Formula mode: a continuous y is an open number item, so a simulator drawing y from
    the true model is compared on it (binned JSD, earth mover's distance over the
    humans' range) instead of refused for values the humans never gave."""
    from simval.binding import bind

    human = known_effects()

    def truth(people, seed):
        rng = np.random.default_rng(seed)
        y = 1 + 0.5 * people["x1"] - 0.8 * people["g"] + rng.normal(size=len(people))
        return pd.DataFrame({"y": y}, index=people.index)

    result = validate(
        FORMULA, human, FunctionSimulator(truth), reps=3, seed=2, resamples=20
    )
    (item,) = result.study.items
    assert item.is_number and not item.number.whole and item.options == {}
    assert result.verdicts["decision"].iloc[0] != "inconsistent"
    row = result.distributions.query("subgroup == 'overall'").iloc[0]
    assert 0 < row["jsd"] < 0.3 and 0 <= row["wasserstein"] < 0.1
    assert result.shares.empty  # no options to share out
    # binned (not whole numbers); test_bootstrap_identity_draw_... checks the coding
    assert bind(FORMULA, human).scales["y"].edges is not None
