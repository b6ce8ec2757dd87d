"""The "Valid inference" section: PPI++ estimates beside the humans-only and the
simulated-only ones, from ``Rectified`` results alone.

Per formula: one sentence per simulator on what its simulated respondents bought (the
humans whose own fit would be as precise), one forest plot with every interval side
by side, and the table behind it. ``write_rectified_report`` writes a page of its own
(``simval rectify``); ``simval.report.write_report`` adds the section to a
replication report when given the simulators' ``Rectified`` results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from simval.rectify import EVENTS_PER_TERM, Rectified
from simval.report import plots
from simval.report.blocks import (
    Block,
    Bullets,
    Callout,
    Cell,
    Figure,
    Heading,
    Section,
    Table,
    Text,
    cell,
    interval,
    number,
)
from simval.report.pages import (
    described,
    study_blocks,
    suffixed,
    write_html_page,
    write_markdown_page,
)
from simval.results import is_finding

TITLE = "Valid inference"

METHOD_LABELS = {
    "classical": "humans only",
    "naive": "simulated only",
    "rectified": "rectified",
}
"""How the report names each method of ``simval.rectify``."""

ALL_HUMANS = "all humans"
"""The series name of a full-sample human fit shown for comparison."""

GUARANTEE = (
    "The rectified intervals cover the humans' coefficients at the nominal rate "
    "whatever the simulator's bias, provided the labeled humans are a random sample of "
    "the population the simulated-only personas come from and the simulator was not "
    "trained on them; simulated-only intervals carry no such guarantee."
)


SMALL_SAMPLE_RULE = (
    "A labeled sample is small when it has fewer than "
    f"{EVENTS_PER_TERM} events per coefficient: for a binary outcome, fewer than "
    f"{EVENTS_PER_TERM} humans giving the rarer answer per coefficient, otherwise fewer "
    f"than {EVENTS_PER_TERM} humans per coefficient (the events-per-parameter rule, "
    "Peduzzi et al. 1996), or when the humans-only fit nearly separates the outcome. "
    "Its intervals, and the rectified ones built on it, are then large-sample "
    "approximations that may cover less often than stated."
)
"""What a "Small labeled sample" callout means (``simval.rectify.EVENTS_PER_TERM``)."""


def inference_blocks(
    rectified: Mapping[str, Rectified], *, reference: pd.DataFrame | None = None
) -> list[Block]:
    """The section's blocks. ``reference``: optional estimates to show beside (columns
    formula, term, estimate, ci_low, ci_high), e.g. every human's fit where the labeled
    humans are a subsample of them."""
    first = next(iter(rectified.values()))
    level = f"{1 - first.alpha:.0%}"
    blocks: list[Block] = [
        Callout(GUARANTEE),
        Text(
            f"{level} intervals. Humans only: the labeled humans' own fit. Simulated "
            "only: the simulator's sampled answers for the simulated-only personas, "
            "fitted alone. Rectified: PPI++ (prediction-powered inference) on both. "
            "Gain: (humans-only SE / rectified SE)², below 1 where the rectified "
            "interval is the wider; effective n: humans used × gain, the humans whose "
            "own fit would be as precise as the rectified one."
        ),
    ]
    for i, model in enumerate(first.study.models, start=1):
        formula = model.formula
        blocks.append(Heading(formula))
        blocks.append(
            Bullets(
                tuple(
                    Text(r.sentence(formula), lead=name)
                    for name, r in rectified.items()
                )
            )
        )
        tables = {
            name: r.table[r.table["formula"] == formula]
            for name, r in rectified.items()
        }
        warned = dict.fromkeys(
            warning for t in tables.values() for warning in t["warning"] if warning
        )  # the labeled humans' own fit: one warning whichever the simulator
        blocks.extend(
            Callout(f"Small labeled sample: {warning}.") for warning in warned
        )
        if warned:
            blocks.append(Text(SMALL_SAMPLE_RULE))
        terms = list(next(iter(tables.values()))["term"])
        if not terms:
            continue
        shown = [t for t in terms if is_finding(t)] or terms
        series = _series(tables, reference=_reference(reference, formula))
        blocks.append(
            Figure(
                f"{i:02d}-valid-inference",
                f"Humans-only, simulated-only and rectified estimates of {formula} "
                f"with their {level} intervals (intercept left out).",
                plots.forest(
                    shown, series, colors=plots.colors_for(list(series)), title=formula
                ),
            )
        )
        blocks.append(_table(tables, reference=_reference(reference, formula)))
    return blocks


def rectified_sections(
    rectified: Mapping[str, Rectified],
    *,
    reference: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    folder: str | Path | None = None,
) -> tuple[Section, ...]:
    """A page of its own: the section, then what was run. ``folder``: where the page
    is written; a simulator's paths are shown relative to it."""
    first = next(iter(rectified.values()))
    run = [
        Text(
            f"{r.n_human} humans; simulated-only personas: {r.n_unlabeled} "
            f"({r.unlabeled}); predictions: {r.predictions}; λ: "
            f"{r.lam if isinstance(r.lam, str) else number(r.lam)}.",
            lead=f"{name}: {described(r.simulator, identity=_identity(r), folder=folder)}",
        )
        for name, r in rectified.items()
    ]
    not_estimable = [
        Text(caveat, lead=name)
        for name, r in rectified.items()
        for caveat in r.caveats()
    ]
    return (
        Section(TITLE, tuple(inference_blocks(rectified, reference=reference))),
        Section("The study", tuple(study_blocks(first.study))),
        Section(
            "What was run",
            (*run, *not_estimable, *(Text(note) for note in notes)),
        ),
    )


def write_rectified_report(
    rectified: Mapping[str, Rectified],
    *,
    out: str | Path,
    title: str = "simval valid-inference report",
    notes: Sequence[str] = (),
    reference: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Write the page as self-contained HTML and its Markdown twin; return both paths."""
    html_path = suffixed(out, ".html")
    sections = rectified_sections(
        rectified, reference=reference, notes=notes, folder=html_path.parent
    )
    write_html_page(sections, path=html_path, title=title)
    md_path = html_path.with_suffix(".md")
    write_markdown_page(sections, path=md_path, title=title)
    return html_path, md_path


def _identity(result: Rectified) -> dict[str, str]:
    """The simulator's identity a ``Rectified`` carries in its notes (empty if none)."""
    return dict(result.notes.get("identity", {}) or {})


def _series(
    tables: Mapping[str, pd.DataFrame], *, reference: pd.DataFrame | None
) -> dict[str, pd.DataFrame]:
    """estimate, low, high by term for every interval the plot shows."""
    first = next(iter(tables.values()))
    series = {}
    if reference is not None:
        series[ALL_HUMANS] = _frame(reference, "")
    series[METHOD_LABELS["classical"]] = _frame(first, "classical_")
    for name, table in tables.items():
        for method in ("naive", "rectified"):
            series[f"{name}: {METHOD_LABELS[method]}"] = _frame(table, f"{method}_")
    return series


def _frame(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    columns = {f"{prefix}estimate": "estimate", f"{prefix}ci_low": "low",
               f"{prefix}ci_high": "high"}  # fmt: skip
    return table.set_index("term")[list(columns)].rename(columns=columns).astype(float)


def _reference(reference: pd.DataFrame | None, formula: str) -> pd.DataFrame | None:
    if reference is None:
        return None
    rows = reference[reference["formula"] == formula]
    return None if rows.empty else rows


def _table(
    tables: Mapping[str, pd.DataFrame], *, reference: pd.DataFrame | None
) -> Table:
    """A row per term and simulator: every interval, λ, the PPI correlation, the
    effective n and the gain."""
    known = {} if reference is None else reference.set_index("term").to_dict("index")
    rows = []
    for name, table in tables.items():
        for row in table.to_dict("records"):
            full = [_interval_cell(known.get(row["term"], {}), "")] if known else []
            rows.append(
                (
                    Cell(row["term"]),
                    Cell(name),
                    *full,
                    *(_interval_cell(row, f"{m}_") for m in METHOD_LABELS),
                    cell(row["lam"]),
                    cell(row["ppi_correlation"]),
                    cell(row["effective_n"], digits=0),
                    cell(row["gain"], digits=2),
                )
            )
    columns = (
        "term", "simulator", *([ALL_HUMANS] if known else []),
        *(f"{label} [CI]" for label in METHOD_LABELS.values()), "λ",
        "PPI correlation", "effective n", "gain",
    )  # fmt: skip
    return Table(columns, tuple(rows))


def _interval_cell(row: Mapping, prefix: str) -> Cell:
    """ "estimate [low, high]" from a row's ``<prefix>estimate`` and CI columns."""
    if not row:
        return Cell("–", numeric=True)
    return Cell(
        interval(
            row[f"{prefix}estimate"], row[f"{prefix}ci_low"], row[f"{prefix}ci_high"]
        ),
        numeric=True,
    )


def rectified_text(result: Rectified, *, reference: pd.DataFrame | None = None) -> str:
    """A ``Rectified`` as plain text (what ``simval rectify`` prints): its ``lines()``,
    then a row per (term, formula) with each method's estimate [CI] and the gain; with
    ``reference`` (``rectify.LabeledSplit.reference``), every human's own estimate
    first."""
    known = (
        {}
        if reference is None
        else reference.set_index(["formula", "term"]).to_dict("index")
    )
    rows = {}
    for row in result.table.to_dict("records"):
        shown = {}
        if known:
            full = known[row["formula"], row["term"]]
            shown[ALL_HUMANS] = interval(
                full["estimate"], full["ci_low"], full["ci_high"]
            )
        for method, label in METHOD_LABELS.items():
            shown[label] = interval(
                row[f"{method}_estimate"],
                row[f"{method}_ci_low"],
                row[f"{method}_ci_high"],
            )
        shown["gain"] = number(row["gain"], digits=2)
        rows[f"{row['term']} ({row['formula']})"] = shown
    table = pd.DataFrame.from_dict(rows, orient="index").to_string()
    return "\n".join((*result.lines(), table))
