"""HFSimulator: simulated respondents from a causal language model (transformers, + peft adapter).

Two modes. ``score`` reads, for each (persona, item), the log-probability of every
answer option as a whole continuation of the prompt and normalises them into a
distribution; answers are then sampled from it with the seed, so the cached model
output is deterministic and repeated draws stay distinct. ``generate`` samples free
text and parses it to an option; an answer that cannot be parsed is counted and left
missing, never mapped to a valid option.

Every model output goes to an on-disk store as each batch finishes, keyed by model,
adapter, prompt and options (and seed and sample index for generated text), so an
interrupted run resumes where it stopped and a repeated run makes no model call.
torch and transformers are imported only when a simulator is built.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from simval.errors import OptionError, check_option
from simval.progress import Progress
from simval.runtime import concurrently, scoring_workers
from simval.simulators.base import Seed
from simval.simulators.dependencies import require_llm
from simval.simulators.fingerprints import fingerprint
from simval.simulators.loading import (
    adapter_record,
    cache_root,
    contiguous_head,
    load_causal_lm,
    merged_adapter,
    resolve_model,
)
from simval.simulators.prefixes import (
    common_prefix,
    group_batches,
    prefix_groups,
    shared_length,
)
from simval.simulators.prompts import PromptRenderer, PromptTemplate, as_template
from simval.simulators.store import ResultStore, result_key
from simval.study import MAX_SCORED_VALUES, Item, Study

Mode = Literal["score", "generate"]
MODES = ("score", "generate")


class PromptedSimulator:
    """What every language-model simulator shares: the prompt and ``simulate``.

    A subclass sets the attributes below and provides ``predict_proba`` (score mode)
    and ``_generate_answers`` (generate mode, built on ``_generation_todo`` and
    ``_parsed_answers``).
    """

    study: Study
    mode: Mode
    fingerprint: str
    generation: dict[str, Any]
    store: ResultStore
    unparseable: Counter[str]
    _render: PromptRenderer

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

    def _item(self, item: Item | str) -> Item:
        """The study's Item for a name (or the Item itself)."""
        return self.study.item(item) if isinstance(item, str) else item

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


class HFSimulator(PromptedSimulator):
    """Answers a study's items for personas with a causal LM, base or with a LoRA adapter.

    ``model``: a local folder, a hub id already on this machine, or ``"default"`` (the
    embedded SmolLM2-135M-Instruct). ``adapter``: a peft adapter folder. ``template``:
    a Jinja2 user-turn string or a ``PromptTemplate`` (see ``simval.simulators.prompts``).
    ``progress``: None or True shows scoring progress (a bar on a terminal, plain
    lines in a log; ``simval.progress``), False hides it. ``cache_dir``: where converted
    models and the result store live (default ``$SIMVAL_CACHE_DIR`` or ~/.cache/simval).
    ``training_index``: the respondents an adapter made by ``simval.finetune`` was
    trained on; ``validate`` refuses human data that contains any of them.
    ``workers``: how many scoring batches run at once, each on one core (default:
    torch's thread count, i.e. the machine's cores or ``$SIMVAL_THREADS``); see
    ``simval.runtime.concurrently``.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        study: Study,
        adapter: str | Path | None = None,
        template: str | PromptTemplate | None = None,
        mode: Mode = "score",
        batch_size: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: str | Path | None = None,
        progress: bool | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 16,
        workers: int | None = None,
    ) -> None:
        settings = _settings(
            mode=mode, batch_size=batch_size, workers=workers,
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
        )  # fmt: skip
        require_llm()
        folder = None if adapter is None else str(Path(adapter).resolve())
        lm, tokenizer = load_causal_lm(
            resolve_model(model, cache_dir=cache_dir),
            adapter=folder, device=device, dtype=dtype, cache_dir=cache_dir,
        )  # fmt: skip
        self._attach(
            lm, tokenizer, label=_label(model, adapter), adapter=folder, study=study,
            template=template, cache_dir=cache_dir, progress=progress, **settings,
        )  # fmt: skip

    @classmethod
    def from_pretrained(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        study: Study,
        name: str | None = None,
        adapter: str | Path | None = None,
        template: str | PromptTemplate | None = None,
        mode: Mode = "score",
        batch_size: int | None = None,
        cache_dir: str | Path | None = None,
        progress: bool | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 16,
        workers: int | None = None,
    ) -> HFSimulator:
        """A simulator on a model and tokenizer already loaded (``load_causal_lm``), so
        that several simulators share one load of the base weights. ``adapter``: a peft
        folder merged into a copy of ``model`` (``model`` stays as it is). ``name``:
        the model as shown in reprs and reports (default: the folder it was loaded
        from). The cache key is the one ``HFSimulator(folder, adapter=...)`` uses."""
        settings = _settings(
            mode=mode, batch_size=batch_size, workers=workers,
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
        )  # fmt: skip
        source = getattr(model, "name_or_path", "")
        if not source:
            raise OptionError(
                "from_pretrained needs a model loaded from a folder or hub id (its "
                "name_or_path is empty); the weights' files are its cache key"
            )
        folder = None if adapter is None else str(Path(adapter).resolve())
        if folder is not None:
            model = merged_adapter(copy.deepcopy(model), folder, where=source)
        simulator = cls.__new__(cls)
        simulator._attach(
            model, tokenizer, label=_label(name or source, adapter), adapter=folder,
            study=study, template=template, cache_dir=cache_dir, progress=progress,
            **settings,
        )  # fmt: skip
        return simulator

    def _attach(
        self,
        lm: Any,
        tokenizer: Any,
        *,
        label: str,
        adapter: str | None,
        study: Study,
        template: str | PromptTemplate | None,
        cache_dir: str | Path | None,
        progress: bool | None,
        mode: Mode,
        batch_size: int,
        workers: int | None,
        generation: dict[str, Any],
    ) -> None:
        """Set the simulator up on a loaded model (``adapter``: the folder merged into
        it; ``label``: the model and adapter as the user named them)."""
        self.study = study
        self.mode = mode
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.generation = generation
        self.label = label
        self.model_name = lm.name_or_path
        self.adapter = adapter
        self.model, self.tokenizer = contiguous_head(lm), tokenizer
        # the weights' precision changes the numbers, so it is part of every cache key
        self.precision = str(lm.dtype).removeprefix("torch.")
        self.fingerprint = (
            f"{fingerprint(self.model_name, adapter=adapter)}-{self.precision}"
        )
        record = adapter_record(adapter) if adapter else {}
        self.training_index = tuple(record.get("pilot_index", ()))
        self.template = as_template(template)
        self._render = PromptRenderer(
            study=study, template=self.template, tokenizer=tokenizer
        )
        self.store = ResultStore(cache_root(cache_dir) / "results.sqlite")
        self.unparseable: Counter[str] = Counter()
        self._argument_names = _argument_names(lm)

    def __repr__(self) -> str:
        """The model and adapter as the user named them (never this machine's paths)."""
        model, _, adapter = self.label.partition(" + ")
        adapter = f", adapter={adapter!r}" if adapter else ""
        return (
            f"HFSimulator({model!r}{adapter}, mode={self.mode!r}, "
            f"precision={self.precision!r})"
        )

    # --- public API -------------------------------------------------------------------

    def predict_proba(self, personas: pd.DataFrame, item: Item | str) -> pd.DataFrame:
        """Per persona, the model's probability of each option (columns: option codes)."""
        item = self._item(item)
        choices = scored_choices(item)
        prompts = [self._render(row, item) for _, row in personas.iterrows()]
        probabilities = self._option_probabilities(prompts, item)
        return pd.DataFrame(
            probabilities, index=personas.index, columns=list(choices.values())
        )

    # --- score mode -------------------------------------------------------------------

    def _option_probabilities(self, prompts: list[str], item: Item) -> np.ndarray:
        """Option probabilities per prompt, from the store or the model (unique prompts only)."""
        labels = list(scored_choices(item))
        keys = [result_key(self.fingerprint, "score", p, labels) for p in prompts]
        known = self.store.get_many(keys)
        todo = list(dict.fromkeys(p for p, k in zip(prompts, keys) if k not in known))
        if todo:
            for batch, scores in self._score_batches(todo, item=item):
                values = {
                    result_key(self.fingerprint, "score", p, labels): s.tolist()
                    for p, s in zip(batch, scores)
                }
                self.store.put_many(values)
                known.update(values)
        return np.array([known[k] for k in keys], dtype=float).reshape(
            len(prompts), len(labels)
        )

    def _score_batches(
        self, prompts: list[str], *, item: Item
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield (prompts, option probabilities) batch by batch, prompts sorted to share prefixes.

        The sorted batches are cut into one contiguous run per worker, of near-equal
        numbers of prompts (``_contiguous_shares``); the workers run
        concurrently, one core each, and each keeps its own prefix cache. A run's
        numbers depend only on its batches, so a given worker count gives the same
        probabilities on every run (counts differ in the last float bits).
        """
        encoded = {p: self._render.encode(p) for p in prompts}
        options = {
            p: [
                self._render.answer_ids(p, encoded[p], label)
                for label in scored_choices(item)
            ]
            for p in prompts
        }
        ordered = sorted(prompts, key=lambda p: encoded[p])
        groups = prefix_groups(
            [encoded[p] for p in ordered], batch_size=self.batch_size
        )
        batches = [
            [ordered[i] for i in batch]
            for batch in group_batches(groups, size=self.batch_size)
        ]
        workers = min(self.workers or scoring_workers(), len(batches))

        def run(chunk: list[list[str]]) -> Iterator[tuple[list[str], np.ndarray]]:
            prefixes = _PrefixCache(forward=self._forward, device=self.model.device)
            for batch in chunk:
                rows = [encoded[p] for p in batch]
                yield batch, self._score(rows, [options[p] for p in batch], prefixes)

        chunks = _contiguous_shares(batches, parts=workers)
        with self._bar(f"scoring {item.name}", total=len(prompts)) as bar:
            for batch, scores in concurrently([partial(run, c) for c in chunks]):
                bar.update(len(batch))
                yield batch, scores

    def _score(
        self,
        prompts: list[list[int]],
        options: list[list[list[int]]],
        prefixes: _PrefixCache,
    ) -> np.ndarray:
        """Softmax over options of the summed log-probability of each option's tokens.

        One forward pass per batch. The batch's common token prefix is run once (and
        kept while the next batches share it, in ``prefixes``) and its key/value cache
        reused; the rest of each prompt is left-padded, followed by every option's
        tokens side by side, with an attention mask that lets each option see the
        prompt and its own earlier tokens only, and position ids that skip the padding.
        So options of several tokens are scored as whole continuations without copying
        the prompt's cache.
        """
        torch = _torch()
        device, dtype = self.model.device, self.model.dtype
        common = common_prefix(prompts)
        layout = _ScoreLayout(
            suffixes=[p[common:] for p in prompts], options=options, prefix=common
        )
        cache = (
            prefixes.expanded(tuple(prompts[0][:common]), batch=len(prompts))
            if common
            else None
        )
        with torch.inference_mode():
            logits, _ = self._forward(
                input_ids=layout.input_ids(pad=self.tokenizer.pad_token_id).to(device),
                attention_mask=layout.attention_mask(dtype=dtype).to(device),
                position_ids=layout.position_ids().to(device),
                cache=cache,
                use_cache=False,
                keep=layout.scored_width,
            )
            scored = logits[:, -layout.scored_width :].float()
            logprobs = torch.log_softmax(scored, dim=-1).cpu().double()
        totals = layout.option_totals(logprobs)
        scores = np.exp(totals - totals.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def _forward(self, *, cache: Any = None, keep: int = 0, **inputs: Any) -> Any:
        """One model call, returning (logits, cache); the single place the model runs.

        Speaks both spellings of transformers' cache argument (``cache`` in 5.x,
        ``past_key_values`` before); ``keep`` > 0 computes logits for the last ``keep``
        positions only.
        """
        names = self._argument_names
        inputs[names["cache"]] = cache
        if keep and names["keep"]:
            inputs[names["keep"]] = keep
        out = self.model(**inputs)
        return out.logits, getattr(out, names["cache"], None)

    # --- generate mode ----------------------------------------------------------------

    def _generate_answers(
        self, personas: pd.DataFrame, item: Item, *, rng: np.random.Generator
    ) -> np.ndarray:
        """Sampled text per persona, parsed to option codes (NaN where unparseable)."""
        keys, known, todo = self._generation_todo(personas, item, rng=rng)
        batches = [
            todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)
        ]
        with self._bar(f"generating {item.name}", total=len(todo)) as bar:
            for batch in batches:
                texts = self._generate(
                    [p for _, p in batch], seeds=[k for k, _ in batch]
                )
                values = dict(zip([k for k, _ in batch], texts))
                self.store.put_many(values)
                known.update(values)
                bar.update(len(batch))
        return self._parsed_answers(keys, known, item)

    def _generate(self, prompts: list[str], *, seeds: list[str]) -> list[str]:
        """Sample a continuation per prompt, each row with its own generator (batch-independent)."""
        torch = _torch()
        device = self.model.device
        ids, mask = _pad(
            [self._render.encode(p) for p in prompts],
            pad=self.tokenizer.pad_token_id,
            side="left",
        )
        generators = [torch.Generator().manual_seed(int(s[:15], 16)) for s in seeds]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        eos = self.tokenizer.eos_token_id
        new = [[] for _ in prompts]
        done = torch.zeros(len(prompts), dtype=torch.bool)
        cache = None
        step_ids, step_positions = ids, positions
        with torch.inference_mode():
            for _ in range(self.generation["max_new_tokens"]):
                logits, cache = self._forward(
                    input_ids=step_ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=step_positions.to(device),
                    cache=cache,
                    use_cache=True,
                    keep=1,
                )
                logits = logits[:, -1].float().cpu()
                picked = torch.tensor(
                    [
                        _sample_token(
                            row,
                            g,
                            temperature=self.generation["temperature"],
                            top_p=self.generation["top_p"],
                        )
                        for row, g in zip(logits, generators)
                    ]
                )
                for r, token in enumerate(picked.tolist()):
                    if not done[r]:
                        new[r].append(token)
                done |= picked == eos
                if done.all():
                    break
                step_ids = picked.unsqueeze(1)
                step_positions = step_positions[:, -1:] + 1
                mask = torch.cat(
                    [mask, torch.ones(len(prompts), 1, dtype=mask.dtype)], dim=1
                )
        return [self.tokenizer.decode(t, skip_special_tokens=True) for t in new]

    # --- helpers ----------------------------------------------------------------------

    def _bar(self, what: str, *, total: int) -> Progress:
        """A progress bar over ``total`` prompts, named after this model; silent for a
        single batch's worth (nothing long runs there) or with ``progress=False``."""
        quiet = total <= self.batch_size or self.progress is False
        return Progress(
            desc=f"{self.label}: {what}", total=total, unit="prompts", enabled=not quiet
        )


class _PrefixCache:
    """The key/value cache of the last prompt prefix one scoring worker ran.

    A new prefix reuses the part it shares with the last one (cropped from a copy) and
    runs only its remaining tokens, so consecutive batches of one item and arm never
    recompute the instructions, vignette and question.
    """

    def __init__(self, *, forward: Callable[..., Any], device: Any) -> None:
        self._forward = forward
        self._device = device
        self._last: tuple[tuple[int, ...], Any] | None = None

    def expanded(self, prefix: tuple[int, ...], *, batch: int) -> Any:
        """The key/value cache of ``prefix``, expanded to ``batch`` rows."""
        torch = _torch()
        device = self._device
        if self._last is None or self._last[0] != prefix:
            known, cache = self._last or ((), None)
            shared = shared_length(known, prefix) if cache is not None else 0
            cache = copy.deepcopy(cache) if shared else None
            if cache is not None and len(known) > shared:
                cache.crop(
                    shared - len(known)
                )  # a negative crop drops that many tokens
            if shared < len(prefix):
                with torch.inference_mode():
                    _, cache = self._forward(
                        input_ids=torch.tensor([prefix[shared:]], device=device),
                        position_ids=torch.arange(shared, len(prefix), device=device)[
                            None
                        ],
                        cache=cache,
                        use_cache=True,
                        keep=1,
                    )
            self._last = (prefix, cache)
        cache = copy.deepcopy(self._last[1])
        cache.reorder_cache(torch.zeros(batch, dtype=torch.long, device=device))
        return cache


@dataclass(frozen=True)
class _ScoreLayout:
    """Where each token sits in a scoring pass: left-padded prompt suffixes, then option blocks.

    Columns ``[0, S)`` hold each row's prompt suffix, left-padded to S; then one block
    per option, its tokens right-padded to the block's width. The cached common
    prefix (``prefix`` tokens) precedes everything and every real token may see it.
    """

    suffixes: list[list[int]]
    options: list[list[list[int]]]
    prefix: int

    @property
    def suffix_width(self) -> int:
        return max(len(s) for s in self.suffixes)

    @property
    def block_widths(self) -> list[int]:
        return [
            max(len(row[k]) for row in self.options)
            for k in range(len(self.options[0]))
        ]

    @property
    def block_starts(self) -> list[int]:
        starts = np.cumsum([0, *self.block_widths[:-1]]) + self.suffix_width
        return [int(s) for s in starts]

    @property
    def scored_width(self) -> int:
        """Positions whose logits are needed: the last suffix token and every option token."""
        return 1 + sum(self.block_widths)

    @cached_property
    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row and column: token id (-1 for padding), position id, and group (0 = prompt)."""
        width = self.suffix_width + sum(self.block_widths)
        tokens = np.full((len(self.suffixes), width), -1)
        positions = np.full((len(self.suffixes), width), self.prefix)
        groups = np.zeros(width, dtype=int)
        for k, (start, w) in enumerate(zip(self.block_starts, self.block_widths)):
            groups[start : start + w] = k + 1
        for r, suffix in enumerate(self.suffixes):
            first = self.suffix_width - len(suffix)
            tokens[r, first : self.suffix_width] = suffix
            positions[r, first : self.suffix_width] = self.prefix + np.arange(
                len(suffix)
            )
            for start, option in zip(self.block_starts, self.options[r]):
                tokens[r, start : start + len(option)] = option
                span = self.prefix + len(suffix) + np.arange(len(option))
                positions[r, start : start + len(option)] = span
        return tokens, positions, groups

    def input_ids(self, *, pad: int) -> Any:
        tokens, _, _ = self.columns
        return _torch().tensor(np.where(tokens < 0, pad, tokens))

    def position_ids(self) -> Any:
        return _torch().tensor(self.columns[1])

    def attention_mask(self, *, dtype: Any) -> Any:
        """Additive 4-D mask (rows, 1, queries, prefix + columns): 0 where attention is allowed.

        A prompt token sees the prefix and the row's earlier real prompt tokens; an option
        token sees the prefix, the row's whole real prompt and its own option's earlier
        tokens. Every query sees itself, so padding rows never attend to nothing.
        """
        torch = _torch()
        tokens, _, groups = self.columns
        width = tokens.shape[1]
        query, key = np.arange(width)[:, None], np.arange(width)[None, :]
        same_or_prompt = (groups[None, :] == 0) | (groups[None, :] == groups[:, None])
        causal = key <= query
        structure = (same_or_prompt & causal) | (
            (groups[None, :] == 0) & (groups[:, None] > 0)
        )
        allowed = structure[None] & (tokens >= 0)[:, None, :]
        allowed |= np.eye(width, dtype=bool)[None]
        allowed = np.concatenate(
            [np.ones((len(tokens), width, self.prefix), dtype=bool), allowed], axis=2
        )
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask[~torch.from_numpy(allowed)] = torch.finfo(dtype).min
        return mask[:, None]

    def option_totals(self, logprobs: Any) -> np.ndarray:
        """Summed log-probability of each row's options, from the scored positions' log-probs."""
        first_scored = self.suffix_width - 1
        rows, columns, targets, cells = [], [], [], []
        for r, row in enumerate(self.options):
            for k, (start, option) in enumerate(zip(self.block_starts, row)):
                for j, token in enumerate(option):
                    predictor = first_scored if j == 0 else start + j - 1
                    rows.append(r)
                    columns.append(predictor - first_scored)
                    targets.append(token)
                    cells.append(r * len(row) + k)
        picked = logprobs[rows, columns, targets].numpy()
        totals = np.bincount(
            cells, weights=picked, minlength=len(self.options) * len(self.options[0])
        )
        return totals.reshape(len(self.options), len(self.options[0]))


def _label(model: str | Path, adapter: str | Path | None) -> str:
    """The model and adapter as the user named them (reprs and reports show this)."""
    return str(model) + ("" if adapter is None else f" + {adapter}")


def _settings(
    *,
    mode: Mode,
    batch_size: int | None,
    workers: int | None,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> dict[str, Any]:
    """HFSimulator's options, checked before any model loads."""
    check_option("mode", mode, MODES)
    for name, value in (("batch_size", batch_size), ("workers", workers)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise OptionError(f"{name}={value!r} must be a positive integer")
    return {
        "mode": mode,
        "batch_size": batch_size or 16,
        "workers": workers,
        "generation": generation_settings(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        ),
    }


def generation_settings(
    *, temperature: float, top_p: float, max_new_tokens: int
) -> dict[str, Any]:
    """Generate mode's sampling settings, checked: OptionError names any out of range."""
    if not (temperature > 0 and 0 < top_p <= 1 and max_new_tokens >= 1):
        raise OptionError(
            f"need temperature > 0, 0 < top_p <= 1 and max_new_tokens >= 1; got "
            f"temperature={temperature!r}, top_p={top_p!r}, max_new_tokens={max_new_tokens!r}"
        )
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


def _sample_token(
    logits: Any, generator: Any, *, temperature: float, top_p: float
) -> int:
    """Nucleus sampling of one token from ``logits`` with a row-specific torch generator."""
    torch = _torch()
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        ordered, index = probs.sort(descending=True)
        keep = ordered.cumsum(0) - ordered < top_p
        probs = torch.zeros_like(probs).scatter(0, index[keep], ordered[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _argument_names(model: Any) -> dict[str, str | None]:
    """The base model's names for the cache and logits-to-keep arguments of ``forward``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    parameters = inspect.signature(base.forward).parameters
    return {
        "cache": "cache" if "cache" in parameters else "past_key_values",
        "keep": "logits_to_keep" if "logits_to_keep" in parameters else None,
    }


def _contiguous_shares(
    batches: list[list[str]], *, parts: int
) -> list[list[list[str]]]:
    """``batches`` cut, in order, into ``parts`` runs holding near-equal numbers of prompts.

    A run ends at the batch whose end is nearest to its share of all prompts, leaving at
    least one batch for each run after it.
    """
    ends = np.cumsum([len(b) for b in batches])
    cuts = [0]
    for share in range(1, parts):
        target = ends[-1] * share / parts
        cut = int(np.argmin(np.abs(ends - target))) + 1
        cuts.append(min(max(cut, cuts[-1] + 1), len(batches) - (parts - share)))
    cuts.append(len(batches))
    return [batches[a:b] for a, b in pairwise(cuts)]


def _pad(sequences: list[list[int]], *, pad: int, side: str) -> tuple[Any, Any]:
    """(ids, attention mask) tensors of ``sequences`` padded on ``side`` to a common length."""
    torch = _torch()
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def _torch() -> Any:
    """torch, imported on first use (simval's import stays light)."""
    import torch

    return torch
