"""Fine-tuning on a small human pilot: pilot designs and LoRA training via peft.

``pilot`` splits the human data into a small pilot to train on and a disjoint
holdout to evaluate on. ``finetune`` trains a LoRA adapter on the pilot's real
answers, with exactly the prompts ``HFSimulator`` renders, the loss on the answer
tokens only, and writes the adapter with a record of how it was made (including
which respondents it saw, so ``validate`` can refuse to evaluate on them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from simval.defaults import FINETUNE_DEFAULTS, Strategy
from simval.errors import DataError, OptionError, check_count, check_option
from simval.outputs import check_output
from simval.progress import Progress
from simval.simulators.fingerprints import fingerprint
from simval.simulators.hf import _argument_names
from simval.simulators.loading import (
    RECORD,
    load_causal_lm,
    peft_quietly,
    resolve_model,
)
from simval.simulators.prefixes import common_prefix, prefix_groups
from simval.simulators.prompts import PromptRenderer, PromptTemplate, as_template
from simval.study import Item, Study, plain_number

STRATEGIES = get_args(Strategy)
MIN_PILOT_ROWS = 10
"""Fewer respondents than this is too few to train on (the source study used about 30)."""
IGNORE = -100
"""The label torch's cross-entropy skips: prompt and padding tokens carry no loss."""


# --- pilot designs ---------------------------------------------------------------------


def pilot(
    human_df: pd.DataFrame,
    *,
    frac: float | None = None,
    n: int | None = None,
    strategy: Strategy = "random",
    by: str | Sequence[str] | None = None,
    arms: Sequence[Any] | None = None,
    seed: int | np.random.Generator | None = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``human_df`` into (pilot, holdout), disjoint, reproducibly from ``seed``.

    Give exactly one of ``frac`` (share of the rows) or ``n`` (a count).
    - ``"random"``: a simple random sample of the rows.
    - ``"balanced"``: the same count from every level of the ``by`` column (the total
      split evenly, rounded down).
    - ``"per_arm"``: from each arm of the ``by`` (treatment) column, ``frac`` of that
      arm's rows or ``n`` rows; with ``arms``, from the named arms only.
    ``by`` may name several columns (a factorial design's factors): their level
    combinations are the groups, and ``arms`` then holds tuples of levels.
    """
    check_option("strategy", strategy, STRATEGIES)
    if not isinstance(human_df, pd.DataFrame) or human_df.empty:
        raise DataError(
            "the human data is empty; there is nothing to draw a pilot from"
        )
    if not human_df.index.is_unique:
        raise DataError(
            "the human data's index is not unique; reset it before drawing a pilot"
        )
    if (frac is None) == (n is None):
        raise OptionError("give exactly one of frac= or n=")
    if frac is not None and not 0 < frac < 1:
        raise OptionError(f"frac={frac!r} must lie strictly between 0 and 1")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise OptionError(f"n={n!r} must be a positive integer")
    if not isinstance(by, str) and by is not None:
        by = by[0] if len(by) == 1 else list(by)
    columns = [by] if isinstance(by, str) else by or []
    if strategy != "random" and (
        not columns or any(c not in human_df.columns for c in columns)
    ):
        raise DataError(
            f"strategy={strategy!r} needs by= naming column(s) of the data; got {by!r}"
        )
    if arms is not None and strategy != "per_arm":
        raise OptionError("arms= applies to strategy='per_arm' only")
    rng = np.random.default_rng(seed)
    chosen = {
        "random": _random_rows,
        "balanced": _balanced_rows,
        "per_arm": _per_arm_rows,
    }[strategy](human_df, frac=frac, n=n, by=by, arms=arms, rng=rng)
    picked = human_df.index.isin(chosen)
    return human_df[picked], human_df[~picked]


def _random_rows(df, *, frac, n, rng, **_) -> pd.Index:
    """A simple random sample of index labels."""
    size = _size(len(df), frac=frac, n=n, what="the data")
    return df.index[rng.choice(len(df), size=size, replace=False)]


def _balanced_rows(df, *, frac, n, by, rng, **_) -> pd.Index:
    """The same number of index labels from each level of ``by``."""
    groups = df.groupby(by, observed=True).groups
    total = _size(len(df), frac=frac, n=n, what="the data")
    each = total // len(groups)
    if each < 1:
        raise OptionError(
            f"a balanced pilot of {total} cannot draw one respondent from each of the "
            f"{len(groups)} levels of {by!r}"
        )
    return pd.Index(
        np.concatenate(
            [_draw(idx, each, by, level, rng) for level, idx in groups.items()]
        )
    )


def _per_arm_rows(df, *, frac, n, by, arms, rng) -> pd.Index:
    """From each arm (or each named arm) of ``by``, ``frac`` of its rows or ``n`` rows."""
    groups = df.groupby(by, observed=True).groups
    if arms is not None:
        unknown = [a for a in arms if a not in groups]
        if unknown:
            raise DataError(
                f"arm(s) {', '.join(map(repr, unknown))} not found in column {by!r}; "
                f"arms: {', '.join(map(repr, groups))}"
            )
        groups = {a: groups[a] for a in arms}
    picked = []
    for level, idx in groups.items():
        size = _size(len(idx), frac=frac, n=n, what=f"arm {level!r} of {by!r}")
        picked.append(_draw(idx, size, by, level, rng))
    return pd.Index(np.concatenate(picked))


def _size(available: int, *, frac: float | None, n: int | None, what: str) -> int:
    """How many rows to draw from ``available``: round(frac * available), or n, at least 1."""
    size = max(1, round(frac * available)) if frac is not None else n
    if size > available:
        raise OptionError(
            f"cannot draw {size} respondents from {what}, which has {available}"
        )
    return size


def _draw(
    index: pd.Index, size: int, by: str, level: Any, rng: np.random.Generator
) -> np.ndarray:
    """``size`` labels of ``index`` drawn without replacement (error naming the level if short)."""
    if size > len(index):
        raise OptionError(
            f"level {level!r} of {by!r} has {len(index)} respondents; {size} are needed"
        )
    return np.asarray(index)[rng.choice(len(index), size=size, replace=False)]


# --- LoRA fine-tuning ------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One training example: prompt tokens then answer tokens; the loss covers the answer only."""

    prompt_ids: list[int]
    answer_ids: list[int]


def finetune(
    model: str | Path,
    pilot_df: pd.DataFrame,
    study: Study,
    out_dir: str | Path,
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    epochs: int = FINETUNE_DEFAULTS["epochs"],
    lr: float = FINETUNE_DEFAULTS["lr"],
    batch_size: int = FINETUNE_DEFAULTS["batch_size"],
    seed: int = 0,
    progress: bool | None = None,
    template: str | PromptTemplate | None = None,
    cache_dir: str | Path | None = None,
    layers: int | None = FINETUNE_DEFAULTS["layers"],
    dtype: str = "auto",
) -> Path:
    """Train a LoRA adapter on the pilot's real answers; return the adapter folder.

    Every (respondent, item) pair is one example: the prompt HFSimulator renders for
    that respondent and item (same ``template``), followed by the label of the
    respondent's answer and the end-of-turn token; the loss covers those answer
    tokens only. A batch holds examples whose prompts share a prefix (one item and
    arm), which it runs once (see ``train``), so LoRA dropout on that prefix is drawn
    once for the batch's rows. ``layers``: put LoRA on the last ``layers`` transformer
    blocks only (None: all); the blocks below then run forward only, which makes
    training cheaper at some cost in how far the model can move. ``dtype``: the base
    weights' precision (see ``load_causal_lm``; LoRA weights stay float32). ``seed``
    fixes LoRA's initial weights, dropout masks and batch order; torch's global random
    state is left as it was. The folder loads with
    ``HFSimulator(model, adapter=path, study=...)`` and holds ``simval_finetune.json``,
    the record of how it was made. ``out_dir`` is checked before training
    (``check_output``), so an adapter is never trained that cannot be written.
    """
    out = check_output(out_dir, flag="out_dir", folder=True)
    check_count("seed", seed, at_least=0)
    check_pilot(pilot_df, study)
    settings = {"r": r, "alpha": alpha, "dropout": dropout, "epochs": epochs, "lr": lr}
    _check_settings(**settings, batch_size=batch_size)
    if layers is not None and (isinstance(layers, bool) or layers < 1):
        raise OptionError(
            f"layers={layers!r} must be a positive number of blocks or None"
        )
    import torch
    from peft import LoraConfig, get_peft_model

    # LoRA's initial weights and dropout masks come from torch's global generators:
    # seeded here, on a forked state, so the caller's random state is left as it was.
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        base, tokenizer = load_causal_lm(model, dtype=dtype, cache_dir=cache_dir)
        renderer = PromptRenderer(
            study=study, template=as_template(template), tokenizer=tokenizer
        )
        examples = training_examples(pilot_df, study, renderer=renderer)
        config = LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM",
            target_modules="all-linear" if layers is None else _linear_names(base),
            layers_to_transform=_top_layers(base, layers),
        )  # fmt: skip
        with peft_quietly():
            lora = get_peft_model(base, config)
        losses = train(
            lora, examples, pad=tokenizer.pad_token_id, epochs=epochs, lr=lr,
            batch_size=batch_size, seed=seed, progress=progress,
        )  # fmt: skip
    lora.save_pretrained(out)
    resolved = resolve_model(model, cache_dir=cache_dir)
    record = {
        "base_model": str(model),
        "base_model_path": resolved,
        "base_fingerprint": fingerprint(resolved),
        "items": list(study.item_names),
        "pilot_size": len(pilot_df),
        "pilot_index": [_label(i) for i in pilot_df.index],
        "examples": len(examples),
        "seed": seed,
        "batch_size": batch_size,
        "batching": "shared-prefix groups, the prefix run once per batch",
        "layers": layers,
        "dtype": dtype,
        **settings,
        "epoch_losses": losses,
        "template": asdict(as_template(template)),
    }
    (out / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return out


def _cuda_devices() -> list[int]:
    """Every CUDA device (none without CUDA): ``torch.manual_seed`` seeds them all, so
    ``fork_rng`` must save and restore them all."""
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _linear_names(model: Any) -> list[str]:
    """The names of the linear layers inside the transformer blocks (what "all-linear"
    picks; peft needs them spelled out to restrict LoRA to some blocks)."""
    import torch

    output = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output
        }
    )


def _top_layers(model: Any, layers: int | None) -> list[int] | None:
    """Indices of the last ``layers`` transformer blocks (None: every block gets LoRA)."""
    if layers is None:
        return None
    total = model.config.num_hidden_layers
    if layers > total:
        raise OptionError(f"layers={layers} exceeds the model's {total} blocks")
    return list(range(total - layers, total))


def check_pilot(pilot_df: pd.DataFrame, study: Study) -> None:
    """Raise DataError, naming the problem, unless the pilot can be trained on."""
    if not isinstance(pilot_df, pd.DataFrame) or len(pilot_df) < MIN_PILOT_ROWS:
        rows = len(pilot_df) if isinstance(pilot_df, pd.DataFrame) else 0
        raise DataError(
            f"the pilot has {rows} respondents; at least {MIN_PILOT_ROWS} are needed to train on"
        )
    study.check_data(pilot_df, what="the pilot")  # also: an item no one answered


def training_examples(
    pilot_df: pd.DataFrame, study: Study, *, renderer: PromptRenderer
) -> list[Example]:
    """One example per answered (respondent, item): the rendered prompt and the answer's
    label tokens (a number item's answer written as a number). A missing answer (NaN or
    a declared missing code) is no answer to learn: it is skipped."""
    end = renderer.tokenizer.eos_token_id
    examples = []
    for _, row in study.blank_missing(pilot_df).iterrows():
        for item in study.items:
            if pd.isna(row[item.name]):
                continue
            prompt = renderer(row, item)
            prompt_ids = renderer.encode(prompt)
            label = answer_label(item, row[item.name])
            answer = renderer.answer_ids(prompt, prompt_ids, label)
            examples.append(
                Example(prompt_ids, [*answer, end] if end is not None else answer)
            )
    return examples


def answer_label(item: Item, answer: float) -> str:
    """How a respondent's answer is written as the model's reply: the option's label, or
    a number item's value as a number."""
    if item.is_number:
        return plain_number(answer)
    return item.labels[item.codes.index(answer)]


def train(
    model: Any,
    examples: list[Example],
    *,
    pad: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    progress: bool | None,
) -> list[float]:
    """AdamW over shuffled batches, loss on answer tokens only; returns each epoch's mean loss.

    Examples are grouped once by shared prompt prefix (``prefix_groups``; with the
    default prompts, one group per item and arm). Each epoch every group is shuffled
    and cut into batches of at most ``batch_size``, and the batches are shuffled, all
    from ``seed``. Each batch runs its shared prefix once (``_batch_loss``).
    """
    import torch

    rng = np.random.default_rng(seed)
    groups = prefix_groups([e.prompt_ids for e in examples], batch_size=batch_size)
    names = _argument_names(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr
    )
    model.train()
    steps = epochs * sum(math.ceil(len(g) / batch_size) for g in groups)
    losses = []
    with Progress(
        desc=f"fine-tuning on {len(examples)} examples",
        total=steps,
        unit="steps",
        enabled=progress is not False,
    ) as bar:
        for _ in range(epochs):
            epoch = []
            for batch in _group_batches(groups, batch_size=batch_size, rng=rng):
                loss = _batch_loss(
                    model, [examples[i] for i in batch], pad=pad, names=names
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                epoch.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(epoch[-20:]):.4f}", refresh=False)
            losses.append(float(np.mean(epoch)))
    model.eval()
    return losses


def _group_batches(
    groups: list[list[int]], *, batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """One epoch of batches (example indices): each group shuffled and cut into
    ceil(n / batch_size) batches of near-equal size, then all batches shuffled."""
    batches = []
    for group in groups:
        shuffled = np.asarray(group)[rng.permutation(len(group))]
        parts = np.array_split(shuffled, math.ceil(len(group) / batch_size))
        batches += [part.tolist() for part in parts]
    return [batches[b] for b in rng.permutation(len(batches))]


@dataclass(frozen=True)
class _PrefixBatch:
    """A batch as two model inputs: the common prompt prefix (run once) and the suffixes.

    Suffix row r holds the rest of example r's prompt (at least one token) and its
    answer, right-padded; ``mask`` covers prefix + suffix columns. Every column that
    predicts an answer token is among the last ``keep``, the only ones whose logits
    are computed; ``targets`` holds, per kept column, the answer token it predicts
    (``IGNORE`` elsewhere).
    """

    prefix: Any
    input_ids: Any
    mask: Any
    position_ids: Any
    targets: Any
    keep: int


def _prefix_batch(batch: list[Example], *, pad: int) -> _PrefixBatch:
    """Split a batch at its examples' common prompt prefix (see ``_PrefixBatch``)."""
    import torch

    common = common_prefix([e.prompt_ids for e in batch])
    suffixes = [e.prompt_ids[common:] + e.answer_ids for e in batch]
    width = max(len(s) for s in suffixes)
    first = min(len(e.prompt_ids) for e in batch) - common - 1
    keep = width - first
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), common + width), dtype=torch.long)
    targets = torch.full((len(batch), keep), IGNORE, dtype=torch.long)
    for row, (example, suffix) in enumerate(zip(batch, suffixes)):
        ids[row, : len(suffix)] = torch.tensor(suffix)
        mask[row, : common + len(suffix)] = 1
        start = len(example.prompt_ids) - common - 1 - first
        targets[row, start : start + len(example.answer_ids)] = torch.tensor(
            example.answer_ids
        )
    return _PrefixBatch(
        prefix=torch.tensor([batch[0].prompt_ids[:common]], dtype=torch.long),
        input_ids=ids,
        mask=mask,
        position_ids=(common + torch.arange(width)).expand(len(batch), width),
        targets=targets,
        keep=keep,
    )


def _batch_loss(
    model: Any, batch: list[Example], *, pad: int, names: dict[str, str | None]
) -> Any:
    """Mean cross-entropy over the batch's answer tokens, running the shared prefix once.

    The prefix runs at batch size 1 and its key/value cache is repeated to every row
    (autograd flows back through both passes); the suffixes run on that cache, their
    positions continuing after the prefix. The loss equals a full pass over every
    whole sequence (mean over all answer tokens of the batch), but LoRA dropout masks
    on the prefix are drawn once and so shared by the batch's rows. ``names``: the
    model's cache and logits-to-keep arguments (``_argument_names``).
    """
    import torch

    device = model.device
    layout = _prefix_batch(batch, pad=pad)
    cache = None
    if layout.prefix.shape[1]:
        out = _forward(
            model,
            names=names,
            keep=1,
            use_cache=True,
            input_ids=layout.prefix.to(device),
        )
        cache = getattr(out, names["cache"])
        cache.batch_repeat_interleave(len(batch))
    logits = _forward(
        model,
        names=names,
        keep=layout.keep,
        cache=cache,
        use_cache=False,
        input_ids=layout.input_ids.to(device),
        attention_mask=layout.mask.to(device),
        position_ids=layout.position_ids.to(device),
    ).logits[:, -layout.keep :]
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1),
        layout.targets.to(device).flatten(),
        ignore_index=IGNORE,
    )


def _forward(
    model: Any, *, names: dict[str, str | None], keep: int, cache: Any = None, **inputs
) -> Any:
    """One model call with the cache under the model's argument name and logits for the
    last ``keep`` positions only (where the model supports it)."""
    inputs[names["cache"]] = cache
    if names["keep"]:
        inputs[names["keep"]] = keep
    return model(**inputs)


def _check_settings(
    *, r: int, alpha: int, dropout: float, epochs: int, lr: float, batch_size: int
) -> None:
    """Raise OptionError naming the first hyperparameter out of its range."""
    for name, value, ok in (
        ("r", r, r >= 1),
        ("alpha", alpha, alpha > 0),
        ("dropout", dropout, 0 <= dropout < 1),
        ("epochs", epochs, epochs >= 1),
        ("lr", lr, lr > 0),
        ("batch_size", batch_size, batch_size >= 1),
    ):
        if not ok:
            raise OptionError(f"{name}={value!r} is out of range")


def _label(value: Any) -> Any:
    """An index label as JSON keeps it (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value
