"""The declaration of a study: its items, personas, arms, models, subgroups and coherence rules.

A ``Study`` is what a researcher writes down once (in Python or YAML) so that
simval can simulate the same respondents and compare them with the humans. It is
checked as a whole when it is built: every name a formula, rule or subgroup uses
must be declared, so mistakes surface before any model is loaded.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import jinja2
import jinja2.meta
import numpy as np
import pandas as pd
import yaml

from simval.errors import (
    DataError,
    FormulaError,
    SimvalError,
    StudyError,
    check_option,
    plain,
)
from simval.families import CLUSTER_PREFIX, Family, check_cov, family_of
from simval.formulas import formula_variables, outcome_of

Role = Literal["belief", "action", "outcome", "other"]
ROLES: tuple[str, ...] = get_args(Role)
ARM_SEPARATOR = " | "
"""Joins a factorial design's levels into the arm name its vignette is keyed by."""


MAX_LABEL_CHARS = 300
"""The longest option (or missing answer) label accepted: every label is scored as a
token sequence after every prompt, and a 10,000-character label hung scoring at 5.8 GB."""

MAX_TEXT_CHARS = 5_000
"""The longest item text, vignette, ``persona_text`` or persona value accepted: each is
part of every prompt that shows it (a page of text is about 3,000 characters)."""


def did_you_mean(name: object, candidates: Iterable[object]) -> str:
    """`` (did you mean 'Age'?)`` naming the candidate closest to ``name`` (difflib, case
    ignored), or an empty string when none is close: the end of a message about a
    name that is not there."""
    names = {str(c).casefold(): str(c) for c in candidates}
    close = difflib.get_close_matches(
        str(name).casefold(), list(names), n=1, cutoff=0.7
    )
    return f" (did you mean {names[close[0]]!r}?)" if close else ""


def _named(names: Iterable[object], candidates: Iterable[object]) -> str:
    """``names`` listed with a ``did_you_mean`` after each (one line)."""
    candidates = tuple(candidates)
    return ", ".join(f"{n}{did_you_mean(n, candidates)}" for n in names)


def _too_long(text: str, *, limit: int) -> str | None:
    """What a message says of a ``text`` over ``limit`` characters (its start and its
    length, against the limit); None when it is within."""
    if len(text) <= limit:
        return None
    return f"{text[:30]!r}... is {len(text):,} characters; the limit is {limit:,}"


MAX_SCORED_VALUES = 11
"""A number item with at most this many whole values (a 0-10 scale) is answered in score
mode by ranking its values as options; a wider or open one is generated and parsed."""


@dataclass(frozen=True)
class Number:
    """The answer scale of a number item: optional bounds and whether answers are whole
    numbers (a 0-100 feeling thermometer: ``Number(0, 100, whole=True)``; an open number
    of hours: ``Number(min=0)``)."""

    min: float | None = None
    max: float | None = None
    whole: bool = False

    def count(self) -> int | None:
        """How many answers a bounded whole scale allows (None when not finite)."""
        if not self.whole or self.min is None or self.max is None:
            return None
        return max(0, math.floor(self.max) - math.ceil(self.min) + 1)

    def values(self) -> tuple[float, ...] | None:
        """Every allowed answer of a bounded whole scale (None when not finite)."""
        if self.count() is None:
            return None
        return tuple(
            float(v) for v in range(math.ceil(self.min), math.floor(self.max) + 1)
        )

    def describe(self) -> str:
        """The scale in words, as a prompt asks for it ("a whole number from 0 to 100")."""
        kind = "a whole number" if self.whole else "a number"
        low, high = (
            None if b is None else plain_number(b) for b in (self.min, self.max)
        )
        if low is not None and high is not None:
            return f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} of at least {low}"
        if high is not None:
            return f"{kind} of at most {high}"
        return kind

    def invalid(self, values: np.ndarray) -> np.ndarray:
        """Which of the (float, non-missing) ``values`` lie outside the scale."""
        bad = ~np.isfinite(values)
        if self.min is not None:
            bad |= values < self.min
        if self.max is not None:
            bad |= values > self.max
        if self.whole:
            bad |= values != np.round(values)
        return bad


def plain_number(value: float) -> str:
    """A number as a person writes it: 5, not 5.0."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _code_label(code: object) -> str:
    """The label of a missing code listed without one (``missing: [8]``): the code."""
    number = isinstance(code, int | float) and not isinstance(code, bool)
    return plain_number(code) if number and math.isfinite(code) else str(code)


def no_code_message(kind: str, label: object, *, item: str) -> str:
    """The error for an option (or missing answer) whose code is empty, which is what
    YAML makes of ``Hillary Clinton:`` with no value or of an unquoted comma in a
    flow mapping (``{Clinton, Hillary: 1}`` reads ``Clinton`` without a code)."""
    return (
        f"{kind} {label!r} of item {item!r} has no code (write it as 'label: code'); "
        "quote labels that contain commas or colons"
    )


@dataclass(frozen=True)
class Item:
    """One survey question: its text, its ordered answer options (label -> code) and its role.

    A number item has ``number`` (a ``Number`` scale, or its fields as a mapping)
    instead of options: its answers are numbers on that scale (``Item.choices`` says
    whether a simulator can score them or must generate them).

    ``missing``: the codes the data uses for a non-answer (label -> code, e.g.
    ``{"Don't know": 8, "Refused": 9}``, or a list of codes, each its own label:
    ``[8, 9]``). They are valid in the data, never offered to a
    simulator, and count as a missing answer: each is left out of that item's metrics
    and of every fit that uses the item (``Study.blank_missing``), and validate's notes
    say how many there were (``Study.missing_answers_note``). NaN is always missing.
    """

    name: str
    text: str
    options: Mapping[str, float] = field(default_factory=dict)
    role: Role = "other"
    missing: Mapping[str, float] = field(default_factory=dict)
    number: Number | None = None

    def __post_init__(self) -> None:
        for what, value in (("name", self.name), ("text", self.text)):
            if not isinstance(value, str):
                raise StudyError(
                    f"item {self.name!r}: its {what} must be text, got {_shown(value)}"
                )
        check_option(f"role of item {self.name!r}", self.role, ROLES)
        if long := _too_long(self.text, limit=MAX_TEXT_CHARS):
            raise StudyError(f"item {self.name!r}: its text {long}")
        if not isinstance(self.options, Mapping):
            raise StudyError(
                f"item {self.name!r}: options must map each label to its code, "
                f"got {_shown(self.options)}"
            )
        self._check_number()
        if not self.options and self.number is None:
            raise StudyError(f"item {self.name!r} has no options (nor a number scale)")
        object.__setattr__(self, "options", dict(self.options))
        seen: dict[float, str] = {}
        for label, code in self.options.items():
            if isinstance(label, bool):
                raise StudyError(
                    f"item {self.name!r}: option label {label!r} is not text (YAML reads "
                    "unquoted yes/no/on/off/true/false as booleans: quote the label)"
                )
            if code is None:
                raise StudyError(no_code_message("option", label, item=self.name))
            if (
                isinstance(code, bool)
                or not isinstance(code, int | float)
                or math.isnan(code)
            ):
                raise StudyError(
                    f"item {self.name!r}: option {label!r} has code {code!r}; codes must be numbers"
                )
            if code in seen:
                raise StudyError(
                    f"item {self.name!r}: code {code!r} is used by both option "
                    f"{seen[code]!r} and option {label!r}"
                )
            seen[code] = label
        self._check_missing(seen)
        for label in (*self.options, *self.missing):
            if long := _too_long(str(label), limit=MAX_LABEL_CHARS):
                raise StudyError(f"item {self.name!r}: option label {long}")

    def _check_number(self) -> None:
        """A number scale replaces the options: a ``Number`` (or its fields), bounds in
        order."""
        if self.number is None:
            return
        if self.options:
            raise StudyError(
                f"item {self.name!r} declares both options and a number scale; keep one"
            )
        if isinstance(self.number, Mapping):
            unknown = sorted(set(map(str, self.number)) - {"min", "max", "whole"})
            if unknown:
                raise StudyError(
                    f"item {self.name!r}: unknown number field(s) {', '.join(unknown)}; "
                    "known: min, max, whole"
                )
            object.__setattr__(self, "number", Number(**self.number))
        if not isinstance(self.number, Number):
            raise StudyError(
                f"item {self.name!r}: number must be a mapping of min, max and whole, "
                f"got {_shown(self.number)}"
            )
        low, high = self.number.min, self.number.max
        for bound in (low, high):
            if bound is not None and (
                isinstance(bound, bool)
                or not isinstance(bound, int | float)
                or not math.isfinite(bound)
            ):
                raise StudyError(
                    f"item {self.name!r}: number bound {bound!r} must be a finite number"
                )
        if low is not None and high is not None and low >= high:
            raise StudyError(
                f"item {self.name!r}: number min {low!r} must lie below max {high!r}"
            )
        if not isinstance(self.number.whole, bool):
            raise StudyError(
                f"item {self.name!r}: number whole must be true or false, got "
                f"{_shown(self.number.whole)}"
            )
        if self.number.count() == 0:
            raise StudyError(
                f"item {self.name!r}: no whole number lies between {low!r} and {high!r}"
            )

    def _check_missing(self, options: dict[float, str]) -> None:
        """Missing codes are numbers that no option uses, with labels of their own (a
        list of codes, ``missing: [8, 9]``, labels each code by itself)."""
        if isinstance(self.missing, list | tuple):
            object.__setattr__(
                self, "missing", {_code_label(c): c for c in self.missing}
            )
        if not isinstance(self.missing, Mapping):
            raise StudyError(
                f"item {self.name!r}: missing must map each label to its code (or list "
                f"the codes), got {_shown(self.missing)}"
            )
        object.__setattr__(self, "missing", dict(self.missing))
        for label, code in self.missing.items():
            if code is None:
                raise StudyError(
                    no_code_message("missing answer", label, item=self.name)
                )
            if isinstance(code, bool) or not isinstance(code, int | float):
                raise StudyError(
                    f"item {self.name!r}: missing answer {label!r} has code {code!r}; "
                    "codes must be numbers"
                )
            if code in options or label in self.options:
                raise StudyError(
                    f"item {self.name!r}: missing answer {label!r} ({code!r}) is also an "
                    f"option ({options.get(code, label)!r})"
                )
            if self.number is not None and not self.number.invalid(np.array([code]))[0]:
                raise StudyError(
                    f"item {self.name!r}: missing answer {label!r} ({code!r}) lies on "
                    f"its number scale ({self.number.describe()}); give it a code outside"
                )

    @property
    def codes(self) -> tuple[float, ...]:
        """The option codes, in the declared order."""
        return tuple(self.options.values())

    @property
    def labels(self) -> tuple[str, ...]:
        """The option labels, in the declared order."""
        return tuple(self.options)

    @property
    def is_number(self) -> bool:
        """Whether answers are numbers on a scale rather than options."""
        return self.number is not None

    @property
    def choices(self) -> dict[str, float] | None:
        """The answers a score-mode simulator ranks, label -> code: the options; for a
        number item with at most ``MAX_SCORED_VALUES`` whole values, those values
        written as numbers ("0", "1", ...); None for a wider or open number item, whose
        answers are generated and parsed instead."""
        if self.number is None:
            return self.options
        count = self.number.count()
        if count is None or count > MAX_SCORED_VALUES:
            return None
        return {plain_number(v): v for v in self.number.values()}


DEFAULT_MARGIN = 0.1
"""The default equivalence margin, a standardised coefficient (see ``Model``)."""


@dataclass(frozen=True)
class Model:
    """A regression the original study ran: an R-style formula, a family and a covariance type.

    ``margin``: the smallest difference between simulated and human coefficients that
    matters, as a standardised coefficient in Gelman's (2008) scaling: the change in
    the outcome, in its SDs, per SD of a continuous term, and half the change between
    a dummy's two values, rare or common (latent SDs for logit (pi/sqrt(3)) and probit
    (1); the log rate for poisson). The default 0.1 is a small effect (Cohen's r = .1
    for a continuous term, d = 0.2 for every dummy), the smallest-effect-of-interest
    convention for equivalence tests (Lakens, Scheel & Isager 2018); docs/metrics.md
    says why it is not the effect the human study had 33% power to detect.
    """

    formula: str
    family: Family = "ols"
    cov: str = "HC1"
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if not isinstance(self.formula, str):
            raise StudyError(
                f"a model's formula must be text, got {_shown(self.formula)}"
            )
        family_of(self.family, argument=f"family of model {self.formula!r}")
        check_cov(self.cov)
        if (
            isinstance(self.margin, bool)
            or not isinstance(self.margin, int | float)
            or not 0 < self.margin < math.inf
        ):
            raise StudyError(
                f"model {self.formula!r}: margin={self.margin!r} must be a positive number"
            )

    @property
    def outcome(self) -> str:
        """The outcome (left-hand side) variable of the formula."""
        return outcome_of(self.formula)


@dataclass(frozen=True)
class Coherence:
    """A belief–action pair and the rule (a pandas query expression) true for an incoherent respondent."""

    belief: str
    action: str
    rule: str

    def __post_init__(self) -> None:
        for what in ("belief", "action", "rule"):
            value = getattr(self, what)
            if not isinstance(value, str):
                raise StudyError(f"coherence {what} must be text, got {_shown(value)}")


@dataclass(frozen=True)
class Study:
    """A whole study declaration, validated on construction.

    ``treatment`` names the column(s) that assign arms: one column, or one per factor
    of a factorial design. ``vignettes`` maps each arm (see ``arm_of``) to its text.
    ``persona_text``: a Jinja2 phrase describing a respondent from persona columns
    (e.g. ``"{{ age }}-year-old {{ gender | lower }}"``); None lists every persona
    column as a ``name: value`` line in the prompt.
    """

    items: tuple[Item, ...]
    persona: tuple[str, ...] = ()
    treatment: tuple[str, ...] = ()
    vignettes: Mapping[str, str] = field(default_factory=dict)
    models: tuple[Model, ...] = ()
    subgroups: tuple[str, ...] = ()
    coherence: tuple[Coherence, ...] = ()
    persona_text: str | None = None
    weight: str | None = None

    def __post_init__(self) -> None:
        for name in ("items", "persona", "models", "subgroups", "coherence"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        treatment = self.treatment
        if treatment is None or isinstance(treatment, str):
            treatment = (treatment,) if treatment else ()
        object.__setattr__(self, "treatment", tuple(treatment))
        object.__setattr__(self, "vignettes", dict(self.vignettes))
        _check_study(self)

    @property
    def item_names(self) -> tuple[str, ...]:
        """Names of the items, in declared order."""
        return tuple(item.name for item in self.items)

    @property
    def persona_columns(self) -> tuple[str, ...]:
        """The columns a simulator sees for each respondent: persona columns plus the arm's."""
        return (*self.persona, *self.treatment)

    def persona_columns_of(self, df: pd.DataFrame) -> tuple[str, ...]:
        """The columns a simulator sees in ``df``: the declared ``persona_columns``, or
        every column that is neither an item nor the weight column."""
        return self.persona_columns or tuple(
            c for c in df.columns if c not in (*self.item_names, self.weight)
        )

    def arm_of(self, respondent: Mapping) -> str | None:
        """The respondent's arm: its treatment levels joined by ``ARM_SEPARATOR`` (the vignette key).

        A one-factor design's arm is the level itself; a factorial design's arm names
        one level per factor, e.g. ``"startup | shown | offered"``. None without a
        treatment or when a level is missing.
        """
        if not self.treatment:
            return None
        levels = [respondent.get(column) for column in self.treatment]
        if any(level is None or pd.isna(level) for level in levels):
            return None
        return ARM_SEPARATOR.join(str(level) for level in levels)

    def arms(self, df: pd.DataFrame) -> pd.Series:
        """Each row's arm (see ``arm_of``), as strings; missing where a level is missing."""
        return pd.Series(
            [self.arm_of(row) for row in df[list(self.treatment)].to_dict("records")],
            index=df.index,
            dtype=object,
        )

    def item(self, name: str) -> Item:
        """The item called ``name``; StudyError naming it if there is none."""
        for item in self.items:
            if item.name == name:
                return item
        raise StudyError(
            f"the study has no item {name!r}{did_you_mean(name, self.item_names)}; "
            f"items: {', '.join(self.item_names)}"
        )

    def items_with_role(self, role: Role) -> tuple[Item, ...]:
        """The items whose role is ``role``."""
        check_option("role", role, ROLES)
        return tuple(item for item in self.items if item.role == role)

    def check_data(self, df: pd.DataFrame, *, what: str = "human data") -> None:
        """Raise DataError unless ``df`` has respondents, every declared column and only
        valid answer codes."""
        if len(df) == 0:
            raise DataError(f"{what} has no respondents (no rows)")
        needed = (*self.persona_columns, *self.item_names)
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise DataError(
                _wrong_separator(df, missing=missing, needed=needed, what=what)
                or f"{what} lacks the study's column(s): {_named(missing, df.columns)}"
            )
        check_codes(df, self.items, what=what)
        self._check_answered(df, what=what)
        self._check_persona_lengths(df, what=what)
        if self.weight is not None:
            self._check_weight_column(df, what=what)
        if self.treatment and self.vignettes:
            unknown = sorted(set(self.arms(df).dropna()) - set(self.vignettes))
            if unknown:
                columns = ", ".join(repr(c) for c in self.treatment)
                raise DataError(
                    f"{what}: treatment column(s) {columns} hold arm(s) with no vignette: "
                    f"{', '.join(repr(a) for a in unknown)}"
                )

    def _check_answered(self, df: pd.DataFrame, *, what: str) -> None:
        """Every item has at least one answer: an item no human answered (every value
        blank or a declared missing code) has nothing to compare a simulator with."""
        answered = self.blank_missing(df[list(self.item_names)]).notna().any()
        if not answered.all():
            name = answered.index[~answered][0]
            raise DataError(
                f"{what}: item {name!r} is missing on every row (each value blank or a "
                "declared missing code): fix the column, or drop the item from the study"
            )

    def _check_persona_lengths(self, df: pd.DataFrame, *, what: str) -> None:
        """Every persona value a prompt shows is at most ``MAX_TEXT_CHARS`` long."""
        for column in self.persona_columns:
            values = df[column]
            if pd.api.types.is_numeric_dtype(values):
                continue
            lengths = values.dropna().astype(str).str.len()
            if len(lengths) and lengths.max() > MAX_TEXT_CHARS:
                row = lengths.idxmax()
                raise DataError(
                    f"{what}: column {column!r}, row {plain(row)}: its value "
                    f"{_too_long(str(values[row]), limit=MAX_TEXT_CHARS)}"
                )

    def coded(self, df: pd.DataFrame, *, what: str = "human data") -> Coded:
        """``df`` with answers given as option labels (``"Agree"`` for 4) replaced by
        their codes, and which items were: a column is mapped only when every answer
        is one of the item's labels (case and spacing aside) or one of its codes; a
        column with other text is left for ``check_data`` to refuse, showing the
        mapping it expects."""
        mapped = {}
        for item in self.items:
            if item.is_number or item.name not in df.columns:
                continue
            codes = _codes_of(df[item.name], item)
            if codes is not None:
                mapped[item.name] = codes
        return Coded(
            data=df.assign(**mapped) if mapped else df, mapped=tuple(mapped), what=what
        )

    def _check_weight_column(self, df: pd.DataFrame, *, what: str) -> None:
        """The study's weight column: present, with a positive weight on every row."""
        if self.weight not in df.columns:
            raise DataError(f"{what} lacks the study's weight column {self.weight!r}")
        values = df[self.weight]
        check_weights(values, column=self.weight, what=what)
        if values.isna().any():
            rows = ", ".join(plain(i) for i in values.index[values.isna()][:5])
            raise DataError(
                f"{what}: weights column {self.weight!r} is missing on rows {rows}"
            )

    def blank_missing(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with every item's declared missing codes as NaN (a copy only when
        there is one to blank)."""
        blanked = {}
        for item in self.items:
            if item.missing and item.name in df.columns:
                declared = df[item.name].isin(item.missing.values())
                if declared.any():
                    blanked[item.name] = df[item.name].mask(declared)
        return df.assign(**blanked) if blanked else df

    def missing_answers_note(self, df: pd.DataFrame) -> str | None:
        """One sentence on the declared missing answers in ``df`` (None without any):
        per item, how many of each, left out of that item's metrics and of every fit
        that uses it."""
        parts = []
        for item in self.items:
            if not item.missing or item.name not in df.columns:
                continue
            counts = {
                label: int((df[item.name] == code).sum())
                for label, code in item.missing.items()
            }
            if sum(counts.values()):
                shown = ", ".join(f"{label}: {n}" for label, n in counts.items() if n)
                parts.append(f"{item.name} {sum(counts.values())} ({shown})")
        if not parts:
            return None
        return (
            "Declared missing answers, left out of each item's metrics and of every "
            f"fit that uses the item: {'; '.join(parts)}."
        )

    def missing_persona_note(self, df: pd.DataFrame) -> str | None:
        """One sentence on the respondents of ``df`` with missing persona values (None when
        there are none), for a command's output and a report's notes.

        Such respondents are kept, so the note says what is done with them: their prompts
        say "not stated" for a missing field, and each regression drops the rows missing
        a variable it uses (R's na.omit).
        """
        missing = df[[c for c in self.persona if c in df.columns]].isna()
        rows = int(missing.any(axis=1).sum())
        if not rows:
            return None
        counts = missing.sum()
        per_column = ", ".join(f"{c}: {int(n)}" for c, n in counts[counts > 0].items())
        who = "1 respondent has" if rows == 1 else f"{rows} respondents have"
        return (
            f"{who} missing persona values ({per_column}): their prompts say "
            "'not stated' for those fields, and each regression drops rows missing a "
            "variable it uses."
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> Study:
        """Load a study from a YAML file (the layout ``to_yaml`` writes).

        Every problem is one SimvalError line that starts with the file's name: a
        file that cannot be read, YAML syntax (with its line and column), and a
        field of the wrong type or an inconsistent declaration (its usual error).
        """
        raw, node = _read_yaml(Path(path))
        if not isinstance(raw, dict):
            raise StudyError(f"{path}: expected a mapping at the top level")
        _check_codes_given(node, path=path)
        try:
            return study_from_dict(raw, lines=_entry_lines(node))
        except SimvalError as exc:  # same kind of error, now naming the file
            where = "" if str(exc).startswith("line ") else ":"
            raise type(exc)(f"{path}{where} {exc}") from exc

    def to_yaml(self, path: str | Path) -> None:
        """Write the study to a YAML file that ``from_yaml`` reads back to an equal study."""
        text = yaml.safe_dump(study_to_dict(self), sort_keys=False, allow_unicode=True)
        Path(path).write_text(text, encoding="utf-8")


@dataclass(frozen=True, eq=False)
class Coded:
    """Data whose answers were coded (``Study.coded``): ``data``, and the items in
    ``mapped`` whose answers were given as option labels (``what`` names the data)."""

    data: pd.DataFrame
    mapped: tuple[str, ...]
    what: str

    @property
    def note(self) -> str | None:
        """One line saying which columns were mapped (None when none was)."""
        if not self.mapped:
            return None
        return (
            f"{self.what}: answers given as option labels were mapped to their codes "
            f"in column(s) {', '.join(self.mapped)}."
        )


def _normal(value: object) -> str:
    """A label as ``Study.coded`` matches it: case and runs of spaces ignored."""
    return " ".join(str(value).split()).casefold()


def _label_codes(item: Item) -> dict[str, float]:
    """Each option and missing label of ``item``, as ``_normal`` writes it, to its code."""
    return {_normal(k): v for k, v in {**item.options, **item.missing}.items()}


def _codes_of(values: pd.Series, item: Item) -> pd.Series | None:
    """``values`` as codes where they are text holding at least one of ``item``'s labels
    and nothing but its labels and codes; None otherwise (numbers, or other text)."""
    if pd.api.types.is_numeric_dtype(values) and not isinstance(
        values.dtype, pd.CategoricalDtype
    ):
        return None
    present = values.dropna().astype(object)
    labels = _label_codes(item)
    keys = present.map(_normal)
    labelled = keys.isin(list(labels))
    numeric = pd.to_numeric(present.where(~labelled), errors="coerce")
    if not labelled.any() or not (labelled | numeric.notna()).all():
        return None
    codes = numeric.where(~labelled, keys.map(labels)).astype(float)
    out = pd.Series(np.nan, index=values.index).astype(float)
    out[codes.index] = codes
    whole = out.notna().all() and (out == out.round()).all()
    return out.astype("int64") if whole else out


def _wrong_separator(
    df: pd.DataFrame, *, missing: Sequence[str], needed: Sequence[str], what: str
) -> str | None:
    """The message for data read with the wrong separator: most of the study's columns
    missing and a single column whose header holds a ``;``, tab or ``|`` (None if not)."""
    if len(df.columns) != 1 or 2 * len(missing) < len(needed):
        return None
    header = str(df.columns[0])
    separator = next((c for c in (";", "\t", "|") if c in header), None)
    if separator is None:
        return None
    return (
        f"{what} has a single column, {_shown(header)}, where the study needs "
        f"{len(needed)}: it looks read with the wrong separator; its header holds "
        f"{separator!r}, so read it with sep={separator!r}"
    )


def _read_yaml(path: Path) -> tuple[object, yaml.Node | None]:
    """Parse the YAML file at ``path`` into its data and its node tree (which knows the
    line of every entry); StudyError naming the file (and line) when it cannot."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise StudyError(
            f"{path}: cannot read the study file ({exc.strerror or exc})"
        ) from None
    try:
        return _load(text)
    except yaml.MarkedYAMLError as exc:
        raise StudyError(_yaml_problem(path, exc)) from None
    except yaml.YAMLError as exc:  # e.g. a control character (a ReaderError)
        raise StudyError(f"{path}: {str(exc).strip().splitlines()[0]}") from None


def _load(text: str) -> tuple[object, yaml.Node | None]:
    """``yaml.safe_load`` of ``text``, and the node tree it was built from."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), node
    finally:
        loader.dispose()


def _field(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node of ``key`` in a mapping node (None when absent or not a mapping)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if k.value == key), None)


def _entry_lines(node: yaml.Node | None) -> dict[str, tuple[int, ...]]:
    """The 1-based line of each entry of the ``items``, ``models`` and ``coherence``
    lists, so an error in one names its line."""
    lines = {}
    for key in ("items", "models", "coherence"):
        entries = _field(node, key)
        if isinstance(entries, yaml.SequenceNode):
            lines[key] = tuple(e.start_mark.line + 1 for e in entries.value)
    return lines


def _check_codes_given(node: yaml.Node | None, *, path: str | Path) -> None:
    """Refuse an option or missing answer with an empty code, naming its line: YAML
    reads ``Hillary Clinton:`` with no value, or the ``Clinton`` of an unquoted
    ``{Clinton, Hillary: 1}``, as a label whose code is null."""
    items = _field(node, "items")
    for entry in items.value if isinstance(items, yaml.SequenceNode) else ():
        name = _field(entry, "name")
        item = name.value if isinstance(name, yaml.ScalarNode) else "?"
        for key, kind in (("options", "option"), ("missing", "missing answer")):
            answers = _field(entry, key)
            for label, code in (
                answers.value if isinstance(answers, yaml.MappingNode) else ()
            ):
                if code.tag == "tag:yaml.org,2002:null":
                    raise StudyError(
                        f"{path} line {label.start_mark.line + 1}: "
                        + no_code_message(kind, label.value, item=item)
                    )


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    """One line: the file, the 1-based line and column of the problem, and what it is.

    An unclosed bracket is noticed where the file ends, so the construct it opened
    (the error's context) is named too, with the line it starts on.
    """
    mark = exc.problem_mark or exc.context_mark
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    message = f"{path}{where}: {exc.problem or exc.context or 'invalid YAML'}"
    start = exc.context_mark
    if exc.problem and exc.context and start and (not mark or start.line != mark.line):
        message += (
            f" ({exc.context} that starts at line {start.line + 1}, "
            f"column {start.column + 1})"
        )
    return message


def rule_variables(rule: str) -> set[str]:
    """The column names a pandas query expression reads (``@`` locals excluded)."""
    try:
        tree = ast.parse(rule, mode="eval")
    except SyntaxError as exc:
        raise StudyError(f"cannot parse coherence rule {rule!r}: {exc.msg}") from exc
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - {
        "True",
        "False",
    }


def invalid_codes_message(
    values: pd.Series, item: Item, *, what: str, data: bool = False
) -> str | None:
    """Describe the non-missing values that are not among ``item``'s option codes (not
    on its number scale), or None. For a ``data`` file's values the message ends with
    the fix: the label -> code mapping for text, ``missing:`` for an undeclared whole
    number (a simulator's output gets neither: it breaks its contract)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if item.number is not None:
        return _invalid_numbers_message(values, numeric, item, what=what, data=data)
    valid = (*item.codes, *item.missing.values())
    bad = values[~numeric.isin(valid) & values.notna()]
    if not len(bad):
        return None
    text = bad[numeric[bad.index].isna()]
    if data and len(text):
        return _labels_message(text, item, what=what)
    shown = ", ".join(plain(v) for v in pd.unique(bad)[:5])
    codes = ", ".join(plain(c) for c in item.codes)
    hint = _missing_hint(numeric[bad.index], item) if data else ""
    return (
        f"{what}: item {item.name!r} holds value(s) {shown} that are not among its "
        f"option codes [{codes}]{hint}"
    )


def _missing_hint(numbers: pd.Series, item: Item) -> str:
    """The fix for whole numbers no option (or scale) allows: declare them missing
    (beside the item's own missing codes, where it has some)."""
    shown = pd.unique(numbers)[:5]
    if not all(float(v).is_integer() for v in shown):
        return ""
    listed = ", ".join(plain_number(v) for v in shown)
    if item.missing:
        codes = {**item.missing, **{plain_number(v): v for v in shown}}
        listed = ", ".join(
            f"{json.dumps(k)}: {plain_number(v)}" for k, v in codes.items()
        )
        fix = f"missing: {{{listed}}}"
    else:
        fix = f"missing: [{listed}]"
    if len(shown) == 1:
        return f"; if {plain_number(shown[0])} means no answer, declare it: {fix}"
    return f"; if they mean no answer, declare them: {fix}"


def _labels_message(text: pd.Series, item: Item, *, what: str) -> str:
    """The refusal of text answers, with the label -> code mapping the item expects:
    labels to code (``Study.coded``, which the command line applies), or values that
    are neither labels nor codes."""
    mapping = ", ".join(
        f"{label!r} = {plain_number(code)}"
        for label, code in {**item.options, **item.missing}.items()
    )
    known = text.map(_normal).isin(list(_label_codes(item)))
    if known.all():
        shown = ", ".join(plain(v) for v in pd.unique(text)[:3])
        return (
            f"{what}: item {item.name!r} holds option labels ({shown}) where codes are "
            f"expected; code them with Study.coded(df) (mapping {mapping})"
        )
    shown = ", ".join(plain(v) for v in pd.unique(text[~known])[:5])
    return (
        f"{what}: item {item.name!r} holds value(s) {shown} that are neither its "
        f"option codes nor its labels; expected {mapping}"
    )


def _invalid_numbers_message(
    values: pd.Series, numeric: pd.Series, item: Item, *, what: str, data: bool
) -> str | None:
    """``invalid_codes_message`` of a number item: values off its scale, missing codes
    aside."""
    given = values.notna() & ~numeric.isin(list(item.missing.values()))
    floats = numeric.to_numpy(dtype=float, na_value=np.nan)
    off = given.to_numpy() & (
        np.isnan(floats) | item.number.invalid(np.nan_to_num(floats))
    )
    if not off.any():
        return None
    shown = ", ".join(plain(v) for v in pd.unique(values[off])[:5])
    numbers = numeric[off]
    hint = _missing_hint(numbers, item) if data and numbers.notna().all() else ""
    return (
        f"{what}: item {item.name!r} holds value(s) {shown} that are not "
        f"{item.number.describe()}{hint}"
    )


def check_codes(df: pd.DataFrame, items: Iterable[Item], *, what: str) -> None:
    """Raise DataError naming the item and the values in ``df`` that are not among its option codes."""
    for item in items:
        if item.name not in df.columns:
            raise DataError(f"{what} has no column for item {item.name!r}")
        message = invalid_codes_message(df[item.name], item, what=what, data=True)
        if message:
            raise DataError(message)


def _check_study(study: Study) -> None:
    """Every cross-reference inside a study must resolve; raise StudyError naming what does not."""
    if not study.items:
        raise StudyError("a study needs at least one item")
    names = [item.name for item in study.items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StudyError(f"duplicate item name(s): {', '.join(duplicates)}")
    columns = set(study.persona_columns)
    overlap = sorted(columns & set(names))
    if overlap:
        raise StudyError(
            f"{', '.join(overlap)} declared both as item and as persona/treatment"
        )
    repeated = sorted(set(study.persona) & set(study.treatment))
    if repeated:
        raise StudyError(
            f"{', '.join(repeated)} declared both as persona and as treatment column"
        )
    _check_vignettes(study)
    _check_persona_text(study)
    _check_weight(study, columns=columns | set(names))
    declared = columns | set(names)
    for model in study.models:
        unknown = sorted(formula_variables(model.formula) - declared)
        if unknown:
            raise StudyError(
                f"formula {model.formula!r} names undeclared variable(s): "
                f"{_named(unknown, declared)}"
            )
        if model.outcome not in names:
            raise StudyError(
                f"formula {model.formula!r}: outcome {model.outcome!r} is not one of "
                f"the items{did_you_mean(model.outcome, names)}"
            )
        cluster = model.cov.removeprefix(CLUSTER_PREFIX)
        if model.cov.startswith(CLUSTER_PREFIX) and cluster not in columns:
            raise StudyError(
                f"model {model.formula!r}: cov={model.cov!r} clusters on {cluster!r}, which "
                f"is not a persona or treatment column{did_you_mean(cluster, columns)} "
                f"(declared: {', '.join(sorted(columns)) or 'none'})"
            )
    for pair in study.coherence:
        for role, name in (("belief", pair.belief), ("action", pair.action)):
            if name not in names:
                raise StudyError(
                    f"coherence {role} {name!r} is not one of the items"
                    f"{did_you_mean(name, names)}"
                )
        unknown = sorted(rule_variables(pair.rule) - declared)
        if unknown:
            raise StudyError(
                f"coherence rule {pair.rule!r} names undeclared variable(s): "
                f"{_named(unknown, declared)}"
            )
    for subgroup in study.subgroups:
        if subgroup not in columns:
            raise StudyError(
                f"subgroup {subgroup!r} is not a persona or treatment column"
                f"{did_you_mean(subgroup, columns)} "
                f"(declared: {', '.join(sorted(columns)) or 'none'})"
            )


def _check_weight(study: Study, *, columns: set[str]) -> None:
    """The weight column is a column name of its own: no item, persona or treatment."""
    if study.weight is None:
        return
    if not isinstance(study.weight, str) or not study.weight:
        raise StudyError(f"weight must be a column name, got {_shown(study.weight)}")
    if study.weight in columns:
        raise StudyError(
            f"weight column {study.weight!r} is also an item, persona or treatment "
            "column; survey weights are a column of their own"
        )


def check_weights(values: pd.Series, *, column: str, what: str) -> None:
    """Raise DataError unless every present weight in ``values`` (the ``column`` of the
    ``what`` data) is a positive finite number."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise DataError(f"{what}: weights column {column!r} must hold numbers")
    bad = values[values.notna() & ~(np.isfinite(values) & (values > 0))]
    if len(bad):
        shown = ", ".join(f"{plain(i)} ({plain(v)})" for i, v in bad.head(5).items())
        raise DataError(
            f"{what}: weights column {column!r} must be positive and finite; rows {shown}"
        )


def _check_vignettes(study: Study) -> None:
    """Vignettes need a treatment, and each key must name one level per treatment column."""
    if study.vignettes and not study.treatment:
        raise StudyError(
            "the study has vignettes but no treatment column to pick them by"
        )
    for arm, text in study.vignettes.items():
        if long := _too_long(text, limit=MAX_TEXT_CHARS):
            raise StudyError(f"vignette {arm!r}: its text {long}")
        levels = arm.split(ARM_SEPARATOR.strip())
        if len(levels) != len(study.treatment):
            raise StudyError(
                f"vignette {arm!r} names {len(levels)} level(s); the treatment has "
                f"{len(study.treatment)} column(s) ({', '.join(study.treatment)}), so each "
                f"vignette key joins one level per column with {ARM_SEPARATOR!r}"
            )


def _check_persona_text(study: Study) -> None:
    """``persona_text`` must parse as Jinja2 and read persona columns only."""
    if study.persona_text is None:
        return
    if not isinstance(study.persona_text, str):
        raise StudyError(f"persona_text must be text, got {_shown(study.persona_text)}")
    if long := _too_long(study.persona_text, limit=MAX_TEXT_CHARS):
        raise StudyError(f"persona_text {long}")
    environment = jinja2.Environment()
    try:
        parsed = environment.parse(study.persona_text)
    except jinja2.TemplateSyntaxError as exc:
        raise StudyError(f"persona_text: {exc.message}") from exc
    unknown = sorted(jinja2.meta.find_undeclared_variables(parsed) - set(study.persona))
    if unknown:
        raise StudyError(
            f"persona_text names {_named(unknown, study.persona)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not persona column(s) "
            f"(persona: {', '.join(study.persona) or 'none'})"
        )


def study_to_dict(study: Study) -> dict:
    """A plain, YAML-ready dict of a study (omitting empty optional fields)."""
    out: dict = {
        "items": [
            {"name": i.name, "text": i.text, "role": i.role}
            | (
                {"number": _number_dict(i.number)}
                if i.number is not None
                else {"options": dict(i.options)}
            )
            | ({"missing": dict(i.missing)} if i.missing else {})
            for i in study.items
        ]
    }
    if study.persona:
        out["persona"] = list(study.persona)
    if study.treatment:
        single = len(study.treatment) == 1
        out["treatment"] = study.treatment[0] if single else list(study.treatment)
    if study.vignettes:
        out["vignettes"] = dict(study.vignettes)
    if study.models:
        out["models"] = [
            {"formula": m.formula, "family": m.family, "cov": m.cov}
            | ({} if m.margin == DEFAULT_MARGIN else {"margin": m.margin})
            for m in study.models
        ]
    if study.subgroups:
        out["subgroups"] = list(study.subgroups)
    if study.persona_text is not None:
        out["persona_text"] = study.persona_text
    if study.weight is not None:
        out["weight"] = study.weight
    if study.coherence:
        out["coherence"] = [
            {"belief": c.belief, "action": c.action, "rule": c.rule}
            for c in study.coherence
        ]
    return out


def _number_dict(number: Number) -> dict:
    """A number scale's YAML fields (unset bounds and ``whole: false`` omitted)."""
    fields = {"min": number.min, "max": number.max, "whole": number.whole or None}
    return {k: v for k, v in fields.items() if v is not None}


_STUDY_KEYS = (
    "items",
    "persona",
    "treatment",
    "vignettes",
    "models",
    "subgroups",
    "coherence",
    "persona_text",
    "weight",
)


def study_from_dict(
    raw: Mapping, *, lines: Mapping[str, Sequence[int]] | None = None
) -> Study:
    """Build a Study from the dict layout of ``study_to_dict``; unknown keys are errors.

    A field of the wrong type (``items: 3``, ``persona: {a: 1}``) is a StudyError
    naming the field, not a TypeError from deep inside. ``lines``: the file line of
    each entry of ``items``, ``models`` and ``coherence`` (``Study.from_yaml``), so an
    error in an entry starts with ``line N:``.
    """
    lines = lines or {}
    unknown = sorted(str(key) for key in set(raw) - set(_STUDY_KEYS))
    if unknown:
        raise StudyError(
            f"unknown study field(s): {', '.join(unknown)}; known: {', '.join(_STUDY_KEYS)}"
        )
    return Study(
        items=_entries(raw, key="items", cls=Item, what="item", lines=lines),
        persona=_names(raw, key="persona"),
        treatment=_names(raw, key="treatment"),
        vignettes=_vignettes(raw),
        models=_entries(raw, key="models", cls=Model, what="model", lines=lines),
        subgroups=_names(raw, key="subgroups"),
        coherence=_entries(
            raw, key="coherence", cls=Coherence, what="coherence", lines=lines
        ),
        persona_text=raw.get("persona_text"),
        weight=raw.get("weight"),
    )


def _entries(
    raw: Mapping,
    *,
    key: str,
    cls: type,
    what: str,
    lines: Mapping[str, Sequence[int]],
) -> tuple:
    """The ``key`` field: a list of mappings, each built into a ``cls`` (an error in
    one starts with its line, where ``lines`` knows it)."""
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise StudyError(f"{key} must be a list of {what} entries, got {_shown(value)}")
    where = lines.get(key, ())
    built = []
    for i, entry in enumerate(value):
        try:
            built.append(_build(cls, entry, what))
        except SimvalError as exc:
            if i >= len(where):
                raise
            raise type(exc)(f"line {where[i]}: {exc}") from exc
    return tuple(built)


def _names(raw: Mapping, *, key: str) -> tuple[str, ...]:
    """The ``key`` field: one column name or a list of them (none when empty)."""
    value = raw.get(key)
    if value is None or value == "" or value == []:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StudyError(
            f"{key} must be a column name or a list of column names, got {_shown(value)}"
        )
    return tuple(names)


def _vignettes(raw: Mapping) -> dict[str, str]:
    """The ``vignettes`` field: a mapping of arm to vignette text."""
    value = raw.get("vignettes")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(text, str) for text in value.values()
    ):
        raise StudyError(
            f"vignettes must map each arm to its text, got {_shown(value)}"
        )
    return {str(arm): text for arm, text in value.items()}


def _shown(value: object, *, limit: int = 60) -> str:
    """``plain(value)`` (a repr), cut to ``limit`` characters so an error stays one short line."""
    text = plain(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _build(cls: type, entry: object, what: str):
    """Instantiate ``cls`` from a YAML mapping, naming the entry when its fields are wrong."""
    if not isinstance(entry, Mapping):
        raise StudyError(f"each {what} must be a mapping, got {_shown(entry)}")
    try:
        return cls(**entry)
    except TypeError as exc:
        label = entry.get("name") or entry.get("formula") or entry.get("rule") or entry
        raise StudyError(f"{what} {label!r}: {exc}") from exc


MAX_OBSERVED_OPTIONS = 11
"""In formula mode a column with more distinct values than this (or any value that is
not a whole number) is an open number item, not a list of options; so is the outcome of
a linear model with more than two values or of a count model (``_observed_item``)."""


def categorical_items(study: Study) -> tuple[Item, ...]:
    """Items a formula treats as a factor (``C(item)``): fitted with the declared options
    as levels, so every sample is estimated on the same contrasts."""
    return tuple(
        item
        for item in study.items
        if any(
            re.search(rf"\bC\(\s*`?{re.escape(item.name)}\b", m.formula)
            for m in study.models
        )
    )


def labelled_outcomes(study: Study) -> tuple[Item, ...]:
    """Items that are the outcome of a multinomial or ordered model: fitted as their
    option labels in the declared order, so coefficients name a level by its label
    (``x | vote=Labour``), the first option is mnlogit's reference and the options'
    order is an ordered model's."""
    outcomes = {m.outcome for m in study.models if family_of(m.family).categorical}
    return tuple(item for item in study.items if item.name in outcomes)


def formula_study(
    formula: str,
    human_df: pd.DataFrame,
    *,
    declared: Study | None,
    family: str,
    cov: str,
    items: Sequence[str] | None,
) -> Study:
    """A one-model study of the outcome and ``items``.

    Each item is the one the simulator's own study declares under that name (its
    question and options, which an LLM simulator needs), or else one observed in the
    human data (``_observed_item``).
    """
    spec = family_of(family)
    check_cov(cov)
    missing = sorted(formula_variables(formula) - set(human_df.columns))
    if missing:
        raise FormulaError(
            f"formula {formula!r} names column(s) not in the human data: "
            f"{_named(missing, human_df.columns)}"
        )
    names = list(dict.fromkeys([outcome_of(formula), *(items or ())]))
    absent = [n for n in names if n not in human_df.columns]
    if absent:
        raise DataError(
            f"item(s) {_named(absent, human_df.columns)} are not columns of the human data"
        )
    known = set(declared.item_names) if isinstance(declared, Study) else set()
    outcome = human_df[names[0]]
    numbered = spec.outcome == "count" or (
        spec.outcome == "number" and outcome.nunique() > 2
    )
    chosen = tuple(
        declared.item(name)
        if name in known
        else _observed_item(human_df[name], number=numbered and name == names[0])
        for name in names
    )
    check_codes(human_df, chosen, what="the human data")
    persona = tuple(c for c in human_df.columns if c not in names)
    return Study(items=chosen, persona=persona, models=(Model(formula, family, cov),))


def _observed_item(column: pd.Series, *, number: bool) -> Item:
    """The item of a human column in formula mode, where nothing declares its scale.

    The outcome of a linear or count model (``number``) is an open number item, whole
    if its values are, so a simulator's answer the humans never gave (a 3 on a 0-10
    scale nobody chose, a count above theirs, a new continuous value) is compared, not
    refused; so is a column of more than ``MAX_OBSERVED_OPTIONS`` distinct values, or
    of numbers that are not all whole. Any other column's options are the humans'
    values: a factor's or a categorical outcome's levels, an item's answers as a
    scoring simulator ranks them.
    """
    values = pd.to_numeric(column.dropna(), errors="coerce")
    if values.isna().any() or not len(values):
        raise DataError(
            f"item {column.name!r} must hold numeric answer codes (got {column.dtype} values)"
        )
    codes = sorted(set(values.astype(float).tolist()))
    whole = all(float(c).is_integer() for c in codes)
    if number or len(codes) > MAX_OBSERVED_OPTIONS or not whole:
        return Item(
            name=str(column.name), text=str(column.name), number=Number(whole=whole)
        )
    return Item(
        name=str(column.name),
        text=str(column.name),
        options={f"{c:g}": int(c) if float(c).is_integer() else c for c in codes},
    )


def subgroup_levels(column: pd.Series, *, subgroup: str) -> tuple[Any, ...]:
    """The subgroup's levels in the human data; an empty declared level is an error."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        counts = column.value_counts(sort=False)
        empty = [str(level) for level, n in counts.items() if n == 0]
        if empty:
            raise DataError(
                f"subgroup {subgroup!r} has level(s) with no human respondents: {', '.join(empty)}"
            )
        return tuple(counts.index)
    levels = tuple(sorted(column.dropna().unique(), key=str))
    if not levels:
        raise DataError(
            f"subgroup {subgroup!r} has no non-missing values in the human data"
        )
    return levels
