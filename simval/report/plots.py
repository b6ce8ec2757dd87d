"""The report's figures, each returned as a matplotlib figure (``png`` makes its image).

matplotlib is imported on first use, and figures are built with its object API
(``matplotlib.figure.Figure`` on an Agg canvas) rather than pyplot: no global backend
is switched and no figure is left registered, so nothing leaks into the caller's
session. The functions take plain numbers; choosing what to plot is ``render``'s job.
Legends sit below the plotting area, so they never cover a bar or an interval.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from simval.errors import MissingDependencyError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
"""Resolution of every figure: sharp on screen, small enough to embed."""

CELL_FONT = 9
"""Font size (points) of the heatmap's numbers and labels: readable at 100 dpi."""

MAX_WIDTH = 10.5
"""Inches a heatmap grows to before wrapping its panels onto rows: the report's text
column at ``DPI``, so the figure is shown at its true size."""

CELL = (0.7, 0.4)
"""Width and height (inches) of a heatmap cell: room for a two-decimal number."""

LEGEND_COLUMNS = 3
"""Series per legend row below a figure."""

HUMAN_COLOR = "#3b3b3b"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)
"""Simulator colours, in the order the simulators are given (the humans are dark grey)."""


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """A colour per series: dark grey for "human", the palette in order for the rest."""
    others = [n for n in dict.fromkeys(names) if n != "human"]
    colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(others)}
    return {"human": HUMAN_COLOR, **colors}


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def forest(
    terms: Sequence[str],
    series: Mapping[str, pd.DataFrame],
    *,
    colors: Mapping[str, str],
    title: str,
    xlabel: str = "estimate (bars: confidence interval)",
) -> Figure:
    """Point estimates with confidence intervals, a row per term, a colour per series.

    Each frame in ``series`` is indexed by term with columns estimate, low, high;
    series are offset vertically within a term's row; missing values are skipped.
    """
    figure = _figure(
        width=7.5,
        height=1.2
        + 0.3 * len(terms) * max(len(series), 2)
        + _legend_height(len(series)),
    )
    ax = figure.add_subplot()
    spread = 0.7
    step = spread / max(len(series) - 1, 1)
    positions = np.arange(len(terms))[::-1].astype(float)
    for i, (name, frame) in enumerate(series.items()):
        frame = frame.reindex(list(terms))
        y = positions + spread / 2 - i * step if len(series) > 1 else positions
        est, low, high = (
            frame[c].to_numpy(dtype=float) for c in ("estimate", "low", "high")
        )
        ok = ~np.isnan(est)
        err = np.vstack([est - low, high - est])[:, ok]
        ax.errorbar(
            est[ok],
            y[ok],
            xerr=np.nan_to_num(err),
            fmt="o",
            color=colors[name],
            label=name,
            capsize=3,
            markersize=5,
        )
    ax.axvline(0, color="#999999", linewidth=0.8, linestyle="--")
    ax.set_yticks(positions, [_wrap(t, 28) for t in terms])
    ax.set_ylim(-0.7, len(terms) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(_wrap(title, 70), fontsize=10)
    _legend_below(figure, count=len(series))
    return figure


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    colors: Mapping[str, str],
    ylabel: str,
    title: str,
    refline: float | None = None,
) -> Figure:
    """Bars grouped by category, one bar per series; an optional dashed reference line."""
    width = min(14.0, max(5.5, 1.0 + 0.3 * len(categories) * (len(series) + 1)))
    figure = _figure(width=width, height=3.6 + _legend_height(len(series)))
    ax = figure.add_subplot()
    x = np.arange(len(categories), dtype=float)
    bar = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * bar
        ax.bar(
            x + offset,
            np.asarray(values, dtype=float),
            bar,
            color=colors[name],
            label=name,
        )
    if refline is not None:
        ax.axhline(refline, color="#555555", linestyle="--", linewidth=1)
    crowded = len(categories) > 6
    ax.set_xticks(
        x,
        [_wrap(c, 24 if crowded else 16) for c in categories],
        fontsize=8,
        rotation=30 if crowded else 0,
        ha="right" if crowded else "center",
    )
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title, 80), fontsize=10)
    _legend_below(figure, count=len(series))
    return figure


def heatmap(panels: Mapping[str, pd.DataFrame], *, title: str, label: str) -> Figure:
    """One annotated heatmap panel per series, all on one colour scale from 0.

    Each frame has rows (e.g. subgroup levels) and columns (e.g. items) in the same
    order across panels; NaN cells stay blank. The figure is sized from the number of
    rows, columns and panels and from its labels, so no label collides with another:
    column labels turn upright where they are wider than a cell, and panels wrap onto
    further rows beyond ``MAX_WIDTH``.
    """
    first = next(iter(panels.values()))
    rows, cols = first.shape
    top = max(
        (
            float(np.nanmax(f.to_numpy(dtype=float)))
            for f in panels.values()
            if f.notna().any().any()
        ),
        default=1.0,
    )
    row_labels = [str(i) for i in first.index]
    col_labels = [str(c) for c in first.columns]
    upright = _text_width(col_labels, size=CELL_FONT) > 0.85 * CELL[0]
    panel_width = cols * CELL[0]
    label_width = _text_width(row_labels, size=CELL_FONT) + 0.3
    across = max(
        1, min(len(panels), int((MAX_WIDTH - label_width - 1.3) // (panel_width + 0.3)))
    )
    down = math.ceil(len(panels) / across)
    titles = [_fit(name, inches=panel_width, size=CELL_FONT + 1) for name in panels]
    below = _text_width(col_labels, size=CELL_FONT) if upright else 0.2
    above = 0.2 * max(t.count("\n") + 1 for t in titles)
    figure = _figure(
        width=label_width + across * (panel_width + 0.3) + 1.3,
        height=0.6 + down * (rows * CELL[1] + below + above + 0.35),
    )
    grid = figure.subplots(down, across, squeeze=False, sharey=True)
    axes = list(grid.ravel()[: len(panels)])
    for ax in grid.ravel()[len(panels) :]:
        ax.remove()
    image = None
    for ax, (name, frame), shown in zip(axes, panels.items(), titles):
        values = frame.to_numpy(dtype=float)
        image = ax.imshow(values, vmin=0, vmax=top or 1.0, cmap="Reds", aspect="auto")
        for (r, c), value in np.ndenumerate(values):
            if not np.isnan(value):
                dark = value > 0.6 * (top or 1.0)
                ax.text(
                    c,
                    r,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=CELL_FONT,
                    color="white" if dark else "black",
                )
        ax.set_xticks(
            range(cols),
            col_labels,
            fontsize=CELL_FONT,
            rotation=90 if upright else 0,
        )
        ax.set_yticks(range(rows), row_labels, fontsize=CELL_FONT)
        ax.set_title(shown, fontsize=CELL_FONT + 1)
    figure.colorbar(image, ax=axes, label=label, shrink=0.9)
    figure.suptitle(_wrap(title, 90), fontsize=10)
    return figure


def _figure(*, width: float, height: float) -> Figure:
    """A new matplotlib Figure on an Agg canvas, or a MissingDependencyError saying what to install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise MissingDependencyError(
            "simval reports need matplotlib; install it with: pip install matplotlib"
        ) from exc
    figure = Figure(figsize=(width, min(height, 30.0)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _legend_below(figure: Figure, *, count: int) -> None:
    """The series' legend below every axes (constrained layout makes room for it), so
    it can never be drawn over the data."""
    figure.legend(
        loc="outside lower center",
        ncols=min(count, LEGEND_COLUMNS),
        fontsize=8,
        frameon=False,
    )


def _legend_height(count: int) -> float:
    """Inches the legend below a figure takes: a line per ``LEGEND_COLUMNS`` series."""
    return 0.25 * math.ceil(count / LEGEND_COLUMNS)


def _text_width(labels: Sequence[str], *, size: float) -> float:
    """The widest line among ``labels`` in inches, set in the default font at ``size``."""
    from matplotlib.textpath import TextPath

    lines = [line for label in labels for line in str(label).split("\n") if line]
    return max(
        (TextPath((0, 0), line, size=size).get_extents().width / 72 for line in lines),
        default=0.0,
    )


def _fit(text: str, *, inches: float, size: float) -> str:
    """``text`` wrapped to lines about ``inches`` wide at ``size`` (from its own mean
    character width), a title that stays over its own panel."""
    width = _text_width([text], size=size)
    if width <= inches:
        return text
    return _wrap(text, max(4, int(0.9 * len(text) * inches / width)))


def _wrap(text: str, width: int) -> str:
    """Long labels broken over lines so they do not overlap."""
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)
