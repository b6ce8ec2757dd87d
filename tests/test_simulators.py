"""Reference simulators and the output check every simulator passes through."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simval import (
    BootstrapSimulator,
    DataError,
    FunctionSimulator,
    Item,
    MarginalSimulator,
    Simulator,
    SimulatorError,
)
from simval.errors import OptionError
from simval.simulators import (
    LLMSimulator,
    ModalSimulator,
    ParsingSimulator,
    ScoringSimulator,
    StudySimulator,
    TrainedSimulator,
    answers_by_scoring,
    check_output,
    hf,
    served,
    specs,
)
from simval.simulators.specs import (
    backend_of,
    build_simulator,
    parse_model_spec,
    register_backend,
)

ITEMS = (
    Item("q", "Q?", {"a": 1, "b": 2, "c": 3}),
    Item("y", "Y?", {"no": 0, "yes": 1}),
)


@pytest.fixture
def human() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "group": ["x", "x", "y", "y", "y"],
            "q": [1, 1, 3, 3, 3],
            "y": [0, 0, 1, 1, 1],
        },
        index=[10, 11, 12, 13, 14],
    )


def test_reference_simulators_follow_the_protocol(human):
    for simulator in (BootstrapSimulator(human), MarginalSimulator(human)):
        assert isinstance(simulator, Simulator)


def test_bootstrap_returns_recorded_answers_for_known_humans(human):
    personas = human.loc[[12, 10, 10, 14], ["group"]]
    out = BootstrapSimulator(human).simulate(personas, ITEMS, seed=1)
    assert out.index.tolist() == [12, 10, 10, 14]
    assert out["q"].tolist() == [3, 1, 1, 3]
    check_output(out, personas=personas, items=ITEMS, simulator="test")


def test_bootstrap_draws_strangers_from_their_stratum(human):
    strangers = pd.DataFrame({"group": ["x"] * 50 + ["y"] * 50}, index=range(100, 200))
    out = BootstrapSimulator(human, strata=["group"]).simulate(strangers, ITEMS, seed=3)
    assert (out["q"].iloc[:50] == 1).all() and (out["q"].iloc[50:] == 3).all()
    again = BootstrapSimulator(human, strata=["group"]).simulate(
        strangers, ITEMS, seed=3
    )
    pd.testing.assert_frame_equal(out, again)


def test_bootstrap_unknown_stratum_names_it(human):
    strangers = pd.DataFrame({"group": ["z"]}, index=[99])
    with pytest.raises(DataError, match="group='z'"):
        BootstrapSimulator(human, strata=["group"]).simulate(strangers, ITEMS, seed=0)


def test_bootstrap_bad_construction_names_culprit(human):
    with pytest.raises(DataError, match="region"):
        BootstrapSimulator(human, strata=["region"])
    with pytest.raises(DataError, match="empty"):
        BootstrapSimulator(human.iloc[0:0])
    with pytest.raises(DataError, match="item.*: z"):
        BootstrapSimulator(human).simulate(human, (Item("z", "Z?", {"a": 1}),))


def test_marginal_ignores_personas_but_keeps_marginals(human):
    personas = pd.DataFrame({"group": ["x"] * 4000})
    out = MarginalSimulator(human).simulate(personas, ITEMS, seed=0)
    assert set(out["q"]) == {1, 3}
    assert out["y"].mean() == pytest.approx(0.6, abs=0.03)
    assert np.corrcoef(out["q"], out["y"])[0, 1] == pytest.approx(0, abs=0.05)


def test_function_simulator_passes_seed_when_asked():
    def answer(personas, seed):
        rng = np.random.default_rng(seed)
        return pd.DataFrame(
            {"y": rng.integers(0, 2, len(personas))}, index=personas.index
        )

    personas = pd.DataFrame(index=range(20))
    sim = FunctionSimulator(answer)
    first = sim.simulate(personas, ITEMS[1:], seed=5)
    pd.testing.assert_frame_equal(first, sim.simulate(personas, ITEMS[1:], seed=5))
    assert FunctionSimulator(lambda p: p).simulate(personas, ITEMS, seed=0) is personas


@pytest.mark.parametrize(
    "mangle, culprit",
    [
        (lambda out: out.set_axis(range(len(out))), "index"),
        (lambda out: out.drop(columns="y"), "'y'|: y"),
        (lambda out: out.assign(extra=1), "extra"),
        (lambda out: out.assign(q=out["q"] + 10), "'q'.*11"),
        (lambda out: out.iloc[:-1], "4 rows for 5"),
        (lambda out: out.to_numpy(), "ndarray"),
    ],
)
def test_check_output_rejects_broken_contract(human, mangle, culprit):
    personas = human[["group"]]
    out = BootstrapSimulator(human).simulate(personas, ITEMS)
    with pytest.raises(SimulatorError, match=culprit):
        check_output(mangle(out), personas=personas, items=ITEMS, simulator="sim")


def test_check_output_allows_missing_answers(human):
    personas = human[["group"]]
    out = BootstrapSimulator(human).simulate(personas, ITEMS).astype(float)
    out.iloc[0, 0] = np.nan
    assert (
        check_output(out, personas=personas, items=ITEMS, simulator="sim")
        .isna()
        .sum()
        .sum()
        == 1
    )


def test_a_wrong_index_is_named_as_the_data_has_it():
    """Index labels in the message read 5 and 7, never np.int64(5)."""
    items = (Item(name="q", text="Q?", options={"a": 1, "b": 2}),)
    personas = pd.DataFrame({"x": [1, 2]}, index=np.array([3, 7]))
    output = pd.DataFrame({"q": [1, 2]}, index=np.array([3, 5]))
    with pytest.raises(SimulatorError, match=r"got 5, expected 7\)$"):
        check_output(output, personas=personas, items=items, simulator=object())


class Scorer:
    """A user's simulator that gives option probabilities and declares nothing else."""

    def simulate(self, personas, items, *, seed=None):
        return pd.DataFrame({item.name: 1 for item in items}, index=personas.index)

    def predict_proba(self, personas, item):
        return pd.DataFrame({1: 1.0}, index=personas.index)


def test_callers_read_only_what_a_simulator_declares(human):
    """A reference simulator declares only ``simulate``; a user's scorer scores unless
    its mode says generate."""
    reference = BootstrapSimulator(human)
    capabilities = (
        StudySimulator, ScoringSimulator, ModalSimulator, TrainedSimulator,
        ParsingSimulator, LLMSimulator,
    )  # fmt: skip
    assert not any(isinstance(reference, c) for c in capabilities)
    assert not answers_by_scoring(reference)
    scorer = Scorer()
    assert isinstance(scorer, ScoringSimulator) and answers_by_scoring(scorer)
    assert not isinstance(scorer, ModalSimulator | LLMSimulator)
    scorer.mode = "generate"
    assert isinstance(scorer, ModalSimulator) and not answers_by_scoring(scorer)
    scorer.mode = "score"
    assert answers_by_scoring(scorer)


class Recorder:
    """Stands in for a backend's class: keeps the arguments it was built with."""

    def __init__(self, *args, **options):
        self.args, self.options = args, options


def test_each_spec_is_built_by_the_backend_that_serves_it(monkeypatch):
    monkeypatch.setattr(hf, "HFSimulator", Recorder)
    monkeypatch.setattr(served, "ServedSimulator", Recorder)
    study = object()
    local = build_simulator(
        parse_model_spec("a=default:adapters/x"), study=study, mode="generate",
        api="chat", api_key_env="KEY",
    )  # fmt: skip
    assert backend_of(parse_model_spec("a=default:adapters/x")).name == "hf"
    assert local.args == ("default",)
    assert local.options == {
        "study": study,
        "adapter": "adapters/x",
        "mode": "generate",
    }
    remote = build_simulator(
        parse_model_spec("b=llama@http://gpu:8000/v1"), study=study, api="chat",
        api_key_env="KEY",
    )  # fmt: skip
    assert backend_of(parse_model_spec("b=llama@http://gpu:8000/v1")).name == "served"
    assert remote.args == (("http://gpu:8000/v1",), "llama")  # the replicas
    assert remote.options == {
        "study": study, "mode": "score", "api": "chat", "api_key_env": "KEY",
    }  # fmt: skip


def test_a_new_backend_is_one_registration(monkeypatch):
    """A backend registered later is asked first, for the specs it serves only."""
    monkeypatch.setattr(specs, "BACKENDS", dict(specs.BACKENDS))
    monkeypatch.setattr(hf, "HFSimulator", Recorder)

    @register_backend("toy", serves=lambda spec: spec.model.startswith("toy/"))
    def toy(spec, *, study, mode, **_served):
        return Recorder(spec.model, study=study, mode=mode)

    built = build_simulator(parse_model_spec("t=toy/x"), study="S", mode="generate")
    assert (built.args, built.options) == (
        ("toy/x",),
        {"study": "S", "mode": "generate"},
    )
    assert backend_of(parse_model_spec("a=default")).name == "hf"
    with pytest.raises(OptionError, match="backend named 'toy' is already registered"):
        register_backend("toy", serves=lambda spec: True)(toy)
