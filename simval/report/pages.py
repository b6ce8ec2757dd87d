"""What every page shares: the templates, the page writers and the study's section.

The replication report (``render``), the valid-inference page (``inference``) and the
leaderboards (``leaderboard``) render their sections through these, so none of them
imports another to write a page.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup

from simval.errors import OptionError
from simval.report.blocks import (
    Block,
    Cell,
    Figure,
    Section,
    Table,
    Text,
    cell,
    md_escape,
    number,
)
from simval.study import Study


def render_leaderboard(table: Table, *, legend: str, fmt: str) -> str:
    """A leaderboard page in ``fmt`` ("html" or "md")."""
    return (
        _environment(fmt)
        .get_template(f"leaderboard.{fmt}.j2")
        .render(title="simval leaderboard", table=table, legend=legend)
    )


def figures_of(sections: Sequence[Section]) -> list[Figure]:
    """The figures of a report, in order."""
    return [b for s in sections for b in s.blocks if isinstance(b, Figure)]


def write_html_page(sections, *, path: Path, title: str) -> None:
    """Render the HTML page."""
    text = (
        _environment("html")
        .get_template("report.html.j2")
        .render(title=title, sections=sections)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_markdown_page(sections, *, path: Path, title: str) -> None:
    """Render the Markdown and write its figures to ``<stem>_figures/`` (stale PNGs
    removed), linked by paths relative to the Markdown file."""
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
        .render(title=title, sections=sections, paths=paths)
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


def suffixed(out: str | Path, suffix: str) -> Path:
    """``out`` as a Path, which must end in ``suffix``."""
    path = Path(out)
    if path.suffix.lower() != suffix:
        raise OptionError(f"the report path {str(out)!r} must end in {suffix}")
    return path


IDENTITY_FIELDS = {
    "model": "model",
    "adapter": "adapter",
    "dtype": "dtype",
    "mode": "mode",
    "api": "API",
}
"""A simulator's identity (``simval.results.identity_of``) as the report names it."""

PATH_FIELDS = ("model", "adapter")
"""Identity fields that may hold a folder of this machine: shown relative to the report."""


def shown_path(value: str, *, folder: str | Path | None) -> str:
    """An absolute path relative to ``folder`` (where the report is written; the current
    folder if None), so a report never holds a path of this machine; else as it is."""
    if not os.path.isabs(value):
        return value
    start = Path(folder).resolve() if folder is not None else Path.cwd()
    return Path(os.path.relpath(value, start)).as_posix()


def identity_cells(
    identity: Mapping[str, str], *, folder: str | Path | None
) -> dict[str, str]:
    """A simulator's identity for display, in ``IDENTITY_FIELDS`` order: folders
    relative to the report's ``folder``, "none" for a missing adapter, the API only
    where there is one (a served model); empty without an identity."""
    if not identity:
        return {}
    shown = {}
    for key in IDENTITY_FIELDS:
        value = identity.get(key)
        if value is None:
            if key != "api":
                shown[key] = "none" if key == "adapter" else "–"
            continue
        shown[key] = shown_path(value, folder=folder) if key in PATH_FIELDS else value
    return shown


def described(
    simulator: str, *, identity: Mapping[str, str], folder: str | Path | None
) -> str:
    """A simulator in words: its identity ("model SmolLM2-135M-Instruct, adapter
    adapter, dtype bfloat16, mode score"), else its repr."""
    cells = identity_cells(identity, folder=folder)
    if not cells:
        return simulator
    return ", ".join(f"{IDENTITY_FIELDS[k]} {v}" for k, v in cells.items())


def study_blocks(study: Study) -> list[Block]:
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
                        f"{i.number.describe()} (a number item)"
                        if i.is_number
                        else "; ".join(
                            f"{number(c, digits=None)} = {label}"
                            for label, c in i.options.items()
                        )
                    ),
                )
                for i in study.items
            ),
        ),
        Text(", ".join(study.persona) or "none declared", lead="Persona columns"),
        Text(
            f"{study.persona_text} (how a simulated respondent is described: the "
            "prompt fills it in from the persona columns)"
            if study.persona_text
            else "none: the prompt lists every persona column as a 'name: value' line",
            lead="Persona text",
        ),
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
            ("formula", "family", "covariance", "equivalence margin (standardised)"),
            tuple(
                (Cell(m.formula), Cell(m.family), Cell(m.cov), cell(m.margin))
                for m in study.models
            ),
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
