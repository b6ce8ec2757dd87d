"""The report's figures, each returned as PNG bytes.

matplotlib is imported on first use, and figures are built with its object API
(``matplotlib.figure.Figure``, Agg canvas) rather than pyplot: no global backend
is switched and no figure is left registered, so nothing leaks into the caller's
session. The functions take plain numbers; choosing what to plot is ``render``'s job.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DPI = 100
"""Resolution of every figure: sharp on screen, small enough to embed."""

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


def forest(
    terms: Sequence[str],
    series: Mapping[str, pd.DataFrame],
    *,
    colors: Mapping[str, str],
    title: str,
    xlabel: str = "estimate (bars: confidence interval)",
) -> bytes:
    """Point estimates with confidence intervals, a row per term, a colour per series.

    Each frame in ``series`` is indexed by term with columns estimate, low, high;
    series are offset vertically within a term's row; missing values are skipped.
    """
    figure = _figure(width=7.5, height=1.2 + 0.3 * len(terms) * max(len(series), 2))
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
    ax.legend(loc="best", fontsize=8)
    return _png(figure)


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    colors: Mapping[str, str],
    ylabel: str,
    title: str,
    refline: float | None = None,
) -> bytes:
    """Bars grouped by category, one bar per series; an optional dashed reference line."""
    width = min(14.0, max(5.5, 1.0 + 0.3 * len(categories) * (len(series) + 1)))
    figure = _figure(width=width, height=3.6)
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
    ax.legend(fontsize=8)
    return _png(figure)


def heatmap(panels: Mapping[str, pd.DataFrame], *, title: str, label: str) -> bytes:
    """One annotated heatmap panel per series, all on one colour scale from 0.

    Each frame has rows (e.g. subgroup levels) and columns (e.g. items) in the same
    order across panels; NaN cells stay blank.
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
    figure = _figure(
        width=min(16.0, 1.5 + len(panels) * (1.2 + 0.9 * cols)),
        height=1.2 + 0.45 * rows,
    )
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    image = None
    for ax, (name, frame) in zip(axes, panels.items()):
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
                    fontsize=7,
                    color="white" if dark else "black",
                )
        ax.set_xticks(
            range(cols), [_wrap(str(c), 12) for c in frame.columns], fontsize=8
        )
        ax.set_yticks(range(rows), [str(i) for i in frame.index], fontsize=8)
        ax.set_title(_wrap(name, 30), fontsize=9)
    figure.colorbar(image, ax=list(axes), label=label, shrink=0.9)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def _figure(*, width: float, height: float):
    """A new matplotlib Figure (object API, Agg canvas), or an ImportError saying what to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ImportError(
            "simval reports need matplotlib: pip install matplotlib"
        ) from exc
    return Figure(figsize=(width, min(height, 30.0)), dpi=DPI, layout="constrained")


def _png(figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _wrap(text: str, width: int) -> str:
    """Long labels broken over lines so they do not overlap."""
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)
