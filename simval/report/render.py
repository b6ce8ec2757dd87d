"""The replication report: one self-contained HTML page and its Markdown twin.

``build_sections`` reads the validations (never running a model) and returns the
report's sections; the HTML and Markdown templates render the same sections, so
the two files always say the same thing. The HTML embeds its CSS and its figures
(PNG ``data:`` URIs) and has no script and no external reference; the Markdown
links PNG files written to ``<stem>_figures/`` beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from simval.errors import DataError, OptionError
from simval.report import plots
from simval.report.blocks import (
    Block,
    Bullets,
    Cell,
    Figure,
    Heading,
    Section,
    Table,
    Text,
    cell,
    md_escape,
    number,
    slug,
)
from simval.report.leaderboard import (
    HUMAN,
    leaderboard_table,
    legend,
    mark_best,
)
from simval.report.shares import SHARE_COLUMNS
from simval.report.verdict import (
    MAX_FALSE_POSITIVE_RATE,
    MIN_COVERAGE_SHARE,
    MIN_SIGN_F1,
    verdict,
)
from simval.study import Study
from simval.validate import NOT_FINDINGS, OVERALL, Validation, summary_table

CAVEAT = (
    "Synthetic respondents are not a substitute for inference on humans. This report "
    "measures how far simulated answers fall from human answers in this one study; "
    "it does not license replacing human data with simulated data."
)

TITLE = "simval replication report"

SECTION_TITLES = (
    "The study",
    "Simulators compared",
    "Headline table",
    "Verdict",
    "Coefficients",
    "Answer distributions",
    "Subgroup alignment",
    "Variance",
    "Belief–action coherence",
    "Heterogeneity",
)
"""The report's sections, in order, in both the HTML and the Markdown."""


def write_report(
    validations: Mapping[str, Validation],
    *,
    study: Study,
    out: str | Path,
    leaderboard: pd.DataFrame | None = None,
    shares: pd.DataFrame | None = None,
    title: str = TITLE,
    notes: Sequence[str] = (),
    exclude: Sequence[str] = (HUMAN,),
) -> tuple[Path, Path]:
    """Write ``out`` (a self-contained .html file) and its Markdown twin; return both paths.

    ``validations`` maps a display name to a Validation of that simulator against
    the same human data. The twin has the same stem with suffix .md, and its
    figures are PNG files in ``<stem>_figures/`` beside it. ``leaderboard`` is a
    ``compare`` table (built from the summaries when None); ``shares`` an
    ``option_shares`` table for the distribution bars; ``exclude`` the leaderboard
    rows never marked best (e.g. also a bootstrap ceiling).
    """
    html_path = _suffixed(out, ".html")
    sections = build_sections(
        validations,
        study=study,
        leaderboard=leaderboard,
        shares=shares,
        exclude=exclude,
    )
    _write_html(sections, path=html_path, title=title, notes=notes)
    md_path = html_path.with_suffix(".md")
    _write_markdown(sections, path=md_path, title=title, notes=notes)
    return html_path, md_path


def write_html(
    validations: Mapping[str, Validation], *, study: Study, out: str | Path, **kw
) -> Path:
    """Only the self-contained HTML report (``write_report``'s keywords apply)."""
    return _write_one(validations, study=study, out=out, fmt="html", **kw)


def write_markdown(
    validations: Mapping[str, Validation], *, study: Study, out: str | Path, **kw
) -> Path:
    """Only the Markdown report and its figure folder (``write_report``'s keywords apply)."""
    return _write_one(validations, study=study, out=out, fmt="md", **kw)


def _write_one(
    validations: Mapping[str, Validation],
    *,
    study: Study,
    out: str | Path,
    fmt: str,
    title: str = TITLE,
    notes: Sequence[str] = (),
    **kw,
) -> Path:
    """One of the report's two files, ``fmt`` "html" or "md"."""
    path = _suffixed(out, f".{fmt}")
    sections = build_sections(validations, study=study, **kw)
    writer = _write_html if fmt == "html" else _write_markdown
    writer(sections, path=path, title=title, notes=notes)
    return path


def render_leaderboard(table: Table, *, legend: str, fmt: str) -> str:
    """A leaderboard page in ``fmt`` ("html" or "md")."""
    return (
        _environment(fmt)
        .get_template(f"leaderboard.{fmt}.j2")
        .render(title="simval leaderboard", table=table, legend=legend)
    )


def build_sections(
    validations: Mapping[str, Validation],
    *,
    study: Study,
    leaderboard: pd.DataFrame | None = None,
    shares: pd.DataFrame | None = None,
    exclude: Sequence[str] = (HUMAN,),
) -> tuple[Section, ...]:
    """Every section of the report, in ``SECTION_TITLES`` order."""
    _check_validations(validations)
    if not isinstance(study, Study):
        raise OptionError(f"study must be a simval Study, got {type(study).__name__}")
    nominal = 1 - next(iter(validations.values())).alpha
    colors = plots.colors_for([HUMAN, *validations, *_share_names(shares)])
    blocks = (
        _study_blocks(study),
        _simulator_blocks(validations),
        _headline_blocks(validations, leaderboard, nominal=nominal, exclude=exclude),
        _verdict_blocks(validations, study, nominal=nominal),
        _coefficient_blocks(validations, study, colors=colors),
        _distribution_blocks(shares, study, colors=colors),
        _subgroup_blocks(validations, study),
        _variance_blocks(validations, study, colors=colors),
        _coherence_blocks(validations, colors=colors),
        _heterogeneity_blocks(validations, colors=colors),
    )
    return tuple(Section(t, tuple(b)) for t, b in zip(SECTION_TITLES, blocks))


def figures_of(sections: Sequence[Section]) -> list[Figure]:
    """The figures of a report, in order."""
    return [b for s in sections for b in s.blocks if isinstance(b, Figure)]


# --- writing ------------------------------------------------------------------------


def _write_html(sections, *, path: Path, title: str, notes: Sequence[str]) -> None:
    """Render the HTML page."""
    text = (
        _environment("html")
        .get_template("report.html.j2")
        .render(title=title, caveat=CAVEAT, notes=_notes(notes), sections=sections)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_markdown(sections, *, path: Path, title: str, notes: Sequence[str]) -> None:
    """Render the Markdown and write its figures to ``<stem>_figures/`` (stale PNGs removed)."""
    folder = path.with_name(f"{path.stem}_figures")
    folder.mkdir(parents=True, exist_ok=True)
    figures = figures_of(sections)
    names = {f"{f.name}.png" for f in figures}
    for old in folder.glob("*.png"):
        if old.name not in names:
            old.unlink()
    for figure in figures:
        (folder / f"{figure.name}.png").write_bytes(figure.png)
    paths = {f.name: Markup(f"{folder.name}/{f.name}.png") for f in figures}
    text = (
        _environment("md")
        .get_template("report.md.j2")
        .render(
            title=title,
            caveat=CAVEAT,
            notes=_notes(notes),
            sections=sections,
            paths=paths,
        )
    )
    path.write_text(text, encoding="utf-8")


def _environment(fmt: str) -> jinja2.Environment:
    """Jinja2 with HTML autoescaping, or for Markdown with every value Markdown-escaped."""
    common = {
        "loader": jinja2.PackageLoader("simval.report", "templates"),
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
    }
    if fmt == "html":
        return jinja2.Environment(autoescape=True, **common)
    return jinja2.Environment(autoescape=False, finalize=md_escape, **common)


def _notes(notes: str | Sequence[str]) -> list[str]:
    """The notes as a list; a single string is one note."""
    return [notes] if isinstance(notes, str) else [str(n) for n in notes]


def _suffixed(out: str | Path, suffix: str) -> Path:
    """``out`` as a Path, which must end in ``suffix``."""
    path = Path(out)
    if path.suffix.lower() != suffix:
        raise OptionError(f"the report path {str(out)!r} must end in {suffix}")
    return path


def _check_validations(validations: Mapping[str, Validation]) -> None:
    """A non-empty mapping of names to Validations that share one alpha."""
    if not isinstance(validations, Mapping) or not validations:
        raise OptionError(
            "write_report needs a non-empty mapping of name -> Validation"
        )
    for name, validation in validations.items():
        if not isinstance(validation, Validation):
            raise OptionError(
                f"validations[{name!r}] is a {type(validation).__name__}, not a Validation"
            )
    if HUMAN in validations:
        raise OptionError(
            "'human' names the human data; give the simulator another name"
        )
    alphas = {name: v.alpha for name, v in validations.items()}
    if len(set(alphas.values())) > 1:
        shown = ", ".join(f"{n}: {a:g}" for n, a in alphas.items())
        raise OptionError(f"the validations use different alpha ({shown}); use one")


# --- sections -----------------------------------------------------------------------


def _study_blocks(study: Study) -> list[Block]:
    """Items, persona and treatment columns, arms, models, subgroups and coherence rules."""
    treatment = (
        (study.treatment,)
        if isinstance(study.treatment, str)
        else tuple(study.treatment or ())
    )
    blocks: list[Block] = [
        Table(
            ("item", "role", "question", "options (label = code)"),
            tuple(
                (
                    Cell(i.name),
                    Cell(i.role),
                    Cell(i.text),
                    Cell(
                        "; ".join(
                            f"{number(c)} = {label}" for label, c in i.options.items()
                        )
                    ),
                )
                for i in study.items
            ),
        ),
        Text(", ".join(study.persona) or "none declared", lead="Persona columns"),
        Text(", ".join(treatment) or "none", lead="Treatment column(s)"),
    ]
    if study.vignettes:
        blocks.append(
            Table(
                ("arm", "vignette"),
                tuple((Cell(arm), Cell(text)) for arm, text in study.vignettes.items()),
            )
        )
    blocks.append(
        Table(
            ("formula", "family", "covariance"),
            tuple((Cell(m.formula), Cell(m.family), Cell(m.cov)) for m in study.models),
        )
        if study.models
        else Text("The study declares no regression models.")
    )
    blocks.append(Text(", ".join(study.subgroups) or "none declared", lead="Subgroups"))
    blocks.append(
        Table(
            ("belief", "action", "incoherent when"),
            tuple(
                (Cell(c.belief), Cell(c.action), Cell(c.rule)) for c in study.coherence
            ),
        )
        if study.coherence
        else Text("No belief–action coherence rules are declared.")
    )
    return blocks


def _simulator_blocks(validations: Mapping[str, Validation]) -> list[Block]:
    """Who was compared, on how many humans, with how many replicate samples."""
    return [
        Table(
            ("name", "simulator", "human respondents", "replicates", "alpha", "seed"),
            tuple(
                (
                    Cell(name),
                    Cell(v.simulator),
                    cell(v.n_human),
                    cell(v.reps),
                    cell(v.alpha),
                    Cell("none" if v.seed is None else str(v.seed), numeric=True),
                )
                for name, v in validations.items()
            ),
        ),
        Text(
            "Each replicate draws as many personas as there are humans, with replacement, "
            "and asks the simulator to answer them; simulated figures are means over the "
            "replicates."
        ),
    ]


def _headline_blocks(
    validations: Mapping[str, Validation],
    leaderboard: pd.DataFrame | None,
    *,
    nominal: float,
    exclude: Sequence[str],
) -> list[Block]:
    """The leaderboard with the best value per column marked, and its legend."""
    table = summary_table(validations) if leaderboard is None else leaderboard
    marks = mark_best(table, nominal_coverage=nominal, exclude=exclude)
    source = "from the validations' summaries" if leaderboard is None else "as supplied"
    return [
        leaderboard_table(table, marks),
        Text(
            legend(table, nominal_coverage=nominal, exclude=exclude)
            + f" Table {source}; the human row holds the humans' own levels."
        ),
    ]


def _verdict_blocks(
    validations: Mapping[str, Validation], study: Study, *, nominal: float
) -> list[Block]:
    """Per formula and simulator: does the simulated sample reach the human conclusions?"""
    rule = Text(
        f"Fit for inference means, over all respondents and leaving out the intercept: "
        f"sign-F1 at least {MIN_SIGN_F1:g}, false-positive rate at most "
        f"{MAX_FALSE_POSITIVE_RATE:g}, and coverage of the human estimates at least "
        f"{MIN_COVERAGE_SHARE:g} × the nominal {nominal:g}. A term's class (positive, "
        "negative or not significant) counts as recovered when the replicates' "
        "commonest class equals the human one."
    )
    if not study.models:
        return [rule, Text("The study declares no regression models: no verdict.")]
    judged = {
        model.formula: [
            verdict(v, model.formula, simulator=name) for name, v in validations.items()
        ]
        for model in study.models
    }
    blocks: list[Block] = [
        rule,
        Table(
            ("formula", *validations),
            tuple(
                (Cell(formula), *(Cell(v.conclusion) for v in verdicts))
                for formula, verdicts in judged.items()
            ),
        ),
    ]
    for formula, verdicts in judged.items():
        blocks.append(Heading(formula))
        blocks.append(Bullets(tuple(Text(v.text, lead=v.simulator) for v in verdicts)))
    return blocks


def _coefficient_blocks(
    validations: Mapping[str, Validation], study: Study, *, colors: Mapping[str, str]
) -> list[Block]:
    """Per formula: a forest plot (intercept left out) and the full coefficient table."""
    first = next(iter(validations.values()))
    level = f"{1 - first.alpha:.0%}"
    blocks: list[Block] = [
        Text(
            f"All respondents. Human estimates with their {level} confidence intervals; "
            f"for each simulator, the mean estimate and mean {level} interval over the "
            "replicates. The figures leave out the intercept (not a finding of the study, "
            "and often on another scale); the tables keep it. Classes: + significant "
            "positive, − significant negative, 0 not significant (simulated: the "
            "replicates' commonest class)."
        )
    ]
    for i, model in enumerate(study.models, start=1):
        frames = {
            name: _overall(v.coefficients, model.formula)
            for name, v in validations.items()
        }
        human = next((f for f in frames.values() if not f.empty), None)
        blocks.append(Heading(model.formula))
        if human is None:
            blocks.append(Text("No coefficient estimates for this formula."))
            continue
        terms = list(human["term"])
        shown = [t for t in terms if t not in NOT_FINDINGS]
        series = {HUMAN: _interval(human, "human")}
        series.update({name: _interval(f, "sim") for name, f in frames.items()})
        if shown:
            png = plots.forest(shown, series, colors=colors, title=model.formula)
            blocks.append(
                Figure(
                    f"{i:02d}-coefficients",
                    f"Coefficients of {model.formula} (all respondents; intercept left out).",
                    png,
                )
            )
        blocks.append(_coefficient_table(terms, human, frames))
    return blocks


def _coefficient_table(
    terms: list[str], human: pd.DataFrame, frames: Mapping[str, pd.DataFrame]
) -> Table:
    """Term by series: estimate [CI] and class."""
    human = human.set_index("term")
    indexed = {name: f.set_index("term") for name, f in frames.items()}
    rows = []
    for term in terms:
        row = [Cell(term), _estimate_cell(human, term, "human")]
        row += [_estimate_cell(f, term, "sim") for f in indexed.values()]
        rows.append(tuple(row))
    return Table(("term", HUMAN, *frames), tuple(rows))


_CLASS_MARKS = {"positive": "+", "negative": "−", "null": "0"}


def _estimate_cell(frame: pd.DataFrame, term: str, prefix: str) -> Cell:
    """ "estimate [low, high] class" for one term, or a dash when it is missing."""
    if term not in frame.index or pd.isna(frame.at[term, f"{prefix}_estimate"]):
        return Cell("–", numeric=True)
    est, low, high = (
        frame.at[term, f"{prefix}_{c}"] for c in ("estimate", "ci_low", "ci_high")
    )
    mark = _CLASS_MARKS.get(frame.at[term, f"{prefix}_class"], "?")
    return Cell(f"{number(est)} [{number(low)}, {number(high)}] {mark}", numeric=True)


def _interval(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """estimate, low, high indexed by term, from the human_* or sim_* columns."""
    columns = {
        f"{prefix}_estimate": "estimate",
        f"{prefix}_ci_low": "low",
        f"{prefix}_ci_high": "high",
    }
    return frame.set_index("term")[list(columns)].rename(columns=columns).astype(float)


def _distribution_blocks(
    shares: pd.DataFrame | None, study: Study, *, colors: Mapping[str, str]
) -> list[Block]:
    """Per item: share of each option, human vs each simulator."""
    if shares is None:
        return [
            Text(
                "Per-option answer shares were not supplied, so this section is empty "
                "(pass shares=option_shares(human_df, simulated, study) to write_report)."
            )
        ]
    table = _check_shares(shares)
    names = list(dict.fromkeys([HUMAN, *table["simulator"]]))
    names = [n for n in names if (table["simulator"] == n).any()]
    lookup = table.set_index(["simulator", "item", "code"])["share"]
    blocks: list[Block] = [
        Text("Share of each answer option among the non-missing answers to each item.")
    ]
    for i, item in enumerate(study.items, start=1):
        blocks.append(Heading(f"{item.name}: {item.text}"))
        if not (table["item"] == item.name).any():
            blocks.append(Text(f"No shares were supplied for item {item.name}."))
            continue
        values = {
            n: [float(lookup.get((n, item.name, float(c)), np.nan)) for c in item.codes]
            for n in names
        }
        png = plots.grouped_bars(
            item.labels,
            values,
            colors=colors,
            ylabel="share of answers",
            title=f"{item.name}: {item.text}",
        )
        blocks.append(
            Figure(
                f"{i:02d}-distribution-{slug(item.name)}",
                f"Answers to {item.name}.",
                png,
            )
        )
        blocks.append(
            Table(
                ("option", *names),
                tuple(
                    (
                        Cell(f"{label} ({number(code)})"),
                        *(_percent(values[n][k]) for n in names),
                    )
                    for k, (label, code) in enumerate(item.options.items())
                ),
            )
        )
    return blocks


def _check_shares(shares: pd.DataFrame) -> pd.DataFrame:
    """A shares table has the ``SHARE_COLUMNS``; codes are compared as floats."""
    if not isinstance(shares, pd.DataFrame):
        raise DataError(f"shares must be a DataFrame, got {type(shares).__name__}")
    missing = [c for c in SHARE_COLUMNS if c not in shares.columns]
    if missing:
        raise DataError(f"shares lacks column(s): {', '.join(missing)}")
    table = shares[list(SHARE_COLUMNS)].copy()
    table["code"] = pd.to_numeric(table["code"], errors="coerce").astype(float)
    table["share"] = pd.to_numeric(table["share"], errors="coerce").astype(float)
    return table


def _subgroup_blocks(
    validations: Mapping[str, Validation], study: Study
) -> list[Block]:
    """JSD per subgroup level and item, one heatmap panel per simulator, and the level means."""
    panels = {}
    for name, v in validations.items():
        rows = v.distributions[v.distributions["subgroup"] != OVERALL]
        if rows.empty:
            continue
        rows = rows.assign(
            group=rows["subgroup"].astype(str) + "=" + rows["level"].astype(str)
        )
        panel = rows.pivot_table(
            index="group", columns="item", values="jsd", sort=False, dropna=False
        )
        panels[name] = panel.reindex(columns=_item_order(study, panel.columns))
    if not panels:
        return [
            Text("No subgroups: the per-subgroup distances need declared subgroups.")
        ]
    order = list(next(iter(panels.values())).index)
    panels = {n: p.reindex(order) for n, p in panels.items()}
    png = plots.heatmap(
        panels, title="Jensen–Shannon distance by subgroup level and item", label="JSD"
    )
    means = {n: p.mean(axis=1) for n, p in panels.items()}
    rows = [(Cell(g), *(cell(means[n][g]) for n in panels)) for g in order]
    rows.append(
        (
            Cell("gap (worst − best)"),
            *(cell(means[n].max() - means[n].min()) for n in panels),
        )
    )
    return [
        Text(
            "Jensen–Shannon distance (base 2, 0 = identical, 1 = disjoint) between human "
            "and simulated answers within each subgroup level; means over replicates."
        ),
        Figure(
            "subgroup-jsd", "JSD per subgroup level (rows) and item (columns).", png
        ),
        Table(("subgroup level", *(f"{n}: mean JSD" for n in panels)), tuple(rows)),
    ]


def _variance_blocks(
    validations: Mapping[str, Validation], study: Study, *, colors: Mapping[str, str]
) -> list[Block]:
    """Variance ratio sim/human per item, all respondents; 1 means as spread out as the humans."""
    tables = {n: _overall_items(v.variance, study) for n, v in validations.items()}
    items = list(next(iter(tables.values())).index)
    if not items:
        return [Text("No variance figures in the validations.")]
    ratios = {n: t["ratio"].reindex(items).tolist() for n, t in tables.items()}
    png = plots.grouped_bars(
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
            "respondents (mean per-replicate ratio). Below 1: simulated answers are "
            "more uniform than human ones."
        ),
        Figure("variance", "Variance ratio per item.", png),
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
    png = plots.grouped_bars(
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
        Figure("coherence", "Incoherence rate per rule.", png),
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
    """Distinct answer patterns and their entropy, overall and per subgroup level."""
    tables = {n: v.heterogeneity for n, v in validations.items()}
    first = next(iter(tables.values()))
    if first.empty:
        return [Text("No heterogeneity figures in the validations.")]
    groups = [_group_label(s, lvl) for s, lvl in zip(first["subgroup"], first["level"])]
    items = ", ".join(next(iter(validations.values())).pattern_items)
    blocks: list[Block] = [
        Text(
            f"Patterns are the distinct combinations of answers to {items}; entropy "
            "(bits) of their distribution. More is not better: the humans are the target."
        )
    ]
    columns = {}
    for metric, label in (
        ("unique_patterns", "distinct patterns"),
        ("entropy", "pattern entropy"),
    ):
        series = {HUMAN: first[f"{metric}_human"].tolist()}
        series.update({n: t[f"{metric}_sim"].tolist() for n, t in tables.items()})
        png = plots.grouped_bars(
            groups, series, colors=colors, ylabel=label, title=label.capitalize()
        )
        blocks.append(
            Figure(
                f"heterogeneity-{slug(metric)}",
                f"{label.capitalize()}, human vs simulated.",
                png,
            )
        )
        columns.update({f"{n}: {label}": values for n, values in series.items()})
    blocks.append(
        Table(
            ("group", *columns),
            tuple(
                (Cell(g), *(cell(values[k]) for values in columns.values()))
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


def _percent(value: float) -> Cell:
    """A share as a percentage cell."""
    return Cell("–" if np.isnan(value) else f"{100 * value:.1f}%", numeric=True)


def _share_names(shares: pd.DataFrame | None) -> list[str]:
    """The series named in the shares table (those without a validation need colours too)."""
    if not isinstance(shares, pd.DataFrame) or "simulator" not in shares.columns:
        return []
    return [str(n) for n in dict.fromkeys(shares["simulator"])]
