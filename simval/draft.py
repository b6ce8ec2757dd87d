"""A first study.yaml drafted from a labelled survey file (``simval init``).

The draft takes what the file already knows, so a researcher edits rather than
transcribes: each item's options and codes from its value labels, its non-answers
("Don't know", "Refused", negative codes apart from the scale, unlabelled codes set
apart above it such as 8, 9 beside 1-5, SPSS's declared missing values) under
``missing:``, persona columns with the labels a prompt shows, and a commented formula
to finish. What it guessed (which columns are items, which are persona, roles,
families, the template's outcome) is said in comments beside each guess. The draft
loads with ``Study.from_yaml`` and passes ``check_data`` on the file it came from.
"""

from __future__ import annotations

import itertools
import json
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from simval.data import Survey, read_survey
from simval.errors import DataError
from simval.study import MAX_SCORED_VALUES, Study, plain_number, study_from_dict

PERSONA_NAMES = re.compile(
    r"^(age|age_?(group|band|cat)|agegrp|sex|gender|race|ethnicity|race_?eth\w*|"
    r"hispanic|educ\w*|edu|degree|income|faminc\w*|inc|region|state|inputstate|"
    r"country|province|county|district|politic\w*|"
    r"party\w*|pid\d*|ideo\w*|relig\w*|marital|married|employ\w*|occup\w*|urban\w*|"
    r"rural|birthyr|birth_?year|yob|child\w*|kids|lang\w*|citizen\w*|cohort)$",
    re.IGNORECASE,
)
"""Column names taken for persona (who the respondent is) rather than items."""

ID_NAMES = re.compile(
    r"^(respondent|id|caseid|case_?id|resp_?id|response_?id|uid|\w+_id)$", re.IGNORECASE
)
WEIGHT_NAMES = re.compile(
    r"^(weights?|wt|wgt|pweight|\w+_weight|weight_\w+)$", re.IGNORECASE
)
TREATMENT_NAMES = re.compile(
    r"^(arm|treat\w*|condition|cond|group|version|vignette)$", re.IGNORECASE
)
MISSING_LABELS = re.compile(
    r"don'?t know|do not know|\bdk\b|refus|skipped|not asked|no answer|inapplicable|"
    r"not applicable|\bn/?a\b|missing|prefer not|declined|no response",
    re.IGNORECASE,
)
"""Value labels of non-answers, declared under an item's ``missing:``."""

JINJA_KEYWORDS = frozenset(
    ("and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "loop")
)
"""Names a Jinja2 expression reads as its own words, not as a persona column."""

PERSONA_TEXT_CHARS = 4_000
"""The most characters of labels the drafted persona_text spells out (a study's
persona_text is at most 5,000); a persona column past them shows its codes."""

QUANTITY_SPAN = 100
"""A number column without labels whose answers span more than this (wider than a 0-100
thermometer) is a quantity (a count, an amount, a size), taken for persona, not an item."""

NON_ANSWER_CODE = re.compile(r"^(9*[6-9]|([6-9])\2+)$")
"""How survey files spell non-answer codes above a scale: 6-9, 96-99, 996-999, 77, 88..."""

FACTOR_LEVELS = 12
"""A persona column of whole codes spanning at most this many values (region 1-5, educ
1-4) goes in the model template as C(...), a factor; a wider one as a number."""

NUMBER_NAMES = re.compile(
    r"^(age|birthyr|birth_?year|yob|years?\w*|child\w*|kids|hh_?size|household_?size|"
    r"n_\w+|num_\w+|\w+_count)$",
    re.IGNORECASE,
)
"""Persona columns that are counts or ages, numbers in a formula however few values."""

TEXT_PERSONA_LEVELS = 20
"""A text column with at most this many distinct values is taken for persona text; one
with more is free text and left out."""


@dataclass(frozen=True)
class Draft:
    """A drafted study: the YAML text (with its comments), the study it loads as, the
    survey it came from and the columns left out, each with why."""

    text: str
    study: Study
    survey: Survey
    left_out: dict[str, str]


def draft_study(data: str | Path) -> Draft:
    """Draft a study from the survey file ``data`` (see ``simval.data.read_survey``),
    checked to load and to pass ``check_data`` on that file's respondents."""
    survey = read_survey(data)
    frame = survey.frame
    if len(frame) == 0:
        raise DataError(f"{data} has a header but no respondents (no rows)")
    items, persona, left_out, hints, guesses = [], [], {}, {}, {}
    for column in frame.columns:
        role, why = _kind(survey, column)
        if role == "item":
            entry = _item(survey, column)
            if entry is None:
                left_out[column] = "no answer codes left once its missing codes are out"
            else:
                items.append(entry)
        elif role == "persona":
            persona.append(column)
            if why:
                guesses[column] = why
        else:
            left_out[column] = why
            if role in ("weight", "treatment"):
                hints[role] = column
    if not items:
        raise DataError(
            f"{data}: no column looks like a survey item (labelled answer codes or a "
            "few whole numbers); write the study by hand (docs/study.md)"
        )
    text = _yaml(
        survey,
        items=items,
        persona=persona,
        left_out=left_out,
        hints=hints,
        guesses=guesses,
    )
    study = study_from_dict(yaml.safe_load(text))
    study.check_data(frame.drop(columns="respondent", errors="ignore"), what=str(data))
    return Draft(text=text, study=study, survey=survey, left_out=left_out)


def write_draft(data: str | Path, *, out_dir: str | Path) -> tuple[Path, Draft]:
    """Draft the study of ``data`` into ``out_dir``/study.yaml, never over an existing
    file; return the path and the draft."""
    path = Path(out_dir) / "study.yaml"
    if path.exists():
        raise DataError(f"{path} already exists; draft into another folder")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise DataError(
            f"{out_dir} is a file, not a folder; name a folder for study.yaml"
        )
    draft = draft_study(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(draft.text, encoding="utf-8")
    return path, draft


def _kind(survey: Survey, column: str) -> tuple[str, str]:
    """What a column is taken for (item, persona, id, weight, treatment, skip) and why:
    a number column without labels wider than QUANTITY_SPAN is persona (a quantity)."""
    values = survey.frame[column]
    numeric = pd.api.types.is_numeric_dtype(values)
    name = re.sub(r"[\s.\-]+", "_", str(column).strip())  # "age group" as age_group
    if values.isna().all():
        return "skip", "every value is missing"
    if ID_NAMES.match(name):
        return "id", "an identifier (a respondent column becomes the index)"
    if WEIGHT_NAMES.match(name) and numeric:
        return "weight", "looks like a survey weight (the weight: line below)"
    if TREATMENT_NAMES.match(name):
        return "treatment", "looks like an experimental arm (the treatment: line below)"
    if PERSONA_NAMES.match(name):
        return "persona", ""
    if not numeric:
        if values.nunique() <= TEXT_PERSONA_LEVELS:
            return "persona", ""
        return "skip", "free text"
    if column in survey.value_labels:
        return "item", ""
    if values.nunique() == len(values) and len(values) > MAX_SCORED_VALUES:
        return "id", "a different number on every row (an identifier?)"
    seen = _distinct(survey, column)
    answers = [c for c in seen if c not in _set_apart(seen)]
    if answers and answers[-1] - answers[0] > QUANTITY_SPAN:
        return "persona", (
            f"taken for persona, not an item: numbers from {plain_number(answers[0])} "
            f"to {plain_number(answers[-1])} without labels, wider than a rating scale "
            "(a count or an amount?); list it under items: if respondents answer it"
        )
    return "item", ""


@dataclass(frozen=True)
class _Item:
    name: str
    text: str
    options: dict[str, float]
    missing: dict[str, float]
    number: dict[str, float | bool] | None
    notes: tuple[str, ...]
    levels: int


def _item(survey: Survey, column: str) -> _Item | None:
    """An item from a column: options from its value labels (or a number scale when
    the labels name a few points of a wide range, or there are none), non-answers
    under missing, codes the labels do not name listed as options to name."""
    values = survey.frame[column].dropna()
    labels = survey.value_labels.get(column, {})
    declared = set(survey.user_missing.get(column, ()))
    notes = []
    text = survey.variable_labels.get(column)
    if text is None:
        notes.append("the file gives no question text: write it")
    seen = sorted({float(v) for v in values} | {float(c) for c in labels})
    missing_codes = [
        c
        for c in seen
        if _is_missing(c, labels.get(_key(c), ""), seen=seen, declared=declared)
    ]
    rest = [c for c in seen if c not in missing_codes]
    gap = [c for c in _gap_codes(rest) if _key(c) not in labels]
    if gap:
        notes.append(
            f"code(s) {', '.join(plain_number(c) for c in gap)} lie apart above the "
            f"other answers ({plain_number(rest[0])} to "
            f"{plain_number(rest[-len(gap) - 1])}), unlabelled: taken for non-answers "
            "(Don't know, Refused), as such codes usually are; move them if they are "
            "answers"
        )
    missing_codes = sorted(missing_codes + gap)
    answers = [c for c in seen if c not in missing_codes]
    if not answers:
        return None
    unlabelled = [c for c in answers if _key(c) not in labels]
    missing = _unique(
        {
            labels.get(_key(c), f"Missing {plain_number(c)}"): c for c in missing_codes
        }.items()
    )
    wide = len(answers) > MAX_SCORED_VALUES and len(unlabelled) > len(answers) / 2
    if wide or not labels:
        return _number_item(column, text, answers=answers, missing=missing, notes=notes)
    if unlabelled:
        notes.append(
            f"code(s) {', '.join(plain_number(c) for c in unlabelled)} have no label in the file: name them"
        )
    options = _unique(
        ((labels.get(_key(c), plain_number(c)), c) for c in answers),
        taken=set(dict(missing)),
    )
    return _Item(
        column,
        text or column,
        dict(options),
        dict(missing),
        None,
        tuple(notes),
        levels=len(options),
    )


def _number_item(
    column: str,
    text: str | None,
    *,
    answers: list[float],
    missing: list[tuple[str, float]],
    notes: list[str],
) -> _Item:
    """A number item on the range its answers cover; a non-answer code inside that
    range counts as an answer (a number scale's missing codes lie off it)."""
    low, high = min(answers), max(answers)
    off_scale = {label: code for label, code in missing if not low <= code <= high}
    whole = all(float(c).is_integer() for c in answers)
    notes.append(
        "few or no value labels: a number item on the range the data covers; widen "
        "it to the question's scale"
    )
    number = {"min": _key(low), "max": _key(high), "whole": whole}
    return _Item(
        column, text or column, {}, off_scale, number, tuple(notes), len(answers)
    )


def _is_missing(code: float, label: str, *, seen: list[float], declared: set) -> bool:
    """A non-answer: declared missing by the file, labelled as one, or a negative code
    apart from the scale (-8 beside 1..5, not -1 in -1, 0, 1)."""
    if code in declared or MISSING_LABELS.search(label):
        return True
    if code >= 0:
        return False
    above = [c for c in seen if c > code]
    return not above or min(above) - code > 1


def _gap_codes(seen: list[float]) -> list[float]:
    """Whole codes set apart above the others, as surveys code non-answers (8, 9 beside
    1-5; 98, 99 beside 1-4; 998, 999 beside 0-100): up to three, each spelled like one
    (NON_ANSWER_CODE), above a gap of two or more that is wider than every step below
    it (so 7 in 1-7 is an answer, and so is 250000 among community sizes)."""
    if not all(float(c).is_integer() for c in seen):
        return []
    for count in (3, 2, 1):
        below, codes = seen[:-count], seen[-count:]
        if len(below) < 2 or codes[0] <= 0:
            continue
        gap = codes[0] - below[-1]
        steps = [b - a for a, b in itertools.pairwise(below)]
        if (
            gap >= 2
            and gap > max(steps)
            and all(NON_ANSWER_CODE.match(str(int(c))) for c in codes)
        ):
            return codes
    return []


def _set_apart(seen: list[float]) -> list[float]:
    """Codes of an unlabelled column that read as non-answers: negative ones apart from
    the scale and whole ones set apart above it."""
    negative = [c for c in seen if _is_missing(c, "", seen=seen, declared=set())]
    rest = [c for c in seen if c not in negative]
    return negative + _gap_codes(rest)


def _unique(pairs, *, taken: set | None = None) -> list[tuple[str, float]]:
    """(label, code) pairs with each label made unique by its code where repeated."""
    taken = set(taken or ())
    out = []
    for label, code in pairs:
        label = str(label).strip() or plain_number(code)
        if label in taken:
            label = f"{label} ({plain_number(code)})"
        taken.add(label)
        out.append((label, _key(code)))
    return out


def _key(code: float) -> float:
    return int(code) if float(code).is_integer() else float(code)


def _yaml(
    survey: Survey,
    *,
    items: list[_Item],
    persona: list[str],
    left_out: dict,
    hints: dict,
    guesses: dict,
) -> str:
    """The draft's text: a header on what was guessed, the items, the persona and its
    text, and the commented models and subgroups to finish."""
    frame = survey.frame
    lines = [
        (
            f"# Drafted by `simval init` from {Path(survey.path).name} ({len(frame)} "
            f"respondents, {len(frame.columns)} columns): EDIT IT before running anything."
        ),
        "# Taken from the file: each item's options and codes (its value labels), its",
        "# non-answers under missing: (labels such as Don't know / Refused, negative codes",
        "# apart from the scale, SPSS's declared missing values), its text (the variable",
        "# label: often shortened, so give the question's full wording).",
        "# Guessed (check each): which columns are items and which persona (by name: age,",
        "# sex, educ, party, ...; text columns are persona), every role (other: set belief,",
        "# action or outcome), and the families in the model template below.",
        "# Guessed without labels: whole codes set apart above a scale (8, 9 beside 1-5;",
        "# 98, 99 beside 1-4) or negative beside it are non-answers (missing:); a number",
        "# column wider than 0-100 (a count, an amount) is persona, not an item.",
    ]
    if survey.reading_note:
        lines.append(f"# {survey.reading_note}")
    if left_out:
        lines.append("# Left out:")
        lines += [f"#   {column}: {why}" for column, why in left_out.items()]
    if "weight" in hints:
        lines.append(
            f"# weight: {hints['weight']}   # uncomment if these are sampling weights"
        )
    if "treatment" in hints:
        lines.append(
            f"# treatment: {hints['treatment']}   # uncomment for an experiment, and give "
            "each arm its vignette text (vignettes:)"
        )
    lines.append("items:")
    for item in items:
        lines += [f"  # {note}" for note in item.notes]
        lines.append(f"  - name: {_q(item.name)}")
        lines.append(f"    text: {_q(item.text)}")
        lines.append("    role: other")
        if item.number is not None:
            lines.append(f"    number: {_flow(item.number)}")
        else:
            lines.append(f"    options: {_flow(item.options)}")
        if item.missing:
            lines.append(f"    missing: {_flow(item.missing)}")
    if persona:
        lines += _persona_lines(survey, persona, guesses=guesses)
    lines += _model_lines(survey, items=items, persona=persona)
    return "\n".join(lines) + "\n"


def _persona_lines(
    survey: Survey, persona: list[str], *, guesses: dict[str, str]
) -> list[str]:
    """The persona columns and a persona_text showing each one's label where it has
    value labels (the number stays in the data, for the formulas)."""
    lines = [
        *(f"# {column}: {why}" for column, why in guesses.items()),
        f"persona: [{', '.join(_q(c) for c in persona)}]",
        "# persona_text: what the prompt says about a respondent. A labelled column shows",
        '# its label ({1: "Male", 2: "Female"}.get(sex, sex)), its code stays a number',
        "# for the formulas; reword it as a sentence if you like (docs/study.md).",
    ]
    fields = []
    for column in persona:
        if not _usable(column):
            lines.append(
                f"# {column}: not a name a template or formula can use; rename the "
                "column to show it in persona_text"
            )
            continue
        described = survey.variable_labels.get(column, column)
        if len(described) > 40 or re.search(r"[{}%#]", described):
            described = column
        labels = survey.value_labels.get(column, {})
        mapping = ", ".join(
            f"{plain_number(c)}: {json.dumps(l, ensure_ascii=False)}"
            for c, l in labels.items()
        )
        if labels and len(mapping) + sum(map(len, fields)) <= PERSONA_TEXT_CHARS:
            fields.append(
                f"{described}: {{{{ {{{mapping}}}.get({column}, {column}) }}}}"
            )
            continue
        fields.append(f"{described}: {{{{ {column} }}}}")
        if labels:
            lines.append(
                f"# {column}: {len(labels)} labels, too many to show in persona_text: "
                "the prompt shows its codes; add a column of its labels to show them"
            )
    if fields:
        lines.append("persona_text: >-")
        lines += [f"  {f};" for f in fields[:-1]] + [f"  {fields[-1]}"]
    for column in persona:
        labels = survey.value_labels.get(column, {})
        declared = set(survey.user_missing.get(column, ()))
        codes = [
            c
            for c in labels
            if _is_missing(c, labels[c], seen=list(labels), declared=declared)
        ]
        shown = "the prompt shows their label"
        if not labels and pd.api.types.is_numeric_dtype(survey.frame[column]):
            codes = _set_apart(_distinct(survey, column))
            shown = "a guess: unlabelled, set apart from the rest"
        if codes:
            lines.append(
                f"# {column}: code(s) {', '.join(plain_number(c) for c in codes)} mean no "
                f"answer ({shown}); a formula reads them as values: blank them in the "
                "data, or use the column as C(...)"
            )
    return lines


def _model_lines(
    survey: Survey, *, items: list[_Item], persona: list[str]
) -> list[str]:
    """A commented model and subgroups to edit: an item on the persona (those whose
    names a formula can use). The outcome is a labelled item (a question, not a count
    or an amount) with the fewest answers, else the number item with the fewest."""
    usable = [item for item in items if _usable(item.name)]
    persona = [c for c in persona if _usable(c)]
    if not usable:
        return ["# models: none drafted: no item's name can be used in a formula"]
    labelled = [item for item in usable if item.number is None]
    first = min(labelled or usable, key=lambda item: item.levels)
    family, why = "ols", "a number item"
    if first.number is None and len(first.options) > 2:
        family, why = "ologit", "ordered options"
    elif first.number is None and sorted(first.options.values()) == [0, 1]:
        family, why = "logit", "two options coded 0/1"
    elif first.number is None:  # logit needs 0/1; mnlogit is its logit on any codes
        family, why = "mnlogit", "two options not coded 0/1 (as 0/1: logit)"
    kind = "the labelled item" if labelled else "the item"
    terms = [f"C({c})" if _factor(survey, c) else c for c in persona] or ["1"]
    groups = [c for c in persona if 1 < survey.frame[c].nunique() <= 6]
    lines = [
        "# models:   # the regressions of your study (uncomment and edit): each one is",
        "#           # fitted to the humans and to every simulator, and compared",
        (
            f"#   # outcome: {first.name}, {kind} with the fewest answers "
            f"({first.levels}): a guess, any item can be one; C(...) for labelled, "
            "text or few-coded persona"
        ),
        f"#   - formula: {first.name} ~ {' + '.join(terms)}",
        f"#     family: {family}   # guessed: {why}",
        "#     cov: HC1",
    ]
    if groups:
        lines.append(
            f"# subgroups: [{', '.join(map(_q, groups))}]   # persona columns to compare within"
        )
    return lines


def _factor(survey: Survey, column: str) -> bool:
    """Whether a persona column enters a formula as a factor, C(column): labelled or
    text, or whole codes spanning at most FACTOR_LEVELS values (region 1-5; non-answer
    codes set apart aside) unless named like a count or an age."""
    values = survey.frame[column]
    if column in survey.value_labels or not pd.api.types.is_numeric_dtype(values):
        return True
    seen = _distinct(survey, column)
    codes = [c for c in seen if c not in _set_apart(seen)]
    return (
        not NUMBER_NAMES.match(column)
        and bool(codes)
        and all(c.is_integer() for c in codes)
        and codes[-1] - codes[0] < FACTOR_LEVELS
    )


def _distinct(survey: Survey, column: str) -> list[float]:
    """A numeric column's distinct values, in order."""
    return sorted({float(v) for v in survey.frame[column].dropna()})


def _usable(name: str) -> bool:
    """Whether a formula and a Jinja2 template can name the column as it is."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in JINJA_KEYWORDS
    )


def _q(text: str) -> str:
    """A YAML scalar that reads back as this exact text: a plain name as it is, other
    text in JSON's quotes (which are YAML's)."""
    text = str(text)
    if re.fullmatch(r"[A-Za-z_]\w*", text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _flow(mapping: dict) -> str:
    """A one-line YAML mapping: quoted labels, plain numbers and booleans."""
    parts = []
    for key, value in mapping.items():
        shown = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else plain_number(value)
        )
        parts.append(f"{_q(key)}: {shown}")
    return "{" + ", ".join(parts) + "}"
