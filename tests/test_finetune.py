"""Pilot designs, LoRA fine-tuning on the tiny model, no leakage, and compare()."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from simval import (
    BootstrapSimulator,
    DataError,
    FunctionSimulator,
    HFSimulator,
    Item,
    OptionError,
    Study,
    compare,
    finetune,
    pilot,
    validate,
)
from simval.finetune import (
    IGNORE,
    Example,
    _batch_loss,
    _group_batches,
    _prefix_batch,
    train,
    training_examples,
)
from simval.simulators.hf import _argument_names
from simval.simulators.loading import adapter_record, load_causal_lm
from simval.simulators.prefixes import prefix_groups
from simval.simulators.prompts import PromptRenderer, PromptTemplate

STUDY = Study(
    items=(
        Item(
            "fruit",
            "Which fruit do you prefer?",
            {"Apple": 1, "Banana": 2},
            role="belief",
        ),
        Item(
            "colour",
            "Which colour do you prefer?",
            {"Red": 1, "Blue": 2},
            role="belief",
        ),
    ),
    persona=("group",),
    treatment="arm",
    vignettes={"a": "You are at a market.", "b": "You are at a fair."},
    subgroups=("group",),
)


@pytest.fixture(scope="module")
def human() -> pd.DataFrame:
    """A strong known pattern: group x answers Apple/Red, group y Banana/Blue (10% noise)."""
    rng = np.random.default_rng(0)
    n = 200
    group = np.where(rng.random(n) < 0.5, "x", "y")
    flip = rng.random((2, n)) < 0.1
    return pd.DataFrame(
        {
            "group": group,
            "arm": rng.choice(["a", "b"], size=n),
            "fruit": np.where((group == "x") ^ flip[0], 1, 2),
            "colour": np.where((group == "x") ^ flip[1], 1, 2),
        }
    )


@pytest.fixture(scope="module")
def split(human):
    return pilot(human, n=60, strategy="balanced", by="group", seed=0)


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, split, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    return finetune(
        tiny_model_dir, split[0], STUDY, folder, epochs=3, lr=5e-3, seed=0, progress=False,
        cache_dir=folder / "cache",
    )  # fmt: skip


# --- pilot designs -------------------------------------------------------------------


def test_random_pilot_is_disjoint_and_reproducible(human):
    chosen, rest = pilot(human, frac=0.1, seed=3)
    assert len(chosen) == 20 and len(rest) == 180
    assert not set(chosen.index) & set(rest.index)
    assert set(chosen.index) | set(rest.index) == set(human.index)
    assert chosen.index.equals(pilot(human, frac=0.1, seed=3)[0].index)
    assert not chosen.index.equals(pilot(human, frac=0.1, seed=4)[0].index)


def test_balanced_pilot_has_equal_counts(human):
    chosen, _ = pilot(human, n=30, strategy="balanced", by="group", seed=0)
    assert chosen["group"].value_counts().tolist() == [15, 15]


def test_per_arm_pilot_takes_a_share_of_each_or_named_arms(human):
    chosen, _ = pilot(human, frac=0.25, strategy="per_arm", by="arm", seed=0)
    arms = human["arm"].value_counts()
    assert chosen["arm"].value_counts().to_dict() == {
        a: round(0.25 * k) for a, k in arms.items()
    }
    only_a, _ = pilot(human, n=12, strategy="per_arm", by="arm", arms=["a"], seed=0)
    assert len(only_a) == 12 and set(only_a["arm"]) == {"a"}


def test_per_arm_pilot_over_factorial_arms(human):
    """Several ``by`` columns: every combination of their levels is an arm."""
    cells = human.groupby(["arm", "group"]).size()
    chosen, _ = pilot(human, n=3, strategy="per_arm", by=["arm", "group"], seed=0)
    assert chosen.groupby(["arm", "group"]).size().to_dict() == dict.fromkeys(
        cells.index, 3
    )
    one, _ = pilot(human, n=3, strategy="per_arm", by=["arm"], seed=0)
    two, _ = pilot(human, n=3, strategy="per_arm", by="arm", seed=0)
    assert one.index.equals(two.index)


@pytest.mark.parametrize(
    "options, error, culprit",
    [
        ({"frac": 0.1, "n": 5}, OptionError, "exactly one"),
        ({}, OptionError, "exactly one"),
        ({"frac": 1.5}, OptionError, "frac"),
        ({"n": 500}, OptionError, "500"),
        ({"n": 5, "strategy": "stratified"}, OptionError, "stratified"),
        ({"n": 5, "strategy": "balanced"}, DataError, "by="),
        ({"n": 5, "strategy": "balanced", "by": ["arm", "nope"]}, DataError, "nope"),
        ({"n": 5, "strategy": "per_arm", "by": "arm", "arms": ["c"]}, DataError, "'c'"),
        ({"n": 150, "strategy": "per_arm", "by": "arm"}, OptionError, "150"),
    ],
)
def test_pilot_errors_name_the_culprit(human, options, error, culprit):
    with pytest.raises(error, match=culprit):
        pilot(human, **options)


# --- bad pilots fail before any model is loaded --------------------------------------


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(
        importlib.import_module("simval.finetune"), "load_causal_lm", refuse
    )


@pytest.mark.parametrize(
    "mangle, culprit",
    [
        (
            lambda d: d.assign(fruit=float("nan")),
            "the pilot: item 'fruit' is missing on every row",
        ),
        (lambda d: d.assign(colour=d["colour"].replace({2: 9})), "'colour'.*9"),
        (lambda d: d.head(4), "4 respondents"),
        (lambda d: d.drop(columns="group"), "group"),
    ],
)
def test_bad_pilot_is_rejected_before_training(
    split, tmp_path, no_model_load, mangle, culprit
):
    with pytest.raises(DataError, match=culprit):
        finetune("unused", mangle(split[0]), STUDY, tmp_path)


@pytest.mark.parametrize(
    "setting", [{"r": 0}, {"epochs": 0}, {"lr": -1.0}, {"dropout": 1.0}]
)
def test_bad_hyperparameters(split, tmp_path, no_model_load, setting):
    with pytest.raises(OptionError, match=next(iter(setting))):
        finetune("unused", split[0], STUDY, tmp_path, **setting)


def test_an_out_dir_that_cannot_be_written_is_refused_before_training(
    split, tmp_path, no_model_load
):
    """Today's loss: a trained adapter with nowhere to go. A path under a regular file,
    or a file where the folder should be, is refused first; so is a negative seed."""
    blocker = tmp_path / "report.html"
    blocker.write_text("a file")
    with pytest.raises(OptionError, match=rf"^out_dir {blocker}/adapter: .* is a file"):
        finetune("unused", split[0], STUDY, blocker / "adapter")
    with pytest.raises(OptionError, match=r"is a file, not a folder"):
        finetune("unused", split[0], STUDY, blocker)
    with pytest.raises(OptionError, match=r"^seed=-1 is not allowed"):
        finetune("unused", split[0], STUDY, tmp_path / "adapter", seed=-1)


# --- training examples and the adapter -----------------------------------------------


def test_missing_answers_are_skipped_and_numbers_are_written_as_numbers(
    tiny_model_dir, split
):
    """A respondent's missing answer is no example (the others of that respondent are);
    a number item's answer is trained as the number's text."""
    from simval.finetune import answer_label
    from simval.study import Item

    sim = HFSimulator(tiny_model_dir, study=STUDY, progress=False)
    renderer = PromptRenderer(
        study=STUDY, template=PromptTemplate(), tokenizer=sim.tokenizer
    )
    rows = split[0].head(4).copy()
    rows.loc[rows.index[1], "fruit"] = float("nan")
    assert (
        len(training_examples(rows, STUDY, renderer=renderer))
        == 4 * len(STUDY.items) - 1
    )
    hours = Item("hours", "Hours?", number={"min": 0})
    assert answer_label(hours, 2.5) == "2.5" and answer_label(hours, 3.0) == "3"


def test_examples_are_the_simulator_prompts_with_loss_on_answers(
    tiny_model_dir, split, adapter
):
    sim = HFSimulator(
        tiny_model_dir, study=STUDY, progress=False, cache_dir=adapter / "cache"
    )
    renderer = PromptRenderer(
        study=STUDY, template=PromptTemplate(), tokenizer=sim.tokenizer
    )
    examples = training_examples(split[0].head(3), STUDY, renderer=renderer)
    assert len(examples) == 3 * len(STUDY.items)
    row = split[0].iloc[0]
    first = examples[0]
    assert first.prompt_ids == renderer.encode(sim.prompt(row, "fruit"))
    label = STUDY.item("fruit").labels[STUDY.item("fruit").codes.index(row["fruit"])]
    prompt = sim.prompt(row, "fruit")
    answer = renderer.answer_ids(prompt, first.prompt_ids, label)
    assert first.answer_ids == [*answer, sim.tokenizer.eos_token_id]
    layout = _prefix_batch(examples[::2], pad=sim.tokenizer.pad_token_id)
    common = layout.prefix.shape[1]
    assert common > 0 and layout.position_ids[0, 0] == common
    for r, example in enumerate(examples[::2]):
        assert layout.prefix[0].tolist() == example.prompt_ids[:common]
        suffix = example.prompt_ids[common:] + example.answer_ids
        assert layout.input_ids[r, : len(suffix)].tolist() == suffix
        assert layout.mask[r].sum() == common + len(suffix)
        # each kept column's target is the next input token, for answer tokens only
        kept = layout.input_ids.shape[1] - layout.keep
        answer = len(example.prompt_ids) - common
        targets = layout.targets[r].tolist()
        assert (
            targets[answer - 1 - kept :][: len(example.answer_ids)] == suffix[answer:]
        )
        assert sum(t != IGNORE for t in targets) == len(example.answer_ids)


def lora(model_dir, *, seed: int = 0):
    """The tiny model with a LoRA adapter whose B is random too (so every LoRA weight has a
    gradient) and no dropout, and its tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base, tokenizer = load_causal_lm(model_dir)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
        task_type="CAUSAL_LM", init_lora_weights=False,
    )  # fmt: skip
    return get_peft_model(base, config), tokenizer


def examples_of(tokenizer, rows: pd.DataFrame) -> list[Example]:
    renderer = PromptRenderer(
        study=STUDY, template=PromptTemplate(), tokenizer=tokenizer
    )
    return training_examples(rows, STUDY, renderer=renderer)


def full_pass_loss(model, batch: list[Example], *, pad: int):
    """The reference: every whole sequence right-padded, labels on the answer tokens only."""
    import torch

    width = max(len(e.prompt_ids) + len(e.answer_ids) for e in batch)
    ids = torch.full((len(batch), width), pad)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE)
    for r, e in enumerate(batch):
        sequence = e.prompt_ids + e.answer_ids
        ids[r, : len(sequence)] = torch.tensor(sequence)
        mask[r, : len(sequence)] = 1
        labels[r, len(e.prompt_ids) : len(sequence)] = torch.tensor(e.answer_ids)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def gradients(model, loss) -> dict:
    model.zero_grad()
    loss.backward()
    return {
        name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad
    }


def test_prefix_groups_split_where_prompts_stop_sharing(tiny_model_dir, split):
    """Groups never mix items or arms; here whole prompts repeat (the persona is x or y),
    so each (item, arm, persona) is a group of identical prompts."""
    _, tokenizer = load_causal_lm(tiny_model_dir)
    examples = examples_of(tokenizer, split[0])
    groups = prefix_groups([e.prompt_ids for e in examples], batch_size=8)
    rows = split[0][["arm", "group"]].to_numpy().tolist()
    keys = [{(*rows[i // 2], i % 2) for i in group} for group in groups]
    assert sorted(i for group in groups for i in group) == list(range(len(examples)))
    assert all(len(k) == 1 for k in keys) and len(groups) == 8


def test_group_batches_are_reproducible_and_stay_in_their_group():
    groups = [list(range(12)), list(range(12, 15)), [15]]
    epoch = _group_batches(groups, batch_size=5, rng=np.random.default_rng(1))
    again = _group_batches(groups, batch_size=5, rng=np.random.default_rng(1))
    other = _group_batches(groups, batch_size=5, rng=np.random.default_rng(2))
    assert epoch == again and epoch != other
    assert sorted(i for batch in epoch for i in batch) == list(range(16))
    assert sorted(len(b) for b in epoch) == [1, 3, 4, 4, 4]
    owner = {i: g for g, group in enumerate(groups) for i in group}
    assert all(len({owner[i] for i in batch}) == 1 for batch in epoch)


@pytest.mark.parametrize("model_dir", ["tiny_model_dir", "tiny_plain_model_dir"])
@pytest.mark.parametrize("kind", ["one group", "mixed", "single", "identical"])
def test_shared_prefix_loss_and_gradients_equal_the_full_pass(
    request, split, model_dir, kind
):
    """Same loss and LoRA gradients as one pass over the whole sequences (float32, no dropout).

    "identical": the prefix is all but the last prompt token, so the first answer token
    is predicted from the suffix's first column.
    """
    import torch

    model, tokenizer = lora(request.getfixturevalue(model_dir))
    model.train()
    examples = examples_of(tokenizer, split[0].head(24))
    groups = prefix_groups([e.prompt_ids for e in examples], batch_size=8)
    batch = {
        "one group": [examples[i] for i in groups[0][:6]],
        "mixed": [examples[i] for i in (0, 1, 2, 5, 6)],
        "single": [examples[3]],
        "identical": [examples[i] for i in groups[0][:2]] * 2,
    }[kind]
    pad = tokenizer.pad_token_id
    if kind == "identical":
        assert len({tuple(e.prompt_ids) for e in batch}) == 1
    ours = _batch_loss(model, batch, pad=pad, names=_argument_names(model))
    ours_grads = gradients(model, ours)
    reference = full_pass_loss(model, batch, pad=pad)
    reference_grads = gradients(model, reference)
    assert abs(ours.item() - reference.item()) < 1e-5
    assert ours_grads.keys() == reference_grads.keys() and len(ours_grads) > 0
    for name, grad in reference_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(ours_grads[name], grad, rtol=1e-4, atol=1e-5)


def test_train_is_reproducible_with_a_seed(tiny_model_dir, split):
    def run(seed: int):
        model, tokenizer = lora(tiny_model_dir)
        examples = examples_of(tokenizer, split[0].head(20))
        losses = train(
            model, examples, pad=tokenizer.pad_token_id, epochs=2, lr=5e-3,
            batch_size=4, seed=seed, progress=False,
        )  # fmt: skip
        return losses, [
            p.detach().clone() for p in model.parameters() if p.requires_grad
        ]

    losses, weights = run(0)
    again, same = run(0)
    other, _ = run(1)
    assert losses == again and losses != other and losses[-1] < losses[0]
    assert all((a == b).all() for a, b in zip(weights, same))


def test_finetune_is_reproducible_and_leaves_the_global_rng_alone(
    tiny_model_dir, split, tmp_path
):
    """Same seed, same adapter weights; the caller's torch generator is not reseeded."""
    import torch
    from safetensors.torch import load_file

    def run(name: str, seed: int) -> dict:
        folder = finetune(
            tiny_model_dir, split[0].head(12), STUDY, tmp_path / name, epochs=1,
            lr=5e-3, seed=seed, progress=False, cache_dir=tmp_path / "cache",
        )  # fmt: skip
        return load_file(folder / "adapter_model.safetensors")

    torch.manual_seed(12345)
    before = torch.get_rng_state()
    first = run("first", seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    expected = torch.rand(4)  # the caller's stream goes on where it was
    torch.set_rng_state(before)
    again = run("again", seed=3)
    assert torch.equal(torch.rand(4), expected)
    other = run("other", seed=4)
    assert first.keys() == again.keys() == other.keys() and first
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_adapter_records_how_it_was_made(adapter, split, tiny_model_dir):
    record = adapter_record(adapter)
    assert record["pilot_size"] == 60 and record["items"] == ["fruit", "colour"]
    assert sorted(record["pilot_index"]) == sorted(split[0].index.tolist())
    assert record["r"] == 8 and record["epochs"] == 3 and record["seed"] == 0
    assert record["batch_size"] == 8 and "shared-prefix" in record["batching"]
    assert record["base_model"] == str(tiny_model_dir)
    assert record["epoch_losses"][-1] < record["epoch_losses"][0]
    assert record["layers"] is None and record["dtype"] == "auto"


def test_layers_puts_lora_on_the_top_blocks_only(tiny_model_dir, split, tmp_path):
    """layers=1 on a 2-block model: LoRA weights in block 1 only, and the adapter loads."""
    from safetensors import safe_open

    folder = finetune(
        tiny_model_dir, split[0].head(12), STUDY, tmp_path / "top", epochs=1,
        layers=1, progress=False,
    )  # fmt: skip
    with safe_open(folder / "adapter_model.safetensors", framework="pt") as weights:
        names = list(weights.keys())
    assert names and all(".layers.1." in name for name in names)
    assert {n.split(".layers.1.")[1].split(".")[1] for n in names} >= {
        "q_proj",
        "down_proj",
    }
    assert adapter_record(folder)["layers"] == 1
    sim = HFSimulator(tiny_model_dir, study=STUDY, adapter=folder, progress=False,
                      cache_dir=tmp_path / "cache")  # fmt: skip
    assert sim.training_index


@pytest.mark.parametrize("layers", [0, 3])
def test_bad_layers_are_refused(tiny_model_dir, split, tmp_path, layers):
    with pytest.raises(OptionError, match=f"layers={layers}"):
        finetune(tiny_model_dir, split[0].head(12), STUDY, tmp_path, layers=layers)


def test_fine_tuning_moves_the_simulator_toward_the_humans(
    tiny_model_dir, split, adapter
):
    """After fine-tuning on the pilot, the holdout is matched better than by the base model."""
    holdout = split[1]
    cache = adapter / "cache"
    table = compare(
        {
            "base": HFSimulator(
                tiny_model_dir, study=STUDY, progress=False, cache_dir=cache
            ),
            "fine-tuned": HFSimulator(
                tiny_model_dir,
                adapter=adapter,
                study=STUDY,
                progress=False,
                cache_dir=cache,
            ),
            "bootstrap": BootstrapSimulator(holdout),
        },
        holdout,
        STUDY,
        reps=3,
    )
    assert list(table.index) == [
        "base", "fine-tuned", "bootstrap", "fresh reference", "human",
    ]  # fmt: skip
    assert table.loc["fine-tuned", "jsd"] < table.loc["base", "jsd"]
    human_entropy = table.loc["human", "entropy"]
    gap = (table["entropy"] - human_entropy).abs()
    assert gap["fine-tuned"] < gap["base"]
    assert np.isnan(table.loc["human", "jsd"])


# --- no leakage ----------------------------------------------------------------------


def test_no_pilot_respondent_reaches_validate(tiny_model_dir, human, split, adapter):
    pilot_rows, holdout = split
    tuned = HFSimulator(
        tiny_model_dir,
        adapter=adapter,
        study=STUDY,
        progress=False,
        cache_dir=adapter / "cache",
    )
    with pytest.raises(DataError, match="fine-tuning pilot"):
        validate(STUDY, human, tuned, reps=1)
    seen: list = []

    def recording(personas, seed):
        seen.extend(personas.index)
        return tuned.simulate(personas, STUDY.items, seed=seed)

    validate(STUDY, holdout, FunctionSimulator(recording), reps=2)
    assert seen and not set(seen) & set(pilot_rows.index)
    assert set(seen) <= set(holdout.index)


@pytest.mark.slow
def test_finetune_the_default_model(tmp_path):
    """One epoch on the embedded SmolLM2 model; the adapter loads in HFSimulator."""
    from simval.tasks import load_task

    task = load_task("example")
    chosen, holdout = pilot(task.human, n=10, seed=0)
    adapter = finetune(
        "default", chosen, task.study, tmp_path / "adapter", epochs=1, progress=False,
        cache_dir=tmp_path,
    )  # fmt: skip
    assert adapter_record(adapter)["pilot_size"] == 10
    sim = HFSimulator("default", adapter=adapter, study=task.study, cache_dir=tmp_path)
    probabilities = sim.predict_proba(holdout.head(4), "share")
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-9)
    assert sim.training_index and not set(sim.training_index) & set(holdout.index)
