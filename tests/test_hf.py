"""HFSimulator on a tiny offline Llama: prompts, exact option scoring, sampling, cache and resume."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from support import binomial_tolerance

from simval import BootstrapSimulator, Item, OptionError, StudyError, validate
from simval.simulators import LLMSimulator, answers_by_scoring
from simval.simulators.engine import parse_answer
from simval.simulators.hf import HFSimulator
from simval.simulators.prompts import PromptTemplate
from simval.tasks import load_task


@pytest.fixture(scope="module")
def task():
    return load_task("example")


@pytest.fixture
def personas(task) -> pd.DataFrame:
    return task.human[list(task.study.persona_columns)].iloc[:24]


@pytest.fixture
def make(task, tmp_path):
    """Build an HFSimulator on a tiny model with a private cache folder."""

    def build(model_dir, **options) -> HFSimulator:
        options.setdefault("cache_dir", tmp_path / "cache")
        return HFSimulator(model_dir, study=task.study, progress=False, **options)

    return build


def full_sequence_probabilities(
    sim: HFSimulator, personas: pd.DataFrame, item: Item
) -> np.ndarray:
    """Reference: each option appended to the prompt and run alone, no batching, no cache."""
    import torch

    rows = []
    for _, persona in personas.iterrows():
        prompt = sim.prompt(persona, item)
        ids = sim._render.encode(prompt)
        totals = []
        for label in item.labels:
            option = sim._render.encode(prompt + sim._render.continuation(label))[
                len(ids) :
            ]
            with torch.no_grad():
                logits = sim.model(input_ids=torch.tensor([ids + option])).logits[0]
            logprobs = torch.log_softmax(logits.double(), dim=-1)
            totals.append(
                sum(logprobs[len(ids) - 1 + j, t].item() for j, t in enumerate(option))
            )
        weights = np.exp(np.array(totals) - max(totals))
        rows.append(weights / weights.sum())
    return np.array(rows)


# --- prompts -------------------------------------------------------------------------


def test_prompt_holds_persona_vignette_question_and_options(
    task, personas, make, tiny_model_dir
):
    sim = make(tiny_model_dir)
    persona = personas.iloc[0]
    text = sim.prompt(persona, "concern")
    for expected in (
        f"- age: {persona['age']}",
        f"- gender: {persona['gender']}",
        task.study.vignettes[persona["arm"]].split(".")[0],
        task.study.item("concern").text,
        "5. Extremely concerned",
    ):
        assert expected in text
    assert text.startswith("<|im_start|>system") and text.endswith(
        "<|im_start|>assistant\n"
    )
    assert sim.prompt(persona, task.study.item("concern")) == text


def test_remembered_prompts_are_the_ones_rendered_afresh(
    task, personas, make, tiny_model_dir
):
    """A prompt served from the renderer's memory is the text a fresh renderer makes,
    for every persona and item; a persona value or an arm that changes, or another
    Item of the same name, renders anew."""
    import dataclasses

    sim, fresh = make(tiny_model_dir), make(tiny_model_dir)
    for _ in range(2):
        for _, persona in personas.iterrows():
            for item in task.study.items:
                assert sim.prompt(persona, item) == fresh._render(persona, item)
                fresh._render._rendered.clear()
    persona = personas.iloc[0].copy()
    before = sim.prompt(persona, "concern")
    persona["age"] = persona["age"] + 1
    assert sim.prompt(persona, "concern") != before
    other_arm = next(a for a in task.study.vignettes if a != persona["arm"])
    assert sim.prompt(persona.replace(persona["arm"], other_arm), "concern") != before
    reworded = dataclasses.replace(task.study.item("concern"), text="Reworded?")
    assert "Reworded?" in sim.prompt(persona, reworded)


def test_plain_model_prompt_ends_with_answer_cue(personas, make, tiny_plain_model_dir):
    text = make(tiny_plain_model_dir).prompt(personas.iloc[0], "share")
    assert "<|im_start|>" not in text and text.endswith("\nAnswer:")


def test_custom_template(personas, make, tiny_model_dir):
    sim = make(
        tiny_model_dir,
        template="{{ persona.gender }} | {{ item.name }} | {{ options|join('/') }}",
    )
    assert f"{personas.iloc[0]['gender']} | share | No/Yes" in sim.prompt(
        personas.iloc[0], "share"
    )
    both = PromptTemplate(system="SYSTEM TEXT", user="{{ item.text }}")
    assert "SYSTEM TEXT" in make(tiny_model_dir, template=both).prompt(
        personas.iloc[0], "share"
    )


@pytest.mark.parametrize(
    "template, culprit", [("{% for x in %}", "line 1"), ("{{ persona.nope }}", "nope")]
)
def test_bad_template_names_culprit(personas, make, tiny_model_dir, template, culprit):
    with pytest.raises(StudyError, match=culprit):
        make(tiny_model_dir, template=template).prompt(personas.iloc[0], "share")


def test_hf_simulator_keeps_the_llm_contract(make, tiny_model_dir):
    """Every attribute callers read of a language-model simulator is declared."""
    sim = make(tiny_model_dir)
    assert isinstance(sim, LLMSimulator) and answers_by_scoring(sim)
    assert sim.training_index == () and not sim.unparseable
    assert not answers_by_scoring(make(tiny_model_dir, mode="generate"))


def test_bad_options(make, tiny_model_dir):
    with pytest.raises(OptionError, match="mode"):
        make(tiny_model_dir, mode="chat")
    with pytest.raises(OptionError, match="batch_size"):
        make(tiny_model_dir, batch_size=0)
    with pytest.raises(OptionError, match="workers"):
        make(tiny_model_dir, workers=0)
    for options, culprit in (
        ({"batch_size": True}, "batch_size=True"),
        ({"temperature": 0}, "temperature=0"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"top_p": 0}, "top_p=0"),
        ({"max_new_tokens": True}, "max_new_tokens=True"),
    ):
        with pytest.raises(OptionError, match=rf"^{culprit} is not allowed; choose"):
            make(tiny_model_dir, **options)
    with pytest.raises(StudyError, match="'worry'"):
        make(tiny_model_dir).prompt(pd.Series({"age": 30}), "worry")


# --- score mode ----------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_plain_model_dir"])
def test_scores_equal_whole_continuations_run_alone(
    request, task, personas, make, fixture
):
    """Batched, left-padded, prefix-cached scoring equals each option scored on its own."""
    sim = make(request.getfixturevalue(fixture), batch_size=3)
    personas = personas.iloc[:8]
    for item in task.study.items:
        batched = sim.predict_proba(personas, item)
        assert list(batched.columns) == list(item.codes)
        assert batched.index.equals(personas.index)
        np.testing.assert_allclose(batched.sum(axis=1), 1, atol=1e-12)
        np.testing.assert_allclose(
            batched.to_numpy(),
            full_sequence_probabilities(sim, personas, item),
            atol=1e-5,
        )
    multi_token = [
        sim._render.encode(sim._render.continuation(label))
        for label in task.study.item("concern").labels
    ]
    assert max(len(ids) for ids in multi_token) > 1


def test_padded_and_unpadded_scores_agree(
    task, personas, make, tiny_model_dir, tmp_path
):
    one = make(tiny_model_dir, batch_size=1, cache_dir=tmp_path / "one")
    many = make(tiny_model_dir, batch_size=16, cache_dir=tmp_path / "many")
    for item in task.study.items:
        np.testing.assert_allclose(
            one.predict_proba(personas, item),
            many.predict_proba(personas, item),
            atol=1e-5,
        )


def test_concurrent_workers_score_as_one_and_repeat_exactly(
    task, personas, make, tiny_model_dir, tmp_path
):
    """Workers split the batches (one core each, own prefix caches): the same numbers
    as a single worker to float precision, and bit-identical across runs."""
    runs = {
        (workers, run): make(
            tiny_model_dir,
            batch_size=3,
            workers=workers,
            cache_dir=tmp_path / f"{workers}-{run}",
        ).predict_proba(personas, "concern")
        for workers in (1, 3)
        for run in (0, 1)
    }
    np.testing.assert_allclose(runs[1, 0], runs[3, 0], atol=1e-6)
    for workers in (1, 3):
        pd.testing.assert_frame_equal(runs[workers, 0], runs[workers, 1])


def test_simulate_samples_from_the_probabilities(task, personas, make, tiny_model_dir):
    sim = make(tiny_model_dir)
    first = sim.simulate(personas, task.study.items, seed=4)
    pd.testing.assert_frame_equal(
        first, sim.simulate(personas, task.study.items, seed=4)
    )
    assert not first.equals(sim.simulate(personas, task.study.items, seed=5))
    crowd = personas.iloc[[0] * 4000]
    answers = sim.simulate(crowd, task.study.items[:1], seed=0)["concern"]
    expected = sim.predict_proba(personas.iloc[:1], "concern").iloc[0]
    observed = answers.value_counts(normalize=True).reindex(
        expected.index, fill_value=0
    )
    band = binomial_tolerance(expected, 4000)
    assert (abs(observed - expected) <= band).all(), (observed, expected)


def test_adapter_changes_the_model_and_the_cache_key(
    task, personas, make, tiny_model_dir, tmp_path
):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    plain = make(tiny_model_dir)
    adapted = make(tiny_model_dir, adapter=tmp_path / "adapter")
    assert plain.fingerprint != adapted.fingerprint
    halved = make(tiny_model_dir, dtype="bfloat16")
    assert halved.fingerprint not in (plain.fingerprint, adapted.fingerprint)
    assert "adapter" in repr(adapted)
    difference = plain.predict_proba(personas, "concern") - adapted.predict_proba(
        personas, "concern"
    )
    assert difference.abs().to_numpy().max() > 1e-4


def test_merged_adapter_scores_as_the_unmerged_peft_model(
    task, personas, make, tiny_model_dir, tmp_path
):
    """HFSimulator merges the adapter into the weights; the probabilities stay peft's own."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    adapted = make(tiny_model_dir, adapter=tmp_path / "adapter")
    assert not hasattr(adapted.model, "peft_config")  # merged, not wrapped
    item = task.study.item("concern")
    merged = adapted.predict_proba(personas, item).to_numpy()
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapted.model = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    np.testing.assert_allclose(
        merged, full_sequence_probabilities(adapted, personas, item), atol=1e-5
    )


def test_simulators_built_on_one_loaded_model_score_as_if_each_loaded_it(
    task, personas, make, tiny_model_dir, tmp_path
):
    """from_pretrained shares one load of the base weights: the base simulator and one
    with an adapter (merged into a copy) give the probabilities and cache keys of
    simulators that load the model themselves, and the loaded model is unchanged."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from simval.simulators.loading import load_causal_lm

    torch.manual_seed(0)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    lm, tokenizer = load_causal_lm(tiny_model_dir)
    weights = {k: v.clone() for k, v in lm.state_dict().items()}
    shared = {"study": task.study, "cache_dir": tmp_path / "shared", "progress": False}
    plain = HFSimulator.from_pretrained(lm, tokenizer, name="tiny", **shared)
    adapted = HFSimulator.from_pretrained(
        lm, tokenizer, name="tiny", adapter=tmp_path / "adapter", **shared
    )
    assert repr(adapted).startswith("HFSimulator('tiny', adapter=")
    for simulator, alone in (
        (plain, make(tiny_model_dir)),
        (adapted, make(tiny_model_dir, adapter=tmp_path / "adapter")),
    ):
        assert simulator.fingerprint == alone.fingerprint
        pd.testing.assert_frame_equal(
            simulator.predict_proba(personas, "concern"),
            alone.predict_proba(personas, "concern"),
            atol=1e-6,
        )
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in weights.items())


# --- cache and resume ----------------------------------------------------------------


class Interrupted(RuntimeError):
    pass


def count_calls(monkeypatch, *, fail_after: int | None = None) -> list[int]:
    """Count model calls on every HFSimulator; raise Interrupted after ``fail_after`` calls."""
    calls: list[int] = []
    original = HFSimulator._forward

    def forward(self, **inputs):
        if fail_after is not None and len(calls) >= fail_after:
            raise Interrupted("killed")
        calls.append(1)
        return original(self, **inputs)

    monkeypatch.setattr(HFSimulator, "_forward", forward)
    return calls


@pytest.mark.parametrize("workers, kept", [(1, 3), (2, 2)])
def test_interrupted_run_resumes_and_repeat_run_is_free(
    task, make, tiny_model_dir, tmp_path, monkeypatch, workers, kept
):
    """A run killed on its 6th model call keeps every batch finished by then, with two
    workers those of both (each ran its own prefix first), and resumes from them."""
    personas = task.human[list(task.study.persona_columns)].iloc[:60]
    options = {"batch_size": 8, "workers": workers}
    reference = make(tiny_model_dir, cache_dir=tmp_path / "reference", **options)
    expected = reference.simulate(personas, task.study.items, seed=1)

    with monkeypatch.context() as patch:
        count_calls(patch, fail_after=5)
        with pytest.raises(Interrupted):
            make(tiny_model_dir, **options).simulate(personas, task.study.items, seed=1)
    with monkeypatch.context() as patch:
        resumed_calls = count_calls(patch)
        resumed = make(tiny_model_dir, **options).simulate(
            personas, task.study.items, seed=1
        )
    pd.testing.assert_frame_equal(resumed, expected)
    with monkeypatch.context() as patch:
        total_calls = count_calls(patch)
        make(tiny_model_dir, cache_dir=tmp_path / "fresh", **options).simulate(
            personas, task.study.items, seed=1
        )
    assert 0 < len(resumed_calls) <= len(total_calls) - kept
    with monkeypatch.context() as patch:
        repeat_calls = count_calls(patch)
        again = make(tiny_model_dir, **options).simulate(
            personas, task.study.items, seed=1
        )
    assert repeat_calls == []
    pd.testing.assert_frame_equal(again, resumed)


# --- generate mode -------------------------------------------------------------------

LIKERT = Item("q", "Q?", {"Disagree": 1, "Neutral": 2, "Agree": 3, "Strongly agree": 4})
YES_NO = Item("y", "Y?", {"No": 0, "Yes": 1})
THERMOMETER = Item("warmth", "How warm?", number={"min": 0, "max": 100, "whole": True})
HOURS = Item("hours", "How many hours?", number={"min": 0})
SCALE = Item("scale", "From 0 to 10?", number={"min": 0, "max": 10, "whole": True})


@pytest.mark.parametrize(
    "text, item, code",
    [
        ("Agree", LIKERT, 3),
        ("  strongly agree.", LIKERT, 4),
        ("Strongly agree, because I care.", LIKERT, 4),
        ("Agree - mostly", LIKERT, 3),
        ("2", LIKERT, 2),
        ("4. Strongly agree", LIKERT, 4),
        ("Yes!", YES_NO, 1),
        ("no", YES_NO, 0),
        ("1", YES_NO, 0),
        ("0", YES_NO, 0),
        ("Agreeable", LIKERT, math.nan),
        ("I am not sure", LIKERT, math.nan),
        ("7", LIKERT, math.nan),
        ("", YES_NO, math.nan),
        ("75", THERMOMETER, 75),
        ("About 40 degrees, I'd say", THERMOMETER, 40),
        ("I feel 100% warm", THERMOMETER, 100),
        ("101", THERMOMETER, math.nan),  # off the scale: unparseable, never clipped
        ("62.5", THERMOMETER, math.nan),  # not whole on a whole scale
        ("-3", THERMOMETER, math.nan),
        ("2.5 hours", HOURS, 2.5),
        (".5", HOURS, 0.5),
        ("1,200", HOURS, 1200),
        ("none", HOURS, math.nan),
        ("-1", HOURS, math.nan),
    ],
)
def test_parse_answer(text, item, code):
    parsed = parse_answer(text, item)
    assert (math.isnan(parsed) and math.isnan(code)) or parsed == code


def test_generate_mode_counts_unparseable_and_is_reproducible(
    task, personas, make, tiny_model_dir, monkeypatch
):
    sim = make(tiny_model_dir, mode="generate", max_new_tokens=4)
    first = sim.simulate(personas, task.study.items, seed=3)
    missing = first.isna().sum()
    assert dict(sim.unparseable) == {name: int(n) for name, n in missing.items()}
    with monkeypatch.context() as patch:
        calls = count_calls(patch)
        pd.testing.assert_frame_equal(
            first, sim.simulate(personas, task.study.items, seed=3)
        )
    assert calls == []
    replies = {"concern": "Very concerned", "trust": "2", "share": "Maybe later"}
    by_question = {task.study.item(name).text: reply for name, reply in replies.items()}

    def reply(self, prompts, seeds):
        return [next(r for q, r in by_question.items() if q in p) for p in prompts]

    monkeypatch.setattr(HFSimulator, "_generate", reply)
    answers = sim.simulate(personas, task.study.items, seed=99)
    assert (answers["concern"] == 4).all() and (answers["trust"] == 2).all()
    assert answers["share"].isna().all()
    assert sim.unparseable["share"] == 2 * missing["share"] + len(
        personas
    )  # cached repeat counts too


# --- end to end ----------------------------------------------------------------------


def test_validate_with_hf_simulator(task, make, tiny_model_dir):
    human = task.human.iloc[:80]
    sim = make(tiny_model_dir, batch_size=16)
    by_study = validate(task.study, human, sim, reps=2, seed=0)
    assert set(by_study.coefficients["formula"]) == {
        m.formula for m in task.study.models
    }
    by_formula = validate(
        "share ~ C(arm) + age", human, sim, family="logit", reps=2, items=["concern"]
    )
    assert set(by_formula.distributions["item"]) == {"share", "concern"}
    ceiling = validate(task.study, human, BootstrapSimulator(human), reps=2, seed=0)
    assert by_study.summary()["jsd"] > ceiling.summary()["jsd"]


@pytest.mark.slow
def test_default_model_end_to_end(task, tmp_path):
    """SmolLM2-135M-Instruct, converted from its GGUF into a fresh cache, through validate."""
    human = task.human.iloc[:30]  # enough rows for the human models to be estimable
    sim = HFSimulator("default", study=task.study, cache_dir=tmp_path, progress=False)
    result = validate(task.study, human, sim, reps=2, seed=0)
    summary = result.summary()
    assert 0 <= summary["jsd"] <= 1
    assert summary["unique_patterns"] >= 1
    probabilities = sim.predict_proba(human, "share")
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-9)
    assert len(result.coefficients) > 0


@pytest.mark.parametrize(
    "progress, shown", [(True, True), (False, False), (None, True)]
)
def test_scoring_progress_reaches_a_log_unless_silenced(
    task, personas, tiny_model_dir, tmp_path, capsys, progress, shown
):
    """stderr is not a terminal here (as in a job script): progress comes as plain lines,
    no carriage returns, and ends with a summary naming the model, the count and the time."""
    sim = HFSimulator(
        tiny_model_dir,
        study=task.study,
        cache_dir=tmp_path,
        batch_size=4,
        progress=progress,
    )
    capsys.readouterr()
    sim.predict_proba(personas, "share")
    err = capsys.readouterr().err
    assert ("scoring share" in err) is shown
    if shown:
        assert "\r" not in err
        last = err.splitlines()[-1]
        assert re.fullmatch(
            rf"{re.escape(str(tiny_model_dir))}: scoring share: \d+ prompts in [\d.]+ s",
            last,
        )


def test_shared_prefix_is_computed_once(
    task, personas, make, tiny_model_dir, monkeypatch
):
    """The instructions, vignette and question are run once per item and arm, not per row."""
    sim = make(tiny_model_dir, batch_size=8)
    prompts = [
        sim._render.encode(sim.prompt(row, "concern")) for _, row in personas.iterrows()
    ]
    computed: list[int] = []
    original = HFSimulator._forward

    def forward(self, **inputs):
        computed.append(inputs["input_ids"].numel())
        return original(self, **inputs)

    monkeypatch.setattr(HFSimulator, "_forward", forward)
    sim.predict_proba(personas, "concern")
    assert sum(computed) < 0.5 * sum(len(p) for p in prompts)


def test_repr_names_the_model_and_adapter_as_given(
    task, tiny_model_dir, tmp_path, monkeypatch
):
    """Reports show the simulator's repr: it must not carry this machine's paths."""
    from simval.finetune import finetune, pilot

    pilot_df, _ = pilot(task.human, n=12, seed=0)
    finetune(
        tiny_model_dir, pilot_df, task.study, tmp_path / "runs" / "a", epochs=1,
        progress=False,
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    sim = HFSimulator(
        tiny_model_dir, study=task.study, adapter="runs/a", cache_dir=tmp_path
    )
    assert repr(sim) == (
        f"HFSimulator({str(tiny_model_dir)!r}, adapter='runs/a', mode='score', "
        "precision='float32')"
    )
    assert str(tmp_path / "runs") not in repr(sim)


def test_missing_persona_values_are_said_to_be_not_stated(task, make, tiny_model_dir):
    sim = make(tiny_model_dir)
    persona = task.human.iloc[0].copy()
    column = task.study.persona[0]
    persona[column] = np.nan
    text = sim.prompt(persona, task.study.items[0])
    assert "not stated" in text and "nan" not in text.lower().split()


def test_whole_numbers_held_as_floats_read_as_whole_numbers(task, make, tiny_model_dir):
    """A numeric persona column with a blank is read as floats: the prompt still says
    34, not 34.0, and a fraction stays a fraction."""
    sim = make(tiny_model_dir)
    column = next(c for c in task.study.persona if c == "age")
    persona = task.human.iloc[0].copy().astype(object)
    item = task.study.items[0]
    persona[column] = 34.0
    assert "34" in sim.prompt(persona, item) and "34.0" not in sim.prompt(persona, item)
    persona[column] = 34.5
    assert "34.5" in sim.prompt(persona, item)


# --- number items ----------------------------------------------------------------------


def test_number_items_are_scored_when_small_and_generated_when_wide(
    task, personas, make, tiny_model_dir, monkeypatch
):
    """A 0-10 scale is scored (its 11 values ranked as options, the prompt asking for a
    number); a 0-100 thermometer and an open number are generated and parsed, in score
    mode too; predict_proba refuses a scale too wide to rank, naming it."""
    sim = make(tiny_model_dir)
    probabilities = sim.predict_proba(personas, SCALE)
    assert list(probabilities.columns) == [float(v) for v in range(11)]
    assert np.allclose(probabilities.sum(axis=1), 1)
    prompt = sim.prompt(personas.iloc[0], SCALE)
    assert (
        "Answer with a whole number from 0 to 10." in prompt
        and "Options:" not in prompt
    )
    with pytest.raises(
        OptionError, match="'warmth' asks for a whole number from 0 to 100"
    ):
        sim.predict_proba(personas, THERMOMETER)
    replies = {"How warm?": "Warm: 64.", "How many hours?": "3.5 or so"}

    def reply(self, prompts, seeds):
        return [next(r for q, r in replies.items() if q in p) for p in prompts]

    monkeypatch.setattr(HFSimulator, "_generate", reply)
    answers = sim.simulate(personas, [SCALE, THERMOMETER, HOURS], seed=1)
    assert answers["scale"].isin(range(11)).all()
    assert (answers["warmth"] == 64).all() and (answers["hours"] == 3.5).all()
