"""HFSimulator: simulated respondents from a causal language model (transformers, + peft adapter).

Two modes. ``score`` reads, for each (persona, item), the log-probability of every
answer option as a whole continuation of the prompt and normalises them into a
distribution; answers are then sampled from it with the seed, so the cached model
output is deterministic and repeated draws stay distinct. ``generate`` samples free
text and parses it to an option; an answer that cannot be parsed is counted and left
missing, never mapped to a valid option.

Every model output goes to an on-disk store as each batch finishes, keyed by model,
adapter, prompt and options (and seed and sample index for generated text), so an
interrupted run resumes where it stopped and a repeated run makes no model call; that
loop is ``simval.simulators.engine``'s, this module scores token sequences and samples
text. torch and transformers are imported only when a simulator is built.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from simval.errors import OptionError, check_count, check_option
from simval.runtime import concurrently, scoring_workers
from simval.simulators.dependencies import require_llm
from simval.simulators.engine import (
    MODES,
    Mode,
    PromptedSimulator,
    batches,
    generation_settings,
    scored_choices,
)
from simval.simulators.fingerprints import fingerprint
from simval.simulators.loading import (
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
from simval.simulators.prompts import PromptRenderer, PromptTemplate
from simval.study import Item, Study


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
        self._setup(
            study=study, mode=mode, label=label, adapter=adapter, template=template,
            generation=generation, cache_dir=cache_dir, progress=progress,
            quiet_total=batch_size,  # a single batch's worth: nothing long runs there
        )  # fmt: skip
        self.batch_size = batch_size
        self.workers = workers
        self.model_name = lm.name_or_path
        self.model, self.tokenizer = contiguous_head(lm), tokenizer
        # the weights' precision changes the numbers, so it is part of every cache key
        self.precision = str(lm.dtype).removeprefix("torch.")
        self.fingerprint = (
            f"{fingerprint(self.model_name, adapter=adapter)}-{self.precision}"
        )
        self._render = PromptRenderer(
            study=study, template=self.template, tokenizer=tokenizer
        )
        self._argument_names = _argument_names(lm)

    def __repr__(self) -> str:
        """The model and adapter as the user named them (never this machine's paths)."""
        model, _, adapter = self.label.partition(" + ")
        adapter = f", adapter={adapter!r}" if adapter else ""
        return (
            f"HFSimulator({model!r}{adapter}, mode={self.mode!r}, "
            f"precision={self.precision!r})"
        )

    # --- score mode -------------------------------------------------------------------

    def _score_prompts(
        self, prompts: list[str], item: Item
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield (prompts, option probabilities) batch by batch, prompts sorted to share prefixes.

        The sorted batches are cut into one contiguous run per worker, of near-equal
        numbers of prompts (``_contiguous_shares``); the workers run
        concurrently, one core each, and each keeps its own prefix cache. A run's
        numbers depend only on its batches, so a given worker count gives the same
        probabilities on every run (counts differ in the last float bits).
        """
        tokens = {p: self._render.option_ids(p, scored_choices(item)) for p in prompts}
        ordered = sorted(prompts, key=lambda p: tokens[p][0])
        groups = prefix_groups(
            [tokens[p][0] for p in ordered], batch_size=self.batch_size
        )
        runs = [
            [ordered[i] for i in batch]
            for batch in group_batches(groups, size=self.batch_size)
        ]
        workers = min(self.workers or scoring_workers(), len(runs))

        def run(chunk: list[list[str]]) -> Iterator[tuple[list[str], np.ndarray]]:
            prefixes = _PrefixCache(forward=self._forward, device=self.model.device)
            for batch in chunk:
                rows = [tokens[p][0] for p in batch]
                yield batch, self._score(rows, [tokens[p][1] for p in batch], prefixes)

        chunks = _contiguous_shares(runs, parts=workers)
        yield from concurrently([partial(run, c) for c in chunks])

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

    def _generate_texts(
        self, todo: list[tuple[str, str]]
    ) -> Iterator[tuple[list[str], list[str]]]:
        """Sampled text for each (key, prompt), ``batch_size`` prompts at a time."""
        for batch in batches(todo, size=self.batch_size):
            keys = [k for k, _ in batch]
            yield keys, self._generate([p for _, p in batch], seeds=keys)

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
        if value is not None:
            check_count(name, value)
    return {
        "mode": mode,
        "batch_size": batch_size or 16,
        "workers": workers,
        "generation": generation_settings(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        ),
    }


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
