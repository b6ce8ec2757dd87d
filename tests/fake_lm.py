"""A language-model simulator without a model: ``PromptedSimulator``'s loop (prompts,
result store, progress bars) on a backend that gives every option the same probability.

Cheap enough to run validate, rectify and bench end to end in a test, so what the
loop shows (its bars, its identity, its prompts) can be checked without torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simval.simulators.engine import PromptedSimulator, batches, scored_choices
from simval.simulators.prompts import PromptRenderer
from simval.study import Item, Study


class UniformLM(PromptedSimulator):
    """Every option equally likely; prompts rendered as for a model without a chat
    template. ``model`` and ``adapter`` are shown as a report would show them."""

    def __init__(
        self,
        *,
        study: Study,
        cache_dir: Path,
        model: str = "default",
        adapter: str | Path | None = None,
        progress: bool | None = None,
    ) -> None:
        folder = None if adapter is None else str(Path(adapter).resolve())
        label = model + ("" if adapter is None else f" + {adapter}")
        self._setup(
            study=study, mode="score", label=label, adapter=folder, template=None,
            generation={}, cache_dir=cache_dir, progress=progress, quiet_total=0,
        )  # fmt: skip
        self.precision = "float32"
        self.fingerprint = f"uniform-{model}-{folder}"
        self._render = PromptRenderer(
            study=study, template=self.template, tokenizer=None
        )

    def __repr__(self) -> str:
        return f"UniformLM({self.label!r})"

    def _score_prompts(
        self, prompts: list[str], item: Item
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        width = len(scored_choices(item))
        for batch in batches(prompts, size=64):
            yield batch, np.full((len(batch), width), 1 / width)

    def _generate_texts(
        self, todo: list[tuple[str, str]]
    ) -> Iterator[tuple[list[str], list[str]]]:
        for batch in batches(todo, size=64):
            yield [k for k, _ in batch], ["1" for _ in batch]
