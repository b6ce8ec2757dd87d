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
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from simval.errors import DataError, OptionError, check_option
from simval.simulators.loading import RECORD, fingerprint, load_causal_lm, resolve_model
from simval.simulators.prompts import PromptRenderer, PromptTemplate, as_template
from simval.study import Study

Strategy = Literal["random", "balanced", "per_arm"]
STRATEGIES = ("random", "balanced", "per_arm")
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
    by: str | None = None,
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
    if strategy != "random" and (by is None or by not in human_df.columns):
        raise DataError(
            f"strategy={strategy!r} needs by= naming a column of the data; got {by!r}"
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
    epochs: int = 3,
    lr: float = 2e-4,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool | None = None,
    template: str | PromptTemplate | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Train a LoRA adapter on the pilot's real answers; return the adapter folder.

    Every (respondent, item) pair is one example: the prompt HFSimulator renders for
    that respondent and item (same ``template``), followed by the label of the
    respondent's answer and the end-of-turn token; the loss covers those answer
    tokens only. The folder loads with ``HFSimulator(model, adapter=path, study=...)``
    and holds ``simval_finetune.json``, the record of how it was made.
    """
    check_pilot(pilot_df, study)
    settings = {"r": r, "alpha": alpha, "dropout": dropout, "epochs": epochs, "lr": lr}
    _check_settings(**settings, batch_size=batch_size)
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base, tokenizer = load_causal_lm(model, cache_dir=cache_dir)
    renderer = PromptRenderer(
        study=study, template=as_template(template), tokenizer=tokenizer
    )
    examples = training_examples(pilot_df, study, renderer=renderer)
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
        task_type="CAUSAL_LM",
    )  # fmt: skip
    lora = get_peft_model(base, config)
    losses = train(
        lora, examples, pad=tokenizer.pad_token_id, epochs=epochs, lr=lr,
        batch_size=batch_size, seed=seed, progress=progress,
    )  # fmt: skip
    out = Path(out_dir)
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
        **settings,
        "epoch_losses": losses,
        "template": asdict(as_template(template)),
    }
    (out / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return out


def check_pilot(pilot_df: pd.DataFrame, study: Study) -> None:
    """Raise DataError, naming the problem, unless the pilot can be trained on."""
    if not isinstance(pilot_df, pd.DataFrame) or len(pilot_df) < MIN_PILOT_ROWS:
        rows = len(pilot_df) if isinstance(pilot_df, pd.DataFrame) else 0
        raise DataError(
            f"the pilot has {rows} respondents; at least {MIN_PILOT_ROWS} are needed to train on"
        )
    study.check_data(pilot_df, what="the pilot")
    missing = pilot_df[list(study.item_names)].isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        counts = ", ".join(f"{item!r} ({n} rows)" for item, n in missing.items())
        raise DataError(
            f"the pilot has missing answers for item(s) {counts}; drop or fill them"
        )


def training_examples(
    pilot_df: pd.DataFrame, study: Study, *, renderer: PromptRenderer
) -> list[Example]:
    """One example per (respondent, item): the rendered prompt and the answer's label tokens."""
    end = renderer.tokenizer.eos_token_id
    examples = []
    for _, row in pilot_df.iterrows():
        for item in study.items:
            prompt = renderer(row, item)
            prompt_ids = renderer.encode(prompt)
            label = item.labels[item.codes.index(row[item.name])]
            answer = renderer.answer_ids(prompt, prompt_ids, label)
            examples.append(
                Example(prompt_ids, [*answer, end] if end is not None else answer)
            )
    return examples


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

    Batches are drawn from length buckets (see ``_length_batches``) so that little of
    each batch is padding.
    """
    import torch

    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr
    )
    model.train()
    steps = epochs * math.ceil(len(examples) / batch_size)
    losses = []
    with tqdm(
        total=steps,
        desc="fine-tuning",
        disable=None if progress is None else not progress,
    ) as bar:
        for _ in range(epochs):
            epoch = []
            for batch in _length_batches(examples, batch_size=batch_size, rng=rng):
                inputs = _collate(batch, pad=pad, device=model.device)
                loss = model(**inputs).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                epoch.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(epoch[-20:]):.4f}")
            losses.append(float(np.mean(epoch)))
    model.eval()
    return losses


def _length_batches(
    examples: list[Example],
    *,
    batch_size: int,
    rng: np.random.Generator,
    window: int = 16,
) -> list[list[Example]]:
    """One epoch of batches: shuffle, sort by length within windows of ``window`` batches, cut
    into batches and shuffle their order, so batches are random yet of similar lengths."""
    order = rng.permutation(len(examples))
    span = batch_size * window
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: _length(examples[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [[examples[i] for i in batches[b]] for b in rng.permutation(len(batches))]


def _length(example: Example) -> int:
    return len(example.prompt_ids) + len(example.answer_ids)


def _collate(batch: list[Example], *, pad: int, device: Any) -> dict[str, Any]:
    """Right-padded input ids, attention mask and labels (answer tokens only) for a batch."""
    import torch

    width = max(_length(e) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(batch):
        sequence = example.prompt_ids + example.answer_ids
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        labels[row, len(example.prompt_ids) : len(sequence)] = torch.tensor(
            example.answer_ids
        )
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


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
