"""What a run would ask of its model, and how long and how much it would take: the
``--dry-run`` of ``simval validate``, ``bench``, ``rectify`` and ``finetune``.

A scoring run asks the model for each unique (persona, item) prompt it lacks in the
result store (``simval.simulators.engine``): prompts already stored are free, and in
score mode the replicates re-read the stored probabilities. Generated answers (generate
mode, or a number item too wide to score) are drawn afresh for every replicate and
sample, so they are counted as the run draws them. The time is the prompts times the
time per prompt of a short warm-up on real prompts (``WARMUP`` of them; nothing is
stored). For a served model the cost is its prompt tokens and its completion tokens
at ``--price IN[,OUT]`` per million each. A chat API's server applies its own chat
template, so its prompt tokens are counted with the model's tokenizer where the
simulator holds one, else estimated (``chat_prompt_tokens``). A fine-tuning run is its
steps times the time of measured training steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from simval.errors import refuse
from simval.progress import duration

if TYPE_CHECKING:
    import pandas as pd

    from simval.simulators.engine import PromptedSimulator
    from simval.simulators.option_requests import OptionRequests
    from simval.simulators.specs import ModelSpec
    from simval.study import Item, Study
    from simval.tasks import Task

WARMUP = 8
"""The fewest prompts the warm-up times."""
WARMUP_STEPS = 2
"""Training steps the fine-tuning warm-up times."""
RECTIFY_SAMPLES = 10
"""The answer sets ``simval.rectify`` draws per persona where it cannot score."""
CHARS_PER_TOKEN = 4
"""Characters per token of English text, to estimate a chat API's prompt tokens
without the model's tokenizer (OpenAI's rule of thumb for its models)."""
MESSAGE_TOKENS = 4
"""Tokens a chat message adds beyond its text (the chat format's 3 and its role) and
``REPLY_TOKENS`` those priming the reply, as OpenAI's cookbook counts its chat models."""
REPLY_TOKENS = 3
ESTIMATE = (
    f"estimated: characters / {CHARS_PER_TOKEN} per message, plus {MESSAGE_TOKENS} "
    f"per message and {REPLY_TOKENS} per request; no tokenizer for this model here"
)
"""How a chat API's prompt tokens were counted without a tokenizer, as printed."""


@dataclass(frozen=True)
class Forecast:
    """What a run would ask of one model, before it runs.

    ``asks``: the model calls still to make (prompts; training steps with ``unit``
    "steps"); ``stored``: prompts the result store already holds (free);
    ``generated``: how many of the asks are generated answers (drawn afresh per
    replicate and sample, counted as the run draws them). ``tokens``:
    the tokens those calls send (prompt plus each option scored; for a served model
    its prompt tokens), None where not counted; ``estimated``: how they were estimated
    where they could not be counted (None: counted); ``completion_tokens``: the tokens
    a served model is asked to generate (``completion_note`` says per what; an upper
    bound where answers are generated), None in-process; ``requests``: HTTP requests
    to a served model (None in-process). ``seconds_each``: the measured time per
    prompt or step over ``warmup`` of them, after a load of ``load_seconds``.
    ``price``: per million (prompt, completion) tokens (``prices``). ``bound``: the
    count is an upper bound (a persona file whose arms are drawn at random).
    """

    command: str
    model: str
    asks: int
    stored: int = 0
    unit: str = "prompts"
    generated: int = 0
    tokens: int | None = None
    estimated: str | None = None
    completion_tokens: int | None = None
    completion_note: str = ""
    requests: int | None = None
    price: tuple[float, float] | None = None
    seconds_each: float | None = None
    warmup: int = 0
    load_seconds: float | None = None
    bound: bool = False

    @property
    def cost(self) -> float | None:
        """The prompt and completion tokens, each at its ``price`` per million (None
        without a price or a count)."""
        if self.price is None or self.tokens is None:
            return None
        prompt, completion = self.price
        return (self.tokens * prompt + (self.completion_tokens or 0) * completion) / 1e6

    @property
    def seconds(self) -> float | None:
        """The asks times the measured time of one (None where nothing was timed)."""
        if self.seconds_each is None:
            return None
        return self.asks * self.seconds_each

    def to_text(self) -> str:
        """A few plain lines: what would be asked, how long and how much."""
        up_to = "at most " if self.bound else ""
        lines = [f"simval {self.command} --dry-run: {self.model}"]
        if self.unit == "steps":
            lines.append(f"  training steps: {self.asks}")
        else:
            lines.append(
                f"  prompts to ask: {up_to}{self.asks:,} "
                f"({self.stored:,} already in the result store, free)"
            )
            if self.generated:
                lines.append(
                    f"  of them generated answers: at most {self.generated:,} (drawn "
                    "afresh; a repeat of a run with the same seed finds them stored)"
                )
        if self.requests is not None:
            lines.append(f"  requests: {up_to}{self.requests:,}")
        about = "about " if self.estimated else up_to
        if self.tokens is not None and self.completion_tokens is None:
            lines.append(f"  tokens: {up_to}{self.tokens:,}")
        elif self.tokens is not None:
            how = f" ({self.estimated})" if self.estimated else ""
            lines.append(f"  prompt tokens: {about}{self.tokens:,}{how}")
            most = "at most " if self.generated or self.bound else ""
            lines.append(
                f"  completion tokens: {most}{self.completion_tokens:,} "
                f"({self.completion_note})"
            )
        if self.cost is not None:
            most = "at most " if self.generated else up_to
            lines.append(
                f"  cost: {about or most}{self.cost:,.4f} at {price_text(self.price)}"
            )
        if self.seconds is not None:
            loaded = (
                f"; the model loaded in {duration(self.load_seconds)}"
                if self.load_seconds is not None
                else ""
            )
            lines.append(
                f"  estimated time: {duration(self.seconds)} ({self.seconds_each:.3g} s "
                f"per {self.unit[:-1]}, measured on {self.warmup}{loaded})"
            )
        elif self.asks == 0:
            lines.append("  estimated time: nothing to ask the model")
        return "\n".join(lines)


def prices(price: float | Sequence[float] | None) -> tuple[float, float] | None:
    """``price`` as (per million prompt tokens, per million completion tokens): one
    number prices both, a pair each; None stays None. Providers price the two apart."""
    if price is None:
        return None
    pair = [price, price] if _number(price) else price
    if not (
        isinstance(pair, list | tuple) and len(pair) == 2 and all(map(_number, pair))
    ):
        raise refuse(
            "price", price, "a number of at least 0, or two (prompt, completion) "
            "such numbers, per million tokens",
        )  # fmt: skip
    return float(pair[0]), float(pair[1])


def _number(value: object) -> bool:
    """A finite real number of at least 0 (not a bool)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def price_text(price: tuple[float, float]) -> str:
    """A price pair as a forecast prints it."""
    prompt, completion = price
    if prompt == completion:
        return f"{prompt:g} per million tokens"
    return (
        f"{prompt:g} per million prompt tokens and {completion:g} per million "
        "completion tokens"
    )


def chat_prompt_tokens(prompt: str, *, tokenizer: Any = None) -> int:
    """The prompt tokens of one chat request (``prompt``: its messages as JSON): with
    ``tokenizer``, its chat template's rendering with the reply's cue, tokenised (the
    messages' text plus ``MESSAGE_TOKENS`` each and ``REPLY_TOKENS`` where it has no
    chat template); without one, estimated: ``CHARS_PER_TOKEN`` characters a token."""
    messages = json.loads(prompt)
    if getattr(tokenizer, "chat_template", None) is not None:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    def length(text: str) -> int:
        if tokenizer is not None:
            return len(tokenizer(text, add_special_tokens=False).input_ids)
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    return sum(length(m["content"]) + MESSAGE_TOKENS for m in messages) + REPLY_TOKENS


def scoring_forecast(
    simulator: PromptedSimulator,
    *,
    command: str,
    frames: Sequence[pd.DataFrame],
    items: Sequence[Item] | None = None,
    generated: int = 0,
    price: float | Sequence[float] | None = None,
    warmup: int | None = None,
    load_seconds: float | None = None,
    bound: bool = False,
    fresh: bool = False,
) -> Forecast:
    """What a run would ask ``simulator``: the unique prompts of every persona in
    ``frames`` for every scored item (``items``: default the study's) that the result
    store lacks, plus ``generated`` answers drawn for each item answered by generation
    (``bench_generated``, ``rectify_frames``); timed on ``warmup`` of them (not stored).
    ``fresh``: the store cannot hold any (an adapter the run is still to train).
    ``warmup`` (default: one of the simulator's batches, at least ``WARMUP``): a batch
    as the run sends it, since a smaller one costs more per prompt. ``price``: per
    million tokens, one number or (prompt, completion) (``prices``)."""
    price = prices(price)
    from simval.simulators.base import answers_by_scoring

    items = simulator.study.items if items is None else items
    if warmup is None:
        warmup = max(WARMUP, getattr(simulator, "batch_size", 0))
    scoring = answers_by_scoring(simulator)
    scored = [i for i in items if scoring and i.choices is not None]
    drawn = [i for i in items if i not in scored]
    todo, stored = {}, 0
    for item in scored:
        missing, known = _unscored(simulator, frames, item, fresh=fresh)
        todo[item.name], stored = missing, stored + known
    to_generate = generated * len(drawn)
    asks = sum(map(len, todo.values())) + to_generate
    seconds_each, timed = _warm_up(simulator, scored, todo, drawn, frames, warmup)
    plan = _served_plan(simulator, scored, todo)
    completion = _completion_tokens(simulator, scored, todo, to_generate, plan)
    return Forecast(
        command=command,
        model=simulator.label,
        asks=asks,
        stored=stored,
        generated=to_generate,
        tokens=_tokens(simulator, scored, todo, drawn, frames, generated, plan),
        estimated=ESTIMATE if _estimates(simulator) else None,
        completion_tokens=None if completion is None else completion[0],
        completion_note="" if completion is None else completion[1],
        requests=_requests(simulator, todo, to_generate, plan),
        price=price,
        seconds_each=seconds_each,
        warmup=timed,
        load_seconds=load_seconds,
        bound=bound,
    )


def bench_generated(study: Study, *, n: int, reps: int) -> int:
    """Answers ``simval.bench.bench`` draws per generated item for ``n`` respondents: n
    per replicate, and where it rectifies (an unweighted study with enough labeled
    humans), ``RECTIFY_SAMPLES`` per respondent plus one per unlabeled one."""
    from simval.bench import INFERENCE_SHARE, MIN_LABELED

    labeled = max(1, round(INFERENCE_SHARE * n))
    rectifies = study.weight is None and labeled >= MIN_LABELED
    return reps * n + (RECTIFY_SAMPLES * n + n - labeled if rectifies else 0)


def rectify_frames(
    study: Study, labeled: pd.DataFrame, unlabeled: int | pd.DataFrame
) -> tuple[list[pd.DataFrame], int, bool]:
    """The personas ``simval.rectify.rectify`` asks about, the answers it draws per
    generated item, and whether the frames are an upper bound: the labeled humans;
    with a number, the labeled humans under every arm (their re-drawn personas are
    among them); with a persona frame, its rows, under every arm where it lacks a
    treatment column (the run draws one arm per row: the count is then at most)."""
    treatment = list(study.treatment)
    arms = labeled[treatment].drop_duplicates() if treatment else labeled.iloc[:0]
    under_arms = [
        labeled.assign(**{c: arm[c] for c in treatment}) for _, arm in arms.iterrows()
    ]
    if isinstance(unlabeled, int):
        frames = [labeled, *under_arms]
        rows = len(labeled) * (1 + max(len(under_arms), 1))
        return frames, RECTIFY_SAMPLES * rows + unlabeled, False
    absent = [c for c in treatment if c not in unlabeled.columns]
    frames = [labeled]
    if absent and len(arms) > 1:
        frames += [
            unlabeled.assign(**{c: arm[c] for c in absent})
            for _, arm in arms.iterrows()
        ]
    else:
        frames.append(unlabeled.assign(**{c: arms[c].iloc[0] for c in absent}))
    rows = len(labeled) + len(unlabeled)
    return (
        frames,
        RECTIFY_SAMPLES * rows + len(unlabeled),
        bool(absent) and len(arms) > 1,
    )


def rectify_forecast(
    simulator: PromptedSimulator,
    *,
    labeled: pd.DataFrame,
    unlabeled: int | pd.DataFrame,
    price: float | Sequence[float] | None = None,
    load_seconds: float | None = None,
) -> Forecast:
    """What ``simval.rectify.rectify`` would ask ``simulator`` (whose study it
    rectifies): the items its formulas use (``rectify_items``) for the personas it
    asks about (``rectify_frames``), as ``scoring_forecast`` counts them."""
    study = simulator.study
    frames, generated, bound = rectify_frames(study, labeled, unlabeled)
    return scoring_forecast(
        simulator, command="rectify", frames=frames,
        items=rectify_items(study, labeled, unlabeled), generated=generated,
        price=price, load_seconds=load_seconds, bound=bound,
    )  # fmt: skip


def rectify_items(
    study: Study, labeled: pd.DataFrame, unlabeled: int | pd.DataFrame
) -> tuple[Item, ...]:
    """The items ``simval.rectify.rectify`` asks the model about: the outcomes and item
    covariates of the study's models, as rectify resolves them (``_setup``)."""
    from simval.rectify import SANDWICH, _setup

    setup = _setup(
        study, labeled, None, unlabeled=unlabeled, family="ols", cov=SANDWICH,
        items=None, treatment=None, alpha=0.05, lam="tuned", samples=1,
    )  # fmt: skip
    return setup.simulated


def bench_forecasts(
    task: Task,
    specs: Sequence[ModelSpec],
    *,
    n: int | None,
    reps: int,
    seed: int,
    price: float | Sequence[float] | None,
    training: dict[str, Any],
    **build: Any,
) -> list[Forecast]:
    """What ``simval.bench.bench_task`` would ask of each model on ``task``: a ``:pilot``
    spec's fine-tuning steps (``training``: finetune's keywords) and then every prompt
    afresh on its base model (its adapter is still to train), the others' prompts as
    ``scoring_forecast`` counts them on the respondents compared (``task_samples``),
    each block titled by its spec (``spec_title``). ``build``: ``build_simulator``'s
    mode, api and api_key_env."""
    from simval.bench import task_samples
    from simval.simulators.specs import build_simulator

    pilot_df, compared = task_samples(task, list(specs), n=n, seed=seed)
    generated = bench_generated(task.study, n=len(compared), reps=reps)
    forecasts = []
    command = f"bench {task.name}"
    for spec in specs:
        tuned = spec.pilot
        if tuned:
            steps = finetune_forecast(
                spec.model, pilot_df, task.study, seed=seed, **training
            )
            forecasts.append(
                dataclasses.replace(
                    steps, command=command, model=spec_title(spec, training=True)
                )
            )
        simulator, seconds = loaded(
            partial(
                build_simulator,
                dataclasses.replace(spec, pilot=False),
                study=task.study,
                **build,
            )
        )
        forecast = scoring_forecast(
            simulator,
            command=command,
            frames=[compared],
            generated=generated,
            price=price,
            load_seconds=seconds,
            fresh=tuned,
        )
        forecasts.append(dataclasses.replace(forecast, model=spec_title(spec)))
    return forecasts


def spec_title(spec: ModelSpec, *, training: bool = False) -> str:
    """A bench block's title: the spec's name and its model, as leaderboards name the
    model (a folder's or hub id's last part, a served model's name without its
    address): "tuned (SmolLM2-135M-Instruct, fine-tuned on the pilot)";
    ``training``: the block of its fine-tuning on the pilot."""
    from pathlib import Path

    from simval.simulators.engine import DEFAULT_MODEL_NAME

    if spec.server or spec.model == "default":
        model = DEFAULT_MODEL_NAME if spec.model == "default" else spec.model
    else:
        model = Path(spec.model).expanduser().resolve().name or spec.model
    if spec.pilot:
        model += f", {'fine-tuning' if training else 'fine-tuned'} on the pilot"
    elif spec.adapter:
        model += f", adapter {Path(spec.adapter).expanduser().resolve().name}"
    elif spec.server:
        model += ", served"
    return f"{spec.name} ({model})"


def total_text(forecasts: Sequence[Forecast]) -> str:
    """Each forecast's lines, then (for several) the total of the timed estimates."""
    text = "\n".join(f.to_text() for f in forecasts)
    seconds = [f.seconds for f in forecasts if f.seconds is not None]
    costs = [f.cost for f in forecasts if f.cost is not None]
    if len(forecasts) > 1 and seconds:
        text += f"\nestimated time in all: {duration(sum(seconds))}"
    if len(forecasts) > 1 and costs:
        about = "about " if any(f.estimated for f in forecasts) else ""
        text += f"\ncost in all: {about}{sum(costs):,.4f}"
    return text


def loaded(build: Callable[[], Any]) -> tuple[Any, float]:
    """``build()`` (a model load) and the seconds it took."""
    started = time.perf_counter()
    built = build()
    return built, time.perf_counter() - started


def finetune_forecast(
    model: str,
    pilot_df: pd.DataFrame,
    study: Study,
    *,
    epochs: int,
    batch_size: int,
    warmup_steps: int = WARMUP_STEPS,
    **settings: Any,
) -> Forecast:
    """The training steps ``simval.finetune.finetune`` would take on ``pilot_df`` (one
    per batch of a prompt-prefix group, every epoch) and their time: a real one-epoch
    fine-tune of the pilot's first respondents (enough for ``warmup_steps`` batches,
    and at least the smallest pilot; written to a temporary folder and deleted), less
    the time the model took to load, per step it took. ``settings``: finetune's other
    keywords."""
    import tempfile

    from simval.finetune import (
        MIN_PILOT_ROWS,
        check_pilot,
        finetune,
        training_examples,
    )
    from simval.simulators.loading import load_causal_lm, resolve_model
    from simval.simulators.prefixes import prefix_groups
    from simval.simulators.prompts import PromptRenderer, as_template

    check_pilot(pilot_df, study)
    started = time.perf_counter()
    _, tokenizer = load_causal_lm(resolve_model(model), dtype="auto")
    renderer = PromptRenderer(
        study=study, template=as_template(None), tokenizer=tokenizer
    )
    examples = training_examples(pilot_df, study, renderer=renderer)
    groups = prefix_groups([e.prompt_ids for e in examples], batch_size=batch_size)
    steps = epochs * sum(math.ceil(len(g) / batch_size) for g in groups)
    load_seconds = time.perf_counter() - started
    # the fewest whole respondents that fill ``warmup_steps`` batches and make a pilot
    fill = math.ceil(warmup_steps * batch_size / max(len(study.items), 1))
    rows = max(MIN_PILOT_ROWS, fill)
    sample = pilot_df.iloc[:rows]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        finetune(model, sample, study, folder, epochs=1, batch_size=batch_size,
                 progress=False, **settings)  # fmt: skip
        spent = time.perf_counter() - started
    timed_examples = training_examples(sample, study, renderer=renderer)
    timed_groups = prefix_groups(
        [e.prompt_ids for e in timed_examples], batch_size=batch_size
    )
    timed = sum(math.ceil(len(g) / batch_size) for g in timed_groups)
    # the warm-up's load of the model is the same as the one timed above
    each = max(spent - load_seconds, 0.0) / max(timed, 1)
    return Forecast(
        command="finetune", model=model, asks=steps, unit="steps",
        seconds_each=each, warmup=timed, load_seconds=load_seconds,
    )  # fmt: skip


def _unscored(
    simulator: PromptedSimulator,
    frames: Sequence[pd.DataFrame],
    item: Item,
    *,
    fresh: bool = False,
) -> tuple[list[str], int]:
    """The unique prompts of ``item`` for the personas of ``frames`` that the result
    store lacks (in first-seen order), and how many it holds."""
    from simval.simulators.engine import scored_choices

    labels = list(scored_choices(item))
    prompts = dict.fromkeys(
        simulator.prompt(row, item) for frame in frames for _, row in frame.iterrows()
    )
    keys = {p: simulator._score_key(p, labels) for p in prompts}
    known = {} if fresh else simulator.store.get_many(list(keys.values()))
    missing = [p for p, key in keys.items() if key not in known]
    return missing, len(prompts) - len(missing)


def _warm_up(
    simulator: PromptedSimulator,
    scored: Sequence[Item],
    todo: dict[str, list[str]],
    generated: Sequence[Item],
    frames: Sequence[pd.DataFrame],
    warmup: int,
) -> tuple[float | None, int]:
    """Seconds per prompt over ``warmup`` real prompts of the first item with work to
    do (scored, else generated), after one untimed prompt (a model's first call pays
    for setting itself up), and how many were timed; nothing is stored."""
    from simval.simulators.engine import generation_keys

    item = next((i for i in scored if todo[i.name]), None)
    if item is not None:
        prompts = todo[item.name][: warmup + 1]

        def ask(batch: list[str]) -> None:
            for _ in simulator._score_prompts(batch, item):
                pass

    elif generated and frames and len(frames[0]):
        people = frames[0].head(warmup + 1)
        prompts = [simulator.prompt(row, generated[0]) for _, row in people.iterrows()]
        keys = dict(
            zip(
                prompts,
                generation_keys(
                    simulator.fingerprint,
                    prompts,
                    generation=simulator.generation,
                    run_seed=0,
                ),
                strict=True,
            )
        )

        def ask(batch: list[str]) -> None:
            for _ in simulator._generate_texts([(keys[p], p) for p in batch]):
                pass

    else:
        return None, 0
    first, timed = prompts[:1], prompts[1:] or prompts[:1]
    if len(prompts) > 1:
        ask(first)
    started = time.perf_counter()
    ask(timed)
    return (time.perf_counter() - started) / len(timed), len(timed)


def _tokens(
    simulator: PromptedSimulator,
    scored: Sequence[Item],
    todo: dict[str, list[str]],
    drawn: Sequence[Item],
    frames: Sequence[pd.DataFrame],
    generated: int,
    plan: list[OptionRequests],
) -> int | None:
    """The tokens the asks send: each scored prompt's with every option's answer
    tokens (through a completions server, the sequences of its request shape,
    ``_served_plan``), each
    generated prompt's once (and in-process, the answer tokens it may generate; a
    served model's are its completion tokens); a chat API's prompts as
    ``chat_prompt_tokens`` counts them."""
    from simval.simulators.engine import scored_choices

    if getattr(simulator, "api", None) == "chat":
        return _chat_tokens(simulator, scored, todo, drawn, frames, generated)
    render = simulator._render
    if not hasattr(render, "option_ids"):  # a backend whose prompts are no token text
        return None
    served = hasattr(simulator, "server")  # a served model's answers are completions
    total = 0
    if served:
        total = sum(r.tokens for r in plan)
    for item in scored if not served else ():
        for prompt in todo[item.name]:
            ids, options = render.option_ids(prompt, scored_choices(item))
            total += sum(len(ids) + len(option) for option in options)
    new_tokens = 0 if served else simulator.generation.get("max_new_tokens", 0)
    people = frames[0] if frames else None
    for item in drawn if people is not None and len(people) else ():
        lengths = [
            len(render.encode(simulator.prompt(row, item)))
            for _, row in people.iterrows()
        ]
        total += round(generated * (sum(lengths) / len(lengths) + new_tokens))
    return total


def _requests(
    simulator: PromptedSimulator,
    todo: dict[str, list[str]],
    generated: int,
    plan: list[OptionRequests],
) -> int | None:
    """HTTP requests to a served model: a chat request per prompt, or the
    completions requests of ``_served_plan``; and one per generated answer; None
    in-process."""
    if not hasattr(simulator, "server"):
        return None
    if simulator.api == "chat":
        return sum(len(prompts) for prompts in todo.values()) + generated
    return sum(len(requests.bodies) for requests in plan) + generated


def _served_plan(
    simulator: PromptedSimulator, scored: Sequence[Item], todo: dict[str, list[str]]
) -> list[OptionRequests]:
    """The completions requests a served model's scoring sends: the probe that finds
    its request shape (on the first prompt to score), then each item's batches; none
    in-process or through a chat API. Counted once per forecast."""
    served = hasattr(simulator, "server") and simulator.api == "completions"
    asked = [item for item in scored if todo.get(item.name)] if served else []
    if not asked:
        return []
    first = asked[0]
    probe = simulator._option_tokens(todo[first.name][:1], first)
    plan = simulator.shape_probe(probe)
    for item in asked:
        plan += simulator.scoring_requests(todo[item.name], item)
    return plan


def _chat_tokens(
    simulator: PromptedSimulator,
    scored: Sequence[Item],
    todo: dict[str, list[str]],
    drawn: Sequence[Item],
    frames: Sequence[pd.DataFrame],
    generated: int,
) -> int:
    """A chat API's prompt tokens (``chat_prompt_tokens``, with the simulator's
    tokenizer where it holds one): every scored prompt's once (a request each), each
    generated item's mean prompt per answer drawn."""
    count = partial(chat_prompt_tokens, tokenizer=getattr(simulator, "tokenizer", None))
    total = sum(count(p) for item in scored for p in todo[item.name])
    people = frames[0] if frames else None
    for item in drawn if people is not None and len(people) else ():
        lengths = [count(simulator.prompt(row, item)) for _, row in people.iterrows()]
        total += round(generated * sum(lengths) / len(lengths))
    return total


def _estimates(simulator: PromptedSimulator) -> bool:
    """Whether the prompt tokens are estimated: a chat API without a tokenizer here."""
    return (
        getattr(simulator, "api", None) == "chat"
        and getattr(simulator, "tokenizer", None) is None
    )


def _completion_tokens(
    simulator: PromptedSimulator,
    scored: Sequence[Item],
    todo: dict[str, list[str]],
    generated: int,
    plan: list[OptionRequests],
) -> tuple[int, str] | None:
    """The tokens a served model is asked to generate, and per what: one per scored
    request through a chat API (``max_tokens=1``), one per sequence of a completions
    server's requests (``_served_plan``; each generates one token), and
    ``max_new_tokens`` per generated answer (an upper bound: an answer may end
    sooner); None in-process."""
    if not hasattr(simulator, "server"):
        return None
    chat = simulator.api == "chat"
    if chat:
        total = sum(len(todo[item.name]) for item in scored)
    else:
        total = sum(r.sequences for r in plan)
    notes = [f"1 per scored {'request' if chat else 'sequence'}"] if total else []
    new_tokens = simulator.generation["max_new_tokens"]
    if generated:
        total += generated * new_tokens
        notes.append(
            f"max_new_tokens={new_tokens} per generated answer, an upper bound"
        )
    return total, "; ".join(notes) or "nothing to generate"
