"""The loop every language-model simulator shares: prompt, result store, score or generate.

``PromptedSimulator`` renders each (persona, item) prompt, looks its result up in the
on-disk store (``simval.simulators.store``), hands only the prompts it lacks to the
backend, stores each batch as it returns, so that an interrupted run resumes and a
repeated run makes no model call, and turns the results into answers: in ``score``
mode answers sampled from the option probabilities with the seed (so the cached model
output is deterministic and repeated draws stay distinct), in ``generate`` mode sampled
text parsed to an option, an answer that cannot be parsed counted and left missing,
never mapped to a valid option.

A backend (``HFSimulator`` in-process, ``ServedSimulator`` over HTTP) calls ``_setup``
and implements two methods: ``_score_prompts`` (option probabilities of prompts) and
``_generate_texts`` (sampled text per result key, seeded from the key).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from simval.defaults import Mode
from simval.errors import OptionError, check_count, check_number, refuse
from simval.progress import Progress
from simval.simulators.base import Seed
from simval.simulators.loading import adapter_record
from simval.simulators.prompts import PromptTemplate, as_template
from simval.simulators.store import ResultStore, result_key, store_path
from simval.study import MAX_SCORED_VALUES, Item, Study

MODES = get_args(Mode)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
"""What ``model="default"`` is, as a report names it."""


@dataclass(frozen=True)
class Identity:
    """What a simulator is, as a report names it: ``model`` (a hub id or the served
    name as given, a local folder as its absolute path, which reports show relative
    to themselves), ``adapter`` (its folder, absolute; None for the base model),
    ``dtype`` (the weights' precision; "as served" over HTTP), ``mode`` (score or
    generate) and, for a served model, ``api`` (the API and the server's address,
    never its credentials)."""

    model: str
    adapter: str | None
    dtype: str
    mode: str
    api: str | None = None


class PromptedSimulator(ABC):
    """What every language-model simulator shares: the prompt, the result store and
    ``simulate``/``predict_proba`` on top of them.

    A backend sets itself up with ``_setup``, sets ``fingerprint`` (what its results
    depend on: the model, adapter and precision, never a path or an address) and
    ``_render`` (persona and item to prompt), and implements ``_score_prompts`` and
    ``_generate_texts``. ``LLMSimulator`` (``simval.simulators.base``) is its contract.
    """

    study: Study
    mode: Mode
    label: str
    adapter: str | None
    fingerprint: str
    template: PromptTemplate
    generation: dict[str, Any]
    progress: bool | None
    training_index: tuple[Any, ...]
    store: ResultStore
    unparseable: Counter[str]
    _render: Callable[[Any, Item], str]
    _quiet_total: int
    _score_kind = "score"
    """The kind of scoring in each score key (results read another way are kept apart)."""

    def _setup(
        self,
        *,
        study: Study,
        mode: Mode,
        label: str,
        adapter: str | None,
        template: str | PromptTemplate | None,
        generation: dict[str, Any],
        cache_dir: str | Path | None,
        progress: bool | None,
        quiet_total: int,
    ) -> None:
        """The shared state: ``label``, the model and adapter as shown in progress bars;
        ``adapter``, the adapter's folder, whose finetune record names the respondents
        it was trained on (``training_index``); ``quiet_total``: a bar over this many
        prompts or fewer stays silent."""
        self.study = study
        self.mode = mode
        self.label = label
        self.adapter = adapter
        self.generation = generation
        self.progress = progress
        record = adapter_record(adapter) if adapter else {}
        self.training_index = tuple(record.get("pilot_index", ()))
        self.template = as_template(template)
        self.store = ResultStore(store_path(cache_dir))
        self.unparseable = Counter()
        self._quiet_total = quiet_total

    # --- public API -------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        """The model, adapter, dtype, mode and (served) API this simulator answers with
        (``Identity``); ``simval.results.identity_of`` keeps it on a Validation."""
        model = self.label.partition(" + ")[0]
        served = getattr(self, "server", None)
        if served is not None:
            model = getattr(self, "model_name", model)
        elif model == "default":
            model = f"{DEFAULT_MODEL_NAME} (default)"
        elif Path(model).expanduser().is_dir():
            model = str(Path(model).expanduser().resolve())
        return Identity(
            model=model,
            adapter=self.adapter,
            dtype=str(getattr(self, "precision", "as served")),
            mode=self.mode,
            api=None if served is None else f"{getattr(self, 'api', '')} at {served}",
        )

    def prompt(self, persona_row: pd.Series | dict, item: Item | str) -> str:
        """The exact text sent to the model for this persona and item."""
        return self._render(persona_row, self._item(item))

    def simulate(
        self, personas: pd.DataFrame, items: Sequence[Item], *, seed: Seed = None
    ) -> pd.DataFrame:
        """One answer per persona and item, drawn with ``seed``: in score mode sampled
        from the option probabilities (so the cached model output is deterministic and
        repeated draws stay distinct), in generate mode parsed from sampled text. A
        number item too wide to score (``Item.choices`` None) is generated in either
        mode."""
        rng = np.random.default_rng(seed)
        answers = {}
        for item in items:
            item = self._item(item)
            if self.mode == "score" and item.choices is not None:
                answers[item.name] = _sample(
                    self.predict_proba(personas, item), rng=rng
                )
            else:
                answers[item.name] = self._generate_answers(personas, item, rng=rng)
        return pd.DataFrame(answers, index=personas.index)

    def predict_proba(self, personas: pd.DataFrame, item: Item | str) -> pd.DataFrame:
        """Per persona, the model's probability of each option (columns: option codes)."""
        item = self._item(item)
        self._check_scoring(item)
        choices = scored_choices(item)
        prompts = [self._render(row, item) for _, row in personas.iterrows()]
        probabilities = self._option_probabilities(prompts, item)
        return pd.DataFrame(
            probabilities, index=personas.index, columns=list(choices.values())
        )

    # --- what a backend implements ----------------------------------------------------

    @abstractmethod
    def _score_prompts(
        self, prompts: list[str], item: Item
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield (prompts, their option probabilities: a row per prompt, a column per
        ``scored_choices(item)`` label) batch by batch, in any order."""

    @abstractmethod
    def _generate_texts(
        self, todo: list[tuple[str, str]]
    ) -> Iterator[tuple[list[str], list[str]]]:
        """Yield (result keys, one sampled text per key) batch by batch for the (key,
        prompt) pairs ``todo``, each sample seeded from its key."""

    def _check_scoring(self, item: Item) -> None:
        """Refuse, before any work, to score ``item`` where this backend cannot (every
        item can be scored here)."""

    # --- the loop ---------------------------------------------------------------------

    def _item(self, item: Item | str) -> Item:
        """The study's Item for a name (or the Item itself)."""
        return self.study.item(item) if isinstance(item, str) else item

    def _score_key(self, prompt: str, labels: list[str]) -> str:
        """Result-store key of one prompt's option probabilities."""
        return result_key(self.fingerprint, self._score_kind, prompt, labels)

    def _option_probabilities(self, prompts: list[str], item: Item) -> np.ndarray:
        """Option probabilities per prompt, from the store or the backend (unique
        prompts only)."""
        labels = list(scored_choices(item))
        keys = [self._score_key(p, labels) for p in prompts]
        known = self.store.get_many(keys)
        todo = list(dict.fromkeys(p for p, k in zip(prompts, keys) if k not in known))
        if todo:
            scored = (
                (
                    [self._score_key(p, labels) for p in batch],
                    [s.tolist() for s in rows],
                )
                for batch, rows in self._score_prompts(todo, item)
            )
            self._keep(f"scoring {item.name}", scored, total=len(todo), known=known)
        return np.array([known[k] for k in keys], dtype=float).reshape(
            len(prompts), len(labels)
        )

    def _generate_answers(
        self, personas: pd.DataFrame, item: Item, *, rng: np.random.Generator
    ) -> np.ndarray:
        """Sampled text per persona, parsed to option codes (NaN where unparseable)."""
        keys, known, todo = self._generation_todo(personas, item, rng=rng)
        texts = self._generate_texts(todo)
        self._keep(f"generating {item.name}", texts, total=len(todo), known=known)
        return self._parsed_answers(keys, known, item)

    def _generation_todo(
        self, personas: pd.DataFrame, item: Item, *, rng: np.random.Generator
    ) -> tuple[list[str], dict[str, Any], list[tuple[str, str]]]:
        """For generate mode: each persona's result key, the texts already stored, and
        the (key, prompt) pairs still to sample (repeated personas get their own)."""
        run_seed = int(rng.integers(2**63))
        prompts = [self._render(row, item) for _, row in personas.iterrows()]
        keys = generation_keys(
            self.fingerprint, prompts, generation=self.generation, run_seed=run_seed
        )
        known = self.store.get_many(keys)
        todo = [(k, p) for k, p in dict(zip(keys, prompts)).items() if k not in known]
        return keys, known, todo

    def _parsed_answers(
        self, keys: list[str], known: dict[str, Any], item: Item
    ) -> np.ndarray:
        """The stored texts parsed to option codes; unparseable ones NaN and counted."""
        codes = np.array([parse_answer(known[k], item) for k in keys], dtype=float)
        self.unparseable[item.name] += int(np.isnan(codes).sum())
        return codes

    def _keep(
        self,
        what: str,
        batches: Iterable[tuple[list[str], list[Any]]],
        *,
        total: int,
        known: dict[str, Any],
    ) -> None:
        """Store each batch of (keys, values) as it arrives, in one transaction, and
        add it to ``known``, under a progress bar over ``total`` prompts."""
        with self._bar(what, total=total) as bar:
            for keys, values in batches:
                stored = dict(zip(keys, values, strict=True))
                self.store.put_many(stored)
                known.update(stored)
                bar.update(len(stored))

    def _bar(self, what: str, *, total: int) -> Progress:
        """A progress bar over ``total`` prompts, named after this model; silent for
        ``quiet_total`` prompts or fewer, or with ``progress=False``."""
        quiet = total <= self._quiet_total or self.progress is False
        return Progress(
            desc=f"{self.label}: {what}", total=total, unit="prompts", enabled=not quiet
        )


def batches(values: list[Any], *, size: int) -> list[list[Any]]:
    """``values`` in consecutive runs of ``size``."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def generation_settings(
    *, temperature: float, top_p: float, max_new_tokens: int
) -> dict[str, Any]:
    """Generate mode's sampling settings, checked: OptionError names any out of range.
    The values are kept as given (they are part of every generated result's key)."""
    check_number("temperature", temperature, above=0)
    if (
        isinstance(top_p, bool)
        or not isinstance(top_p, int | float | np.integer | np.floating)
        or not 0 < top_p <= 1
    ):
        raise refuse("top_p", top_p, "a number above 0 and at most 1")
    check_count("max_new_tokens", max_new_tokens)
    return {
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
    }


def generation_keys(
    fingerprint: str, prompts: list[str], *, generation: dict, run_seed: int
) -> list[str]:
    """Result-store keys of sampled answers: model, prompt, sampling settings, the run's
    seed and the prompt's repeat number, so repeated personas get distinct draws."""
    seen: Counter[str] = Counter()
    keys = []
    for prompt in prompts:
        keys.append(
            result_key(
                fingerprint, "generate", prompt, generation, run_seed, seen[prompt]
            )
        )
        seen[prompt] += 1
    return keys


def scored_choices(item: Item) -> dict[str, float]:
    """The answers score mode ranks for ``item`` (``Item.choices``); an OptionError for a
    number item too wide to score, which generate mode answers."""
    if item.choices is None:
        raise OptionError(
            f"item {item.name!r} asks for {item.number.describe()}: too many values to "
            f"score (at most {MAX_SCORED_VALUES}); simulate() generates its answers"
        )
    return item.choices


def parse_answer(text: str, item: Item) -> float:
    """The option code a free-text answer names, or NaN when it names none unambiguously.

    In order: the whole answer is a label (case and surrounding punctuation ignored);
    the answer starts with a label (the longest that fits, followed by a non-letter);
    the answer starts with a number, read as the option's position as shown in the
    prompt (1..k) or, failing that, as an option code. A number item's answer is the
    first number in the text (``parse_number``).
    """
    if item.is_number:
        return parse_number(text, item)
    answer = text.strip().strip("\"'*`").strip()
    lowered = answer.lower()
    labels = {label.lower(): code for label, code in item.options.items()}
    trimmed = lowered.rstrip(".!,;: ")
    if trimmed in labels:
        return float(labels[trimmed])
    for label in sorted(labels, key=len, reverse=True):
        if (
            lowered.startswith(label)
            and not lowered[len(label) : len(label) + 1].isalpha()
        ):
            return float(labels[label])
    number = re.match(r"\(?(\d+(?:\.\d+)?)\b", answer)
    if number:
        value = float(number.group(1))
        if value.is_integer() and 1 <= value <= len(item.codes):
            return float(item.codes[int(value) - 1])
        if value in item.codes:
            return value
    return float("nan")


NUMBER = re.compile(
    r"(?<![\w.])[-\u2212]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[-\u2212]?\d+(?:\.\d+)?|[-\u2212]?\.\d+"
)
"""A number as people write one: 42, -3, 0.5, .5, 1,200 (thousands separators)."""


def parse_number(text: str, item: Item) -> float:
    """The first number in a free-text answer to a number item, NaN when there is none
    or when it lies off the item's scale (out of bounds, or not whole on a whole
    scale): an answer off the scale is unparseable, never clipped or rounded."""
    found = NUMBER.search(text)
    if found is None:
        return float("nan")
    value = float(found.group(0).replace(",", "").replace("\u2212", "-"))
    return float("nan") if item.number.invalid(np.array([value]))[0] else value


def _sample(probabilities: pd.DataFrame, *, rng: np.random.Generator) -> np.ndarray:
    """One option code per row, drawn from that row's probabilities."""
    cumulative = probabilities.to_numpy().cumsum(axis=1)
    draws = rng.random(len(probabilities))[:, None] * cumulative[:, -1:]
    picked = (draws >= cumulative).sum(axis=1).clip(max=cumulative.shape[1] - 1)
    return probabilities.columns.to_numpy()[picked]
