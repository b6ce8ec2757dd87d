"""Persona prompts: what a language model reads before it answers one item for one respondent.

A prompt is rendered from the persona columns, the respondent's treatment vignette
and the item's question and options, through Jinja2 templates the user can replace.
Where the tokenizer has a chat template the text goes through it (a system turn and
a user turn, then the assistant's turn is the answer); otherwise the prompt is plain
text ending in ``Answer:``. The constant parts come first (instructions, vignette,
question) and the persona last, so that prompts share long prefixes a simulator
computes once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from simval.errors import StudyError
from simval.study import Item, Study

DEFAULT_SYSTEM = (
    "You are taking part in a survey. You will read a scenario, a question with its answer "
    "options, and a description of the person you are. Answer as that person would, with "
    "exactly one of the options, written exactly as shown."
)

# The persona comes last: prompts for one item and arm then share everything before it,
# which the scorer computes once.
DEFAULT_USER = """\
{% if vignette %}Scenario: {{ vignette }}

{% endif %}Question: {{ item.text }}
{% if scale %}Answer with {{ scale }}.
{% else %}Options:
{% for label in options %}{{ loop.index }}. {{ label }}
{% endfor %}{% endif %}
{% if persona_text %}About you: {{ persona_text }}{% else %}About you:
{% for name, value in persona.items() %}- {{ name }}: {{ value }}
{% endfor %}{% endif %}"""

PLAIN_ANSWER_CUE = "\nAnswer:"

MAX_PROMPT_CHARS = 20_000
"""The longest prompt (system and user turns together) a renderer writes: a model scores
every option after it, and memory grows with its length (``study.MAX_LABEL_CHARS`` and
``study.MAX_TEXT_CHARS`` bound its parts when the study is loaded)."""

RENDERED_LIMIT = 200_000
"""Rendered prompts a PromptRenderer remembers before it starts afresh (bounds memory)."""

NOT_STATED = "not stated"
"""What a prompt says for a missing persona value (NaN, None): the respondent is kept and
the model is told plainly that this field is unknown, never shown ``nan``."""


@dataclass(frozen=True)
class PromptTemplate:
    """Jinja2 sources of the system turn and the user turn.

    The user template sees ``persona`` (column -> value), ``persona_text`` (the
    study's persona phrase rendered for this respondent, or None), ``vignette``
    (text or None), ``item`` (the Item), ``options`` (its labels in order; empty for a
    number item), ``scale`` (a number item's scale in words, "a whole number from 0 to
    100"; None for an item with options) and ``study``.
    """

    user: str = DEFAULT_USER
    system: str = DEFAULT_SYSTEM


def as_template(template: str | PromptTemplate | None) -> PromptTemplate:
    """A PromptTemplate from None (the default), a user-turn Jinja string, or a PromptTemplate."""
    if template is None:
        return PromptTemplate()
    if isinstance(template, str):
        return PromptTemplate(user=template)
    return template


class PromptRenderer:
    """Renders the exact text sent to the model for one persona and one item."""

    def __init__(
        self, *, study: Study, template: PromptTemplate, tokenizer: Any
    ) -> None:
        environment = jinja2.Environment(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=False
        )
        try:
            self._user = environment.from_string(template.user)
            self._system = environment.from_string(template.system)
        except jinja2.TemplateSyntaxError as exc:
            raise StudyError(
                f"prompt template line {exc.lineno}: {exc.message}"
            ) from exc
        self._persona_text = (
            environment.from_string(study.persona_text) if study.persona_text else None
        )
        self.study = study
        self.tokenizer = tokenizer
        self.chat = getattr(tokenizer, "chat_template", None) is not None
        self._rendered: dict[tuple, tuple[Item, str]] = {}

    def messages(
        self, persona: Mapping[str, Any] | pd.Series, item: Item
    ) -> list[dict[str, str]]:
        """The system turn and the user turn for this persona and item (what a chat
        API receives; ``__call__`` formats them for the model's own tokenizer)."""
        return self._messages(self._values(persona), self.study.arm_of(persona), item)

    def _values(self, persona: Mapping[str, Any] | pd.Series) -> dict[str, Any]:
        """The persona values a prompt shows (``shown_value``)."""
        return {c: shown_value(persona[c]) for c in self.study.persona if c in persona}

    def _messages(
        self, values: dict[str, Any], arm: str | None, item: Item
    ) -> list[dict[str, str]]:
        try:
            context = {
                "persona": values,
                "persona_text": self._persona_text.render(values).strip()
                if self._persona_text
                else None,
                "vignette": self.study.vignettes.get(arm) if arm is not None else None,
                "item": item,
                "options": list(item.labels),
                "scale": item.number.describe() if item.is_number else None,
                "study": self.study,
            }
            system = self._system.render(context).strip()
            user = self._user.render(context).strip()
        except jinja2.UndefinedError as exc:
            raise StudyError(
                f"prompt template for item {item.name!r}: {exc.message}"
            ) from exc
        if len(system) + len(user) > MAX_PROMPT_CHARS:
            raise StudyError(
                f"the prompt for item {item.name!r} is {len(system) + len(user):,} "
                f"characters; the limit is {MAX_PROMPT_CHARS:,} (shorten the template, "
                "vignette or persona text)"
            )
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]

    def __call__(self, persona: Mapping[str, Any] | pd.Series, item: Item) -> str:
        """The full prompt text (chat-formatted where the tokenizer has a chat template).

        Remembered per (item, arm, persona values): a validation asks for the same
        respondents' prompts once per replicate, and rendering them again cost more
        than the look-ups of their cached scores (about 6 s of the demo)."""
        values, arm = self._values(persona), self.study.arm_of(persona)
        try:
            key = (id(item), arm, tuple(values.items()))
            hit = self._rendered.get(key)
        except TypeError:  # an unhashable persona value: render every time
            return self._text(self._messages(values, arm, item))
        if hit is None or hit[0] is not item:
            if len(self._rendered) >= RENDERED_LIMIT:
                self._rendered.clear()
            hit = self._rendered[key] = (
                item,
                self._text(self._messages(values, arm, item)),
            )
        return hit[1]

    def _text(self, messages: list[dict[str, str]]) -> str:
        if not self.chat:
            system, user = (m["content"] for m in messages)
            return f"{system}\n\n{user}{PLAIN_ANSWER_CUE}"
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def continuation(self, label: str) -> str:
        """How an option is written as the model's answer right after the prompt."""
        return label if self.chat else f" {label}"

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt (a chat-formatted prompt already holds its special tokens)."""
        return self.tokenizer(prompt, add_special_tokens=not self.chat).input_ids

    def answer_ids(self, prompt: str, prompt_ids: list[int], label: str) -> list[int]:
        """Token ids of option ``label`` as the model's answer to ``prompt``.

        Taken from the tokenisation of prompt + answer where it extends the prompt's
        own tokens (so the ids are those the model would read), else the answer alone.
        """
        text = self.continuation(label)
        joint = self.encode(prompt + text)
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            return joint[len(prompt_ids) :]
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def option_ids(
        self, prompt: str, labels: Iterable[str]
    ) -> tuple[list[int], list[list[int]]]:
        """A prompt's token ids and each option label's ids as the answer to it: the
        token sequences score mode rates."""
        ids = self.encode(prompt)
        return ids, [self.answer_ids(prompt, ids, label) for label in labels]


def shown_value(value: Any) -> Any:
    """A persona value as a prompt shows it: a missing one as ``NOT_STATED``, a whole
    number held as a float (a numeric column with a blank reads as floats) as a whole
    number, "24" years old rather than "24.0"; anything else as it is."""
    if _missing(value):
        return NOT_STATED
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return value


def _missing(value: Any) -> bool:
    """Whether a persona value is missing (NaN, None, pandas NA); lists are never missing."""
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))
