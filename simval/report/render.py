"""The replication report: one self-contained HTML page and its Markdown twin.

``build_sections`` reads the validations and nothing else (each carries its study,
option shares, decisions and notes; it never runs a model) and returns the report's
sections; the HTML and Markdown templates render the same sections, so the two files
always say the same thing, in the same order: the answer first (the decisions, the
caveat, the headline table), then the figures, then the study's declaration and what
was run. The HTML embeds its CSS and its figures (PNG ``data:`` URIs) and has no script
and no external reference; the Markdown links PNG files written to ``<stem>_figures/``
beside it by relative paths, so no path of the machine is written into either file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from simval.comparison import MIN_EVENTS_PER_PARAMETER
from simval.report import inference, plots
from simval.report.blocks import (
    Block,
    Bullets,
    Callout,
    Cell,
    Figure,
    Heading,
    Preformatted,
    Section,
    Table,
    Text,
    cell,
    interval,
    number,
    slug,
)
from simval.report.leaderboard import (
    check_validations,
    headline_table,
    leaderboard_marks,
    legend,
)
from simval.report.pages import (
    IDENTITY_FIELDS,
    described,
    identity_cells,
    study_blocks,
    suffixed,
    write_html_page,
    write_markdown_page,
)
from simval.results import (
    CONSISTENT,
    HUMAN_ROW,
    INCONSISTENT,
    MAX_FAILED_SHARE,
    OVERALL,
    REFERENCE_ROW,
    UNDETERMINED,
    Validation,
    is_finding,
    verdict_sentence,
)
from simval.study import Study

if TYPE_CHECKING:
    from simval.rectify import Rectified

HUMAN = HUMAN_ROW
"""The series name of the human data in figures and tables."""

CAVEAT = (
    "Synthetic answers are no substitute for inference on humans. "
    f"{REFERENCE_ROW}: a perfect simulator; {HUMAN_ROW}: the humans' level."
)
"""The one-line caveat under the decisions, above the headline table (so both are on
the first screen): what the report cannot license, and what its two reference columns
are."""

TITLE = "simval replication report"

SECTION_TITLES = (
    "Verdict",
    "Headline table",
    "Coefficients",
    "Answer distributions",
    "Subgroup alignment",
    "Variance",
    "Belief–action coherence",
    "Heterogeneity",
    "The study",
    "Simulators compared",
)
"""The report's sections, in order, in both the HTML and the Markdown: the decisions
and the headline numbers on the first screen, the figures, then the declaration."""


def write_report(
    validations: Validation | Mapping[str, Validation],
    *,
    out: str | Path,
    title: str = TITLE,
    notes: str | Sequence[str] = (),
    references: Sequence[str] = (),
    rectified: Mapping[str, Rectified] | None = None,
) -> tuple[Path, Path]:
    """Write ``out`` (a self-contained .html file) and its Markdown twin; return both paths.

    ``validations`` maps a display name to a Validation of that simulator against the
    same humans, study and seed, or is one Validation (named by its ``simulator``);
    everything the report shows comes from them.
    ``references`` names the validations that are references (e.g. the resampling
    reference): shown beside the others, never marked best. The twin has the same stem
    with suffix .md, and its figures are PNG files in ``<stem>_figures/`` beside it.
    ``rectified``: simulator name -> its ``simval.rectify`` result on these humans,
    shown in a "Valid inference" section after the coefficients.
    """
    html_path = suffixed(out, ".html")
    sections = build_sections(
        validations, references=references, notes=notes, rectified=rectified,
        folder=html_path.parent,
    )  # fmt: skip
    write_html_page(sections, path=html_path, title=title)
    md_path = html_path.with_suffix(".md")
    write_markdown_page(sections, path=md_path, title=title)
    return html_path, md_path


def write_html(
    validations: Validation | Mapping[str, Validation],
    *,
    out: str | Path,
    title: str = TITLE,
    notes: str | Sequence[str] = (),
    references: Sequence[str] = (),
) -> Path:
    """Only the self-contained HTML report (keywords as ``write_report``)."""
    path = suffixed(out, ".html")
    sections = build_sections(
        validations, references=references, notes=notes, folder=path.parent
    )
    write_html_page(sections, path=path, title=title)
    return path


def write_markdown(
    validations: Validation | Mapping[str, Validation],
    *,
    out: str | Path,
    title: str = TITLE,
    notes: str | Sequence[str] = (),
    references: Sequence[str] = (),
) -> Path:
    """Only the Markdown report and its figure folder (keywords as ``write_report``)."""
    path = suffixed(out, ".md")
    sections = build_sections(
        validations, references=references, notes=notes, folder=path.parent
    )
    write_markdown_page(sections, path=path, title=title)
    return path


def build_sections(
    validations: Validation | Mapping[str, Validation],
    *,
    references: Sequence[str] = (),
    notes: str | Sequence[str] = (),
    rectified: Mapping[str, Rectified] | None = None,
    folder: str | Path | None = None,
) -> tuple[Section, ...]:
    """Every section of the report, in ``SECTION_TITLES`` order, from the validations alone
    (and, with ``rectified``, a "Valid inference" section after the coefficients, every
    human's estimates beside).

    They must share one study and one set of humans (``check_validations``);
    ``references`` as in ``write_report``; ``notes`` are listed under the headline table.
    ``folder``: where the report is written (default: the current folder); a
    simulator's model and adapter folders are shown relative to it.
    """
    validations = _named(validations, folder=folder)
    check_validations(validations, references=references)
    study = next(iter(validations.values())).study
    colors = plots.colors_for([HUMAN, *validations])
    blocks = (
        _verdict_blocks(validations),
        _headline_blocks(validations, references=references, notes=_notes(notes)),
        _coefficient_blocks(validations, colors=colors),
        _distribution_blocks(validations, colors=colors),
        _subgroup_blocks(validations),
        _variance_blocks(validations, colors=colors),
        _coherence_blocks(validations, colors=colors),
        _heterogeneity_blocks(validations, colors=colors),
        study_blocks(study),
        _simulator_blocks(validations, folder=folder),
    )
    sections = [Section(t, tuple(b)) for t, b in zip(SECTION_TITLES, blocks)]
    if rectified:
        reference = _human_estimates(next(iter(validations.values())))
        at = SECTION_TITLES.index("Coefficients") + 1
        sections.insert(
            at,
            Section(
                inference.TITLE,
                tuple(inference.inference_blocks(rectified, reference=reference)),
            ),
        )
    return tuple(sections)


def _named(
    validations: Validation | Mapping[str, Validation], *, folder: str | Path | None
) -> Mapping[str, Validation]:
    """One Validation as a mapping that names it by its simulator (its identity, paths
    relative to ``folder``, else its repr), else as given."""
    if isinstance(validations, Validation):
        name = described(
            validations.simulator, identity=validations.identity, folder=folder
        )
        return {name: validations}
    return validations


def _human_estimates(validation: Validation) -> pd.DataFrame:
    """Every human's estimates and intervals (all respondents) per formula and term."""
    rows = _overall_rows(validation.coefficients)
    return rows.rename(
        columns={"human_estimate": "estimate", "human_ci_low": "ci_low",
                 "human_ci_high": "ci_high"}
    )[["formula", "term", "estimate", "ci_low", "ci_high"]]  # fmt: skip


def _notes(notes: str | Sequence[str]) -> list[str]:
    """The notes as a list; a single string is one note."""
    return [notes] if isinstance(notes, str) else [str(n) for n in notes]


# --- sections -----------------------------------------------------------------------


def _simulator_blocks(
    validations: Mapping[str, Validation], *, folder: str | Path | None
) -> list[Block]:
    """Who was compared: each simulator's model, adapter, dtype, mode (and API) with
    folders relative to the report, on how many humans, with an example prompt per
    item; the simulators' nonresponse, unparseable answers and warnings; the package
    versions and which human data it was."""
    first = next(iter(validations.values()))
    blocks: list[Block] = [
        _identity_table(validations, folder=folder),
        Table(
            (
                "name",
                "human respondents",
                "replicates",
                "alpha",
                "seed",
                "smallest subgroup cell counted",
            ),
            tuple(
                (
                    Cell(name),
                    cell(v.n_human, digits=0),
                    cell(v.reps, digits=0),
                    cell(v.alpha),
                    Cell("none" if v.seed is None else str(v.seed), numeric=True),
                    cell(v.min_subgroup_n, digits=0),
                )
                for name, v in validations.items()
            ),
        ),
        Text(
            "Each replicate draws as many personas as there are humans, with replacement, "
            "and asks the simulator to answer them; simulated figures are means over the "
            "replicates. The fresh-sample reference "
            f"({first.notes.get('reference', 'whole-row double bootstrap')}) varies "
            "about the humans as a perfect simulator's replicates would, one answering "
            "like fresh respondents from the human population: its values are the "
            f"{REFERENCE_ROW} column of the headline table."
        ),
        *_prompt_blocks(validations),
    ]
    items = list(first.study.item_names)
    nonresponse = {n: v.notes.get("nonresponse", {}) for n, v in validations.items()}
    blocks.append(
        Table(
            ("nonresponse (share of answers missing)", *validations),
            tuple(
                (
                    Cell(item),
                    *(_percent(nonresponse[n].get(item, np.nan)) for n in validations),
                )
                for item in items
            )
            + (
                (
                    Cell("unparseable answers (count)"),
                    *(
                        cell(sum(v.notes.get("unparseable", {}).values()))
                        for v in validations.values()
                    ),
                ),
            ),
        )
    )
    if first.notes.get("missing_answers"):
        blocks.append(Text(first.notes["missing_answers"], lead="Human answers"))
    if first.notes.get("missing_personas"):
        blocks.append(Text(first.notes["missing_personas"], lead="Persona values"))
    if first.notes.get("weights"):
        blocks.append(Text(first.notes["weights"], lead="Survey weights"))
    warnings = tuple(
        Text(str(w), lead=name)
        for name, v in validations.items()
        for w in v.notes.get("warnings", ())
    )
    if warnings:
        blocks += [
            Text("what the validations flagged, per simulator.", lead="Warnings")
        ]
        blocks.append(Bullets(warnings))
    else:
        blocks.append(Text("No warnings.", lead="Warnings"))
    versions = ", ".join(f"{k} {v}" for k, v in first.versions.items())
    blocks.append(
        Text(
            f"{versions}. Human data SHA-256 {first.fingerprint[:16]}… (the same for "
            "every simulator compared).",
            lead="Computed with",
        )
    )
    return blocks


def _identity_table(
    validations: Mapping[str, Validation], *, folder: str | Path | None
) -> Table:
    """A row per simulator: its model, adapter, dtype and mode (the API for a served
    model), folders relative to ``folder``; a simulator without an identity (the
    resampling reference) by its repr."""
    shown = {
        name: identity_cells(v.identity, folder=folder)
        for name, v in validations.items()
    }
    keys = [
        key
        for key in IDENTITY_FIELDS
        if key != "api" or any(key in cells for cells in shown.values())
    ]
    return Table(
        ("name", *(IDENTITY_FIELDS[key] for key in keys)),
        tuple(
            (
                Cell(name),
                *(
                    Cell(shown[name].get(key, "–"))
                    if shown[name]
                    else Cell(v.simulator if key == "model" else "–")
                    for key in keys
                ),
            )
            for name, v in validations.items()
        ),
    )


def _prompt_blocks(validations: Mapping[str, Validation]) -> list[Block]:
    """Per item, the prompt each simulator was shown for the first human respondent,
    once for the simulators shown the same text; nothing without prompts."""
    items = dict.fromkeys(i for v in validations.values() for i in v.prompts)
    if not items:
        return []
    blocks: list[Block] = [
        Text(
            "what each language model was shown for the first human respondent, per "
            "item, exactly as sent (chat template included); every respondent's prompt "
            "is built the same way from their persona.",
            lead="Example prompts",
        )
    ]
    for item in items:
        texts: dict[str, list[str]] = {}
        for name, v in validations.items():
            if item in v.prompts:
                texts.setdefault(v.prompts[item], []).append(name)
        blocks.extend(
            Preformatted(text, lead=f"{item} ({', '.join(names)})")
            for text, names in texts.items()
        )
    return blocks


def _headline_blocks(
    validations: Mapping[str, Validation],
    *,
    references: Sequence[str],
    notes: Sequence[str],
) -> list[Block]:
    """The headline metrics, value [CI] per simulator, the best marked, the references
    beside; then the user's notes and what the marks mean."""
    marks = leaderboard_marks(validations, references=references)
    blocks: list[Block] = [headline_table(validations, marks)]
    if notes:
        blocks.append(Bullets(tuple(Text(note) for note in notes)))
    blocks.append(Text(legend(validations, references=references)))
    return blocks


def _verdict_blocks(validations: Mapping[str, Validation]) -> list[Block]:
    """One sentence per formula and simulator: ``verdict_sentence`` of the validation's
    own ``verdicts`` row, so the report can only repeat the decision, never contradict it."""
    sentences = tuple(
        Text(verdict_sentence(row, simulator=name))
        for formula in _formulas(validations)
        for name, v in validations.items()
        for row in v.verdicts.to_dict("records")
        if row["formula"] == formula
    )
    if not sentences:
        return [
            Text(
                "The study declares no regression models, so there is nothing to decide."
            ),
            Callout(CAVEAT),
        ]
    return [Bullets(sentences), Callout(CAVEAT)]


def _decision_rules(validations: Mapping[str, Validation]) -> list[Block]:
    """How a decision is reached, and each formula's decision per simulator at a glance."""
    formulas = _formulas(validations)
    if not formulas:
        return []
    rows = {n: v.verdicts.set_index("formula") for n, v in validations.items()}
    alpha = next(iter(validations.values())).alpha
    return [
        Text(
            f"Would the study's regressions reach the same conclusions on the simulated "
            f"respondents? Over all respondents, intercept left out, at alpha = "
            f"{alpha:g}: {CONSISTENT} when every coefficient is shown to lie within its "
            "equivalence margin of the humans' (equivalence p below alpha); "
            f"{INCONSISTENT} when the joint Wald test rejects equal coefficients (an F "
            "reference with the humans' smallest Satterthwaite df, so it holds its level "
            "in small samples), or the model cannot be estimated on the simulated answers "
            f"in more than {MAX_FAILED_SHARE:.0%} of the replicates; {UNDETERMINED} "
            "otherwise, which is never read as agreement. Margins are standardised: per "
            "SD of a continuous term, per half the change between a dummy's two values, "
            "rare or common (Gelman 2008). The bound is what the data do show: every "
            "coefficient lies within it of the humans' (the smallest margin the "
            "equivalence test would accept). Where even identical coefficients could not "
            "be shown within the margin with these humans, consistent is not attainable "
            "and the table gives the humans that would make it so.",
            lead="Decisions",
        ),
        Table(
            ("formula", *validations),
            tuple(
                (
                    Cell(formula),
                    *(Cell(_decision(rows[n], formula)) for n in validations),
                )
                for formula in formulas
            ),
        ),
    ]


def _decision_table(validations: Mapping[str, Validation], formula: str) -> Table:
    """A row per simulator: the numbers behind its decision on ``formula``."""
    rows = {
        name: v.verdicts.set_index("formula").loc[formula]
        for name, v in validations.items()
        if formula in set(v.verdicts["formula"])
    }
    return Table(
        (
            "simulator",
            "decision",
            "Wald statistic",
            "Wald df (terms, denominator)",
            "Wald p",
            "equivalence p",
            "margin (standardised)",
            "bound (standardised)",
            "consistent attainable",
            "terms",
            "n human",
            "n simulated",
            "failed share",
        ),
        tuple(
            (
                Cell(name),
                Cell(str(row["decision"])),
                cell(row["wald_statistic"]),
                Cell(_wald_df(row)),
                _p_cell(row["wald_p_value"]),
                _p_cell(row["equivalence_p_value"]),
                cell(row["margin"]),
                cell(row["equivalence_bound"]),
                Cell(_attainable(row)),
                cell(row["n_terms"], digits=0),
                cell(row["nobs_human"], digits=0),
                cell(row["nobs_sim"], digits=0),
                _percent(row["failed_share"]),
            )
            for name, row in rows.items()
        ),
    )


def _wald_df(row: pd.Series) -> str:
    """The Wald test's degrees of freedom: terms, and the denominator's (∞: chi-squared)."""
    nu = row["wald_denominator_df"]
    return f"{number(row['wald_df'], digits=0)}, {number(nu, digits=0)}"


def _attainable(row: pd.Series) -> str:
    """Whether consistent could be shown at all, else the humans that would allow it."""
    if bool(row["consistent_attainable"]):
        return "yes"
    needed = row["humans_needed"]
    return f"no (about {needed:,.0f} humans)" if np.isfinite(needed) else "no"


def _coefficient_blocks(
    validations: Mapping[str, Validation], *, colors: Mapping[str, str]
) -> list[Block]:
    """How the decisions are made, then per formula: the numbers behind each decision,
    the differences synthetic − human with their CIs (a forest around 0), the human and
    simulated estimates, and the full coefficient table."""
    first = next(iter(validations.values()))
    level = f"{1 - first.alpha:.0%}"
    decided = set(_formulas(validations))
    blocks: list[Block] = [
        *_decision_rules(validations),
        Text(
            f"All respondents. The difference is the simulated estimate (mean over the "
            f"replicates) minus the human one, with its {level} CI; 0 is no difference. "
            "The margin is the smallest difference that matters, on the coefficient's "
            "scale, and the equivalence p tests that the difference lies within it. "
            "Coverage: the share of replicates whose difference CI contains 0 (nominal "
            f"{1 - first.alpha:g}). The figures leave out the intercept (not a finding of "
            "the study, and often on another scale); the tables keep it. Classes: + "
            "significant positive, − significant negative, 0 not significant (simulated: "
            "the replicates' commonest class; failed: the model could not be estimated)."
        ),
    ]
    for i, model in enumerate(first.study.models, start=1):
        frames = {
            name: _overall(v.coefficients, model.formula)
            for name, v in validations.items()
        }
        human = next((f for f in frames.values() if not f.empty), None)
        blocks.append(Heading(model.formula))
        if model.formula in decided:
            blocks.append(_decision_table(validations, model.formula))
        if human is None:
            blocks.append(Text("No coefficient estimates for this formula."))
            continue
        terms = list(human["term"])
        shown = [t for t in terms if is_finding(t)]
        if shown:
            differences = {name: _interval(f, "diff") for name, f in frames.items()}
            blocks.append(
                Figure(
                    f"{i:02d}-differences",
                    f"Simulated − human coefficients of {model.formula}, with their CIs "
                    "(all respondents; intercept left out).",
                    plots.forest(
                        shown,
                        differences,
                        colors=colors,
                        title=model.formula,
                        xlabel="simulated − human (bars: CI of the difference; 0: none)",
                    ),
                )
            )
            estimates = {HUMAN: _interval(human, "human")}
            estimates.update({name: _interval(f, "sim") for name, f in frames.items()})
            blocks.append(
                Figure(
                    f"{i:02d}-coefficients",
                    f"Human and simulated coefficients of {model.formula} (all "
                    "respondents; intercept left out; simulated: the mean estimate ± "
                    "the normal quantile times its mean standard error).",
                    plots.forest(shown, estimates, colors=colors, title=model.formula),
                )
            )
        blocks.append(_coefficient_table(terms, frames))
    return blocks


def _coefficient_table(terms: list[str], frames: Mapping[str, pd.DataFrame]) -> Table:
    """A row per term and simulator: the human and simulated estimates, the difference
    with its CI and p-value, the margin, the equivalence p, coverage and failed replicates."""
    indexed = {name: f.set_index("term") for name, f in frames.items() if not f.empty}
    rows = []
    for term in terms:
        for name, frame in indexed.items():
            if term not in frame.index:
                continue
            row = frame.loc[term]
            # n_reps counts the replicates that estimated the term, n_failed the others
            total = row["n_reps"] + row["n_failed"]
            failed = f"{number(row['n_failed'], digits=0)} of {number(total, digits=0)}"
            if row["n_failed"] and row.get("failure"):
                failed += f" ({row['failure']})"
            rows.append(
                (
                    Cell(term),
                    Cell(name),
                    _estimate_cell(row, "human"),
                    _estimate_cell(row, "sim"),
                    Cell(
                        interval(row["diff"], row["diff_ci_low"], row["diff_ci_high"]),
                        numeric=True,
                    ),
                    _p_cell(row["diff_p_value"]),
                    cell(row["margin"]),
                    _p_cell(row["equivalence_p_value"]),
                    cell(row["coverage"]),
                    Cell(failed, numeric=True),
                )
            )
    return Table(
        (
            "term", "simulator", "human estimate [CI]", "simulated estimate",
            "difference [CI]", "difference p", "margin", "equivalence p", "coverage",
            "failed replicates",
        ),
        tuple(rows),
    )  # fmt: skip


_CLASS_MARKS = {"positive": "+", "negative": "−", "null": "0", "failed": "failed"}


def _estimate_cell(row: pd.Series, prefix: str) -> Cell:
    """ "estimate [low, high] class" (human) or "estimate class" (simulated), or a dash."""
    estimate = row[f"{prefix}_estimate"]
    mark = _CLASS_MARKS.get(row[f"{prefix}_class"], "?")
    if pd.isna(estimate):
        return Cell("failed" if mark == "failed" else "–", numeric=True)
    if prefix == "human":
        text = interval(estimate, row["human_ci_low"], row["human_ci_high"])
    else:
        text = number(estimate)
    return Cell(f"{text} {mark}", numeric=True)


def _interval(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """estimate, low, high indexed by term from the coefficient table's human_*, sim_*
    or diff* columns."""
    lead = {"diff": "diff", "human": "human_estimate", "sim": "sim_estimate"}[prefix]
    columns = {lead: "estimate", f"{prefix}_ci_low": "low", f"{prefix}_ci_high": "high"}
    return frame.set_index("term")[list(columns)].rename(columns=columns).astype(float)


def _distribution_blocks(
    validations: Mapping[str, Validation], *, colors: Mapping[str, str]
) -> list[Block]:
    """Per item: the distances over all respondents, then the share of each option,
    human vs each simulator (the validations' ``shares``)."""
    first = next(iter(validations.values()))
    study = first.study
    distances = {
        n: _overall_items(v.distributions, study) for n, v in validations.items()
    }
    items = _item_order(study, first.shares["item"].unique())
    if not items:
        return [Text("No answer shares in the validations.")]
    blocks: list[Block] = [
        Text(
            "Jensen–Shannon distance (base 2, 0 = identical, 1 = disjoint) and ordinal "
            "distance (the earth mover's distance between the answer distributions, in "
            "option codes) between the human and the simulated answers, all respondents, "
            "means over replicates; then the share of each option among the non-missing "
            "answers (simulated: mean over replicates)."
        ),
        Table(
            (
                "item",
                *(f"{n}: JSD" for n in validations),
                *(f"{n}: ordinal distance" for n in validations),
            ),
            tuple(
                (
                    Cell(item),
                    *(cell(distances[n]["jsd"].get(item, np.nan)) for n in validations),
                    *(
                        cell(distances[n]["wasserstein"].get(item, np.nan))
                        for n in validations
                    ),
                )
                for item in items
            ),
        ),
    ]
    by_item = {
        item: study.item(item) if item in study.item_names else None for item in items
    }
    for i, (name, item) in enumerate(by_item.items(), start=1):
        rows = {n: v.shares[v.shares["item"] == name] for n, v in validations.items()}
        labels = list(rows[next(iter(rows))]["label"])
        codes = list(rows[next(iter(rows))]["code"])
        values = {HUMAN: rows[next(iter(rows))]["human"].astype(float).tolist()}
        values.update({n: r["sim"].astype(float).tolist() for n, r in rows.items()})
        text = item.text if item is not None else name
        blocks.append(Heading(f"{name}: {text}"))
        drawn = plots.grouped_bars(
            labels,
            values,
            colors=colors,
            ylabel="share of answers",
            title=f"{name}: {text}",
        )
        blocks.append(
            Figure(f"{i:02d}-distribution-{slug(name)}", f"Answers to {name}.", drawn)
        )
        blocks.append(
            Table(
                ("option", *values),
                tuple(
                    (
                        Cell(f"{label} ({number(code, digits=None)})"),
                        *(_percent(values[n][k]) for n in values),
                    )
                    for k, (label, code) in enumerate(zip(labels, codes))
                ),
            )
        )
    return blocks


def _subgroup_blocks(validations: Mapping[str, Validation]) -> list[Block]:
    """JSD per subgroup level and item (one heatmap panel per simulator), the level means
    and their gap, and the decision per formula in each subgroup level. Cells below the
    validations' minimum size are marked small in the tables and left out of the figure
    and the gap."""
    first = next(iter(validations.values()))
    cells = {n: _subgroup_rows(v.distributions) for n, v in validations.items()}
    if all(c.empty for c in cells.values()):
        return [
            Text("No subgroups: the per-subgroup distances need declared subgroups.")
        ]
    order = list(dict.fromkeys(next(iter(cells.values()))["group"]))
    means = {n: _by_group(v.subgroup_jsd, "jsd") for n, v in validations.items()}
    sizes = _by_group(first.subgroup_jsd, "n_human").to_dict()
    small = {g for g, s in _by_group(first.subgroup_jsd, "small").items() if s}
    items = _item_order(first.study, next(iter(cells.values()))["item"].unique())
    counted = [g for g in order if g not in small]
    panels = {
        n: c[~c["small"]]
        .pivot_table(
            index="group", columns="item", values="jsd", sort=False, dropna=False
        )
        .reindex(index=counted, columns=items)
        .rename(index=lambda g: _sized(g, sizes.get(g)))
        for n, c in cells.items()
    }
    blocks: list[Block] = [
        Text(
            "Jensen–Shannon distance between human and simulated answers within each "
            f"subgroup level; means over replicates. Levels with fewer than "
            f"{first.min_subgroup_n} human respondents are small: marked in the tables, "
            "left out of the figure and of the gap."
        )
    ]
    if counted:
        drawn = plots.heatmap(
            panels,
            title="Jensen–Shannon distance by subgroup level and item",
            label="JSD",
        )
        blocks.append(
            Figure(
                "subgroup-jsd",
                "JSD per subgroup level (rows, n: its human respondents) and item "
                "(columns); small levels left out.",
                drawn,
            )
        )
    rows = [
        (
            Cell(
                f"{g} (small)" if g in small else g, mark="small" if g in small else ""
            ),
            cell(sizes.get(g, np.nan), digits=0),
            *(_small_cell(means[n].get(g, np.nan), small=g in small) for n in cells),
        )
        for g in order
    ]
    rows.append(
        (
            Cell("gap (worst − best)"),
            Cell("", numeric=True),
            *(cell(v.summary()["subgroup_jsd_gap"]) for v in validations.values()),
        )
    )
    blocks.append(
        Table(
            ("subgroup level", "n human", *(f"{n}: mean JSD" for n in cells)),
            tuple(rows),
        )
    )
    blocks.extend(_subgroup_decisions(validations, sizes=sizes))
    return blocks


def _subgroup_decisions(
    validations: Mapping[str, Validation], *, sizes: Mapping[str, float]
) -> list[Block]:
    """A row per formula and subgroup level: each simulator's decision with its
    Holm-adjusted Wald p; small cells marked; cells whose human model could not be
    estimated say so, their reasons listed below the table."""
    recovery = {
        n: v.recovery[v.recovery["subgroup"] != OVERALL].set_index(
            ["formula", "subgroup", "level"]
        )
        for n, v in validations.items()
    }
    first = next(iter(recovery.values()))
    if first.empty:
        return []
    rows, failures = [], []
    for key, row in first.iterrows():
        formula, subgroup, level = key
        small, group = bool(row["small"]), _group_label(subgroup, level)
        failure = row["failure"] if isinstance(row["failure"], str) else ""
        if failure:
            failures.append(Text(failure, lead=f"{formula}, {group}"))
        n = row["n_human"] if pd.notna(row["n_human"]) else sizes.get(group, np.nan)
        rows.append(
            (
                Cell(formula),
                Cell(f"{group} (small)" if small else group, mark="small" if small else ""),
                cell(n, digits=0),
                *(
                    _decision_cell(r.loc[key], small=small) if key in r.index
                    else Cell("–")
                    for r in recovery.values()
                ),
            )
        )  # fmt: skip
    min_n = next(iter(validations.values())).min_subgroup_n
    blocks: list[Block] = [
        Text(
            "The decision per formula within each subgroup level, with its Wald p and "
            "that p adjusted by Holm over the formula's subgroup cells that are not small "
            "(read a cell's inconsistency against the adjusted p when many are shown)."
        ),
        Table(("formula", "subgroup level", "n human", *recovery), tuple(rows)),
    ]
    if bool(first["small"].astype(bool).any()):
        blocks.append(Text(small_decision_rule(min_n), lead="(small)"))
    if failures:
        blocks.append(
            Text("why the human model could not be estimated.", lead="No decision")
        )
        blocks.append(Bullets(tuple(failures)))
    return blocks


def small_decision_rule(min_n: int) -> str:
    """What "(small)" means beside a subgroup decision: the rule, with its numbers."""
    return (
        f"a subgroup level is too small to judge when it has fewer than {min_n} human "
        f"respondents (min_subgroup_n) or, for a binary outcome, fewer than "
        f"{MIN_EVENTS_PER_PARAMETER} humans giving the rarer answer per coefficient "
        "estimated (the events-per-parameter rule, Peduzzi et al. 1996: below it a "
        "logit's estimates and Wald test are unreliable). Its decision is undetermined "
        "whatever its Wald p: that p is shown for information, not acted on, and left "
        "out of the Holm adjustment."
    )


def _decision_cell(row: pd.Series, *, small: bool) -> Cell:
    """A recovery row's "decision (Wald p; Holm-adjusted p)", marked small where it is."""
    if not isinstance(row["decision"], str):
        text = "no decision (human model not estimable)"
    else:
        shown = [
            f"{label} {'' if p.startswith('<') else '= '}{p}"
            for label, p in (
                ("Wald p", _p_text(row["wald_p_value"])),
                ("Holm", _p_text(row["wald_p_adjusted"])),
            )
            if p != "–"
        ]
        if small:
            shown = [*shown, "not acted on"] if shown else []
            return Cell(
                f"{row['decision']}, too small to judge"
                + (f" ({'; '.join(shown)})" if shown else "")
                + " (small)",
                mark="small",
            )
        text = row["decision"] + (f" ({'; '.join(shown)})" if shown else "")
    return Cell(f"{text} (small)" if small else text, mark="small" if small else "")


def _variance_blocks(
    validations: Mapping[str, Validation], *, colors: Mapping[str, str]
) -> list[Block]:
    """Variance ratio sim/human per item, all respondents; 1 means as spread out as the humans."""
    study = next(iter(validations.values())).study
    tables = {n: _overall_items(v.variance, study) for n, v in validations.items()}
    items = list(next(iter(tables.values())).index)
    if not items:
        return [Text("No variance figures in the validations.")]
    ratios = {n: t["ratio"].reindex(items).tolist() for n, t in tables.items()}
    drawn = plots.grouped_bars(
        items,
        ratios,
        colors=colors,
        ylabel="variance ratio (sim / human)",
        title="Variance ratio per item (dashed: as spread out as the humans)",
        refline=1.0,
    )
    human_var = next(iter(tables.values()))["human_var"]
    return [
        Text(
            "Variance of each item's simulated answers over the human variance, all "
            "respondents (geometric mean of the per-replicate ratios). Below 1: simulated "
            "answers are more uniform than human ones."
        ),
        Figure("variance", "Variance ratio per item.", drawn),
        Table(
            ("item", "human variance", *(f"{n}: ratio" for n in tables)),
            tuple(
                (
                    Cell(item),
                    cell(human_var[item]),
                    *(cell(ratios[n][k]) for n in tables),
                )
                for k, item in enumerate(items)
            ),
        ),
    ]


def _coherence_blocks(
    validations: Mapping[str, Validation], *, colors: Mapping[str, str]
) -> list[Block]:
    """Incoherence rate per rule, human vs each simulator, all respondents."""
    tables = {n: _overall_rows(v.coherence) for n, v in validations.items()}
    first = next(iter(tables.values()))
    if first.empty:
        return [Text("No belief–action coherence rules are declared.")]
    labels = _rule_labels(first)
    series = {HUMAN: first["incoherence_human"].tolist()}
    series.update({n: t["incoherence_sim"].tolist() for n, t in tables.items()})
    drawn = plots.grouped_bars(
        labels,
        series,
        colors=colors,
        ylabel="share incoherent",
        title="Belief–action incoherence per rule",
    )
    return [
        Text(
            "Share of respondents whose stated belief and action disagree under each "
            "declared rule, all respondents."
        ),
        Figure("coherence", "Incoherence rate per rule.", drawn),
        Table(
            ("rule", *series),
            tuple(
                (Cell(label), *(cell(series[n][k]) for n in series))
                for k, label in enumerate(labels)
            ),
        ),
    ]


def _heterogeneity_blocks(
    validations: Mapping[str, Validation], *, colors: Mapping[str, str]
) -> list[Block]:
    """Distinct answer patterns and their entropy, overall and per subgroup level; small
    levels marked in the table and left out of the figures."""
    tables = {n: v.heterogeneity for n, v in validations.items()}
    first_validation = next(iter(validations.values()))
    first = next(iter(tables.values()))
    if first.empty:
        return [Text("No heterogeneity figures in the validations.")]
    groups = [_group_label(s, lvl) for s, lvl in zip(first["subgroup"], first["level"])]
    sized = [_sized(g, n) for g, n in zip(groups, first["n_human"])]
    small = first["small"].astype(bool).tolist()
    shown = [k for k, is_small in enumerate(small) if not is_small]
    items = ", ".join(first_validation.pattern_items)
    blocks: list[Block] = [
        Text(
            f"Patterns are the distinct combinations of answers to {items}; entropy "
            "(bits, Miller–Madow corrected) of their distribution. More is not better: "
            f"the humans are the target. Levels with fewer than "
            f"{first_validation.min_subgroup_n} human respondents are small: marked in "
            "the table, left out of the figures."
        )
    ]
    columns = {}
    for metric, label in (
        ("unique_patterns", "distinct patterns"),
        ("entropy", "pattern entropy"),
    ):
        series = {HUMAN: first[f"{metric}_human"].tolist()}
        series.update({n: t[f"{metric}_sim"].tolist() for n, t in tables.items()})
        drawn = plots.grouped_bars(
            [sized[k] for k in shown],
            {n: [values[k] for k in shown] for n, values in series.items()},
            colors=colors,
            ylabel=label,
            title=label.capitalize(),
        )
        blocks.append(
            Figure(
                f"heterogeneity-{slug(metric)}",
                f"{label.capitalize()}, human vs simulated, overall and per subgroup "
                "level (n: its human respondents).",
                drawn,
            )
        )
        columns.update({f"{n}: {label}": values for n, values in series.items()})
    blocks.append(
        Table(
            ("group", "n human", *columns),
            tuple(
                (
                    Cell(
                        f"{g} (small)" if small[k] else g,
                        mark="small" if small[k] else "",
                    ),
                    cell(first["n_human"].iloc[k], digits=0),
                    *(
                        _small_cell(values[k], small=small[k])
                        for values in columns.values()
                    ),
                )
                for k, g in enumerate(groups)
            ),
        )
    )
    return blocks


# --- small helpers ------------------------------------------------------------------


def _overall_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` that cover all respondents."""
    if table.empty:
        return table
    return table[(table["subgroup"] == OVERALL) & (table["level"] == OVERALL)]


def _overall(table: pd.DataFrame, formula: str) -> pd.DataFrame:
    """The overall rows of ``formula`` in a coefficient table."""
    rows = _overall_rows(table)
    return rows[rows["formula"] == formula] if not rows.empty else rows


def _overall_items(table: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Overall rows of a per-item table, indexed by item in the study's order."""
    rows = _overall_rows(table).set_index("item")
    return rows.reindex(_item_order(study, rows.index))


def _item_order(study: Study, present) -> list[str]:
    """The items in ``present``: the study's order first, any others after."""
    present = list(present)
    return [i for i in study.item_names if i in present] + [
        i for i in present if i not in study.item_names
    ]


def _subgroup_rows(distributions: pd.DataFrame) -> pd.DataFrame:
    """The per-subgroup rows of a distributions table, with a "subgroup=level" group."""
    rows = distributions[distributions["subgroup"] != OVERALL]
    return rows.assign(
        group=[_group_label(s, lvl) for s, lvl in zip(rows["subgroup"], rows["level"])],
        small=rows["small"].astype(bool),
    )


def _by_group(table: pd.DataFrame, column: str) -> pd.Series:
    """A column of ``Validation.subgroup_jsd`` by "subgroup=level"."""
    labels = [_group_label(s, lvl) for s, lvl in zip(table["subgroup"], table["level"])]
    return pd.Series(table[column].to_numpy(), index=labels)


def _small_cell(value: float, *, small: bool) -> Cell:
    """A numeric cell, marked small where it is."""
    shown = cell(value)
    if not small:
        return shown
    return Cell(f"{shown.text} (small)", mark="small", numeric=True)


def _formulas(validations: Mapping[str, Validation]) -> list[str]:
    """Every formula decided by any of the validations, in their order."""
    return list(
        dict.fromkeys(f for v in validations.values() for f in v.verdicts["formula"])
    )


def _decision(rows: pd.DataFrame, formula: str) -> str:
    """A validation's decision on ``formula``, or a dash without a row."""
    return str(rows.at[formula, "decision"]) if formula in rows.index else "–"


def _p_text(value) -> str:
    """A p-value for a table: <0.001 or three decimals, a dash when missing."""
    if value is None or pd.isna(value):
        return "–"
    return "<0.001" if value < 0.001 else number(float(value))


def _p_cell(value) -> Cell:
    """A p-value cell."""
    return Cell(_p_text(value), numeric=True)


def _rule_labels(coherence: pd.DataFrame) -> list[str]:
    """ "belief → action: rule", or "belief → action: any rule" for a pair's combined row."""
    scope = coherence.get("scope", pd.Series("rule", index=coherence.index))
    split = set(
        zip(coherence["belief"][scope == "rule"], coherence["action"][scope == "rule"])
    )
    return [
        f"{b} → {a}: " + ("any rule" if s == "pair" and (b, a) in split else r)
        for b, a, r, s in zip(
            coherence["belief"], coherence["action"], coherence["rule"], scope
        )
    ]


def _group_label(subgroup: str, level: str) -> str:
    """ "overall" or "subgroup=level"."""
    return OVERALL if subgroup == OVERALL else f"{subgroup}={level}"


def _sized(group: str, n: float | None) -> str:
    """A group's label with its number of human respondents: "gender=Woman (n=312)"."""
    return f"{group} (n={number(n, digits=0)})"


def _percent(value: float) -> Cell:
    """A share as a percentage cell."""
    missing = value is None or pd.isna(value)
    return Cell("–" if missing else f"{100 * value:.1f}%", numeric=True)
