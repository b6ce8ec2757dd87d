"""The document model a report is built from: sections of text, tables and figures.

Sections are built once in Python and rendered twice, by the HTML and the Markdown
templates, so both outputs always hold the same sections, tables and figures.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from markupsafe import Markup

from simval.report.plots import png
from simval.results import interval_text, number

if TYPE_CHECKING:
    import matplotlib.figure


@dataclass(frozen=True)
class Text:
    """A paragraph; ``lead`` is shown in bold before it (e.g. a simulator's name)."""

    text: str
    lead: str = ""
    kind: ClassVar[str] = "text"


@dataclass(frozen=True)
class Callout:
    """A one-line warning set apart from the text (the report's caveat)."""

    text: str
    kind: ClassVar[str] = "callout"


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str
    kind: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Bullets:
    """A bulleted list of paragraphs."""

    items: tuple[Text, ...]
    kind: ClassVar[str] = "bullets"


@dataclass(frozen=True)
class Preformatted:
    """Text shown exactly as it is, line breaks kept (a prompt); ``lead`` names it."""

    text: str
    lead: str = ""
    kind: ClassVar[str] = "preformatted"

    @property
    def fence(self) -> str:
        """A Markdown code fence longer than any run of backticks in the text."""
        runs = re.findall(r"`+", self.text)
        return "`" * max(3, 1 + max((len(r) for r in runs), default=0))


MARKS = ("", "best", "tie", "small")
"""A cell's mark: none; best (bold); tied for best (italic); a small subgroup cell (muted)."""


@dataclass(frozen=True)
class Cell:
    """A table cell: its display text, its mark (one of ``MARKS``), whether it is a number."""

    text: str
    mark: str = ""
    numeric: bool = False


@dataclass(frozen=True)
class Table:
    """A table with display headers and rows of cells."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    kind: ClassVar[str] = "table"

    @property
    def numeric(self) -> tuple[bool, ...]:
        """Whether each column holds numbers (judged by its first row), for alignment."""
        first = self.rows[0] if self.rows else ()
        return tuple(
            i < len(first) and first[i].numeric for i in range(len(self.columns))
        )


@dataclass(frozen=True)
class Figure:
    """A figure; ``name`` is unique within a report and names its Markdown file.

    The matplotlib figure is kept, so its artists (legend, labels, fonts) can be
    checked; its PNG is drawn once, when first asked for.
    """

    name: str
    caption: str
    figure: matplotlib.figure.Figure
    kind: ClassVar[str] = "figure"

    @cached_property
    def png(self) -> bytes:
        """The figure as PNG bytes."""
        return png(self.figure)

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI, so the HTML needs no other file."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


Block = Text | Callout | Heading | Bullets | Preformatted | Table | Figure


@dataclass(frozen=True)
class Section:
    """A titled section of the report."""

    title: str
    blocks: tuple[Block, ...]

    @property
    def anchor(self) -> str:
        """An id for the section's heading, made of its title's letters and digits."""
        return slug(self.title)


def slug(text: str) -> str:
    """Lower-case ASCII letters, digits and dashes only: safe in file names and ids."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


interval = interval_text
"""``value [low, high]`` with ``number`` (the report's name for ``results.interval_text``)."""


def cell(value: float | None, *, mark: str = "", digits: int | None = 3) -> Cell:
    """A numeric cell (``number``)."""
    return Cell(number(value, digits=digits), mark=mark, numeric=True)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def md_escape(value: object) -> str:
    """Plain text made inert in Markdown: HTML characters as entities, Markdown marks escaped.

    Used as the Markdown template's ``finalize``, so every ``{{ value }}`` is escaped
    unless it is ``Markup`` (text the renderer itself made safe).
    """
    if isinstance(value, Markup):
        return str(value)
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
