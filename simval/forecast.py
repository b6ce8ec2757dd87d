"""What a run would ask of its model, and how long and how much it would take: the
``--dry-run`` of ``simval validate``, ``bench``, ``rectify`` and ``finetune``.

A scoring run asks the model for each unique (persona, item) prompt it lacks in the
result store (``simval.simulators.engine``): prompts already stored are free, and in
score mode the replicates re-read the stored probabilities. Generated answers (generate
mode, or a number item too wide to score) are drawn afresh for every replicate and
sample, so they are counted as the run draws them. The time is the prompts times the
time per prompt of a short warm-up on real prompts (``WARMUP`` of them; nothing is
stored), and for a served model the cost is the tokens sent times ``--price`` per
million. A fine-tuning run is its steps times the time of measured training steps.
"""

from __future__ import annotations

import dataclasses
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
    from simval.simulators.specs import ModelSpec
    from simval.study import Item, Study
    from simval.tasks import Task

WARMUP = 8
"""The fewest prompts the warm-up times."""
WARMUP_STEPS = 2
"""Training steps the fine-tuning warm-up times."""
RECTIFY_SAMPLES = 10
"""The answer sets ``simval.rectify`` draws per persona where it cannot score."""


@dataclass(frozen=True)
class Forecast:
    """What a run would ask of one model, before it runs.

    ``asks``: the model calls still to make (prompts; training steps with ``unit``
    "steps"); ``stored``: prompts the result store already holds (free);
    ``generated``: how many of the asks are generated answers (drawn afresh per
    replicate and sample, counted as the run draws them). ``tokens``:
    the tokens those calls send (prompt plus each option scored), None where not
    counted; ``requests``: HTTP requests to a served model (None in-process).
    ``seconds_each``: the measured time per prompt or step over ``warmup`` of them,
    after a load of ``load_seconds``. ``price``: per million tokens. ``bound``: the
    count is an upper bound (a persona file whose arms are drawn at random).
    """

    command: str
    model: str
    asks: int
    stored: int = 0
    unit: str = "prompts"
    generated: int = 0
    tokens: int | None = None
    requests: int | None = None
    price: float | None = None
    seconds_each: float | None = None
    warmup: int = 0
    load_seconds: float | None = None
    bound: bool = False

    @property
    def cost(self) -> float | None:
        """The tokens at ``price`` per million (None without a price or a count)."""
        if self.price is None or self.tokens is None:
            return None
        return self.tokens / 1e6 * self.price

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
        if self.tokens is not None:
            lines.append(f"  tokens: {up_to}{self.tokens:,}")
        if self.cost is not None:
            lines.append(
                f"  cost: {self.cost:,.4f} at {self.price:g} per million tokens"
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


def scoring_forecast(
    simulator: PromptedSimulator,
    *,
    command: str,
    frames: Sequence[pd.DataFrame],
    items: Sequence[Item] | None = None,
    generated: int = 0,
    price: float | None = None,
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
    as the run sends it, since a smaller one costs more per prompt."""
    if price is not None and not (isinstance(price, int | float) and price >= 0):
        raise refuse("price", price, "a number of at least 0 (per million tokens)")
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
    return Forecast(
        command=command,
        model=simulator.label,
        asks=asks,
        stored=stored,
        generated=to_generate,
        tokens=_tokens(simulator, scored, todo, drawn, frames, generated),
        requests=_requests(simulator, todo, to_generate),
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
    price: float | None = None,
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
    price: float | None,
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
        text += f"\ncost in all: {sum(costs):,.4f}"
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
) -> int | None:
    """The tokens the asks send: each scored prompt's with every option's answer
    tokens (a served completions request sends prompt + option per option), each
    generated prompt's once (plus the answer tokens it may generate); None where the
    prompt is no token text (a chat API, whose server applies its own template)."""
    from simval.simulators.engine import scored_choices

    render = simulator._render
    if not hasattr(render, "option_ids"):
        return None
    total = 0
    for item in scored:
        for prompt in todo[item.name]:
            ids, options = render.option_ids(prompt, scored_choices(item))
            total += sum(len(ids) + len(option) for option in options)
    new_tokens = simulator.generation.get("max_new_tokens", 0)
    people = frames[0] if frames else None
    for item in drawn if people is not None and len(people) else ():
        lengths = [
            len(render.encode(simulator.prompt(row, item)))
            for _, row in people.iterrows()
        ]
        total += round(generated * (sum(lengths) / len(lengths) + new_tokens))
    return total


def _requests(
    simulator: PromptedSimulator, todo: dict[str, list[str]], generated: int
) -> int | None:
    """HTTP requests to a served model: per item a completions request per
    ``batch_size`` prompts (or per prompt and option under serial scoring, or per
    prompt through a chat API), and one per generated answer; None in-process."""
    if not hasattr(simulator, "server"):
        return None
    if simulator.api == "chat":
        per_item = [len(prompts) for prompts in todo.values()]
    elif simulator.serial_scoring:
        per_item = [
            len(prompts) * len(simulator.study.item(name).choices)
            for name, prompts in todo.items()
        ]
    else:
        per_item = [
            math.ceil(len(prompts) / simulator.batch_size) for prompts in todo.values()
        ]
    return sum(per_item) + generated
