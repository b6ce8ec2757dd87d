"""Progress of long work: a bar on a terminal, plain periodic lines in a log, a summary at the end.

Every long phase (model conversion, fine-tuning, scoring, validation, reports) runs
through ``progress``: on a terminal a tqdm bar with counts and an ETA; when stderr
is not a terminal (a job script, CI, output piped to a file) a plain line every
``LOG_INTERVAL`` seconds instead of carriage-return redraws, so a log shows that
work goes on and how far it is. Either way a phase ends with one line naming what
was done and how long it took. ``enabled=False`` silences it and every bar and phase
that runs inside it (a simulator's scoring bars inside validate's replicates, say,
whatever the simulator's own ``progress``), so ``progress=False`` on any call silences
the whole call; ``None`` (the default everywhere) shows it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

LOG_INTERVAL = 30.0
"""Seconds between plain progress lines when stderr is not a terminal."""

T = TypeVar("T")

_silenced = threading.local()
"""Per thread, how many silenced bars and phases are open: while any is, every bar and
phase started in that thread is silent too."""


def silenced() -> bool:
    """Whether a silenced bar or phase is open in this thread."""
    return getattr(_silenced, "depth", 0) > 0


def _silence(change: int) -> None:
    _silenced.depth = getattr(_silenced, "depth", 0) + change


class Progress(tqdm):
    """tqdm that writes whole lines (at most every ``LOG_INTERVAL`` s) where stderr is no
    terminal, and closes with a one-line summary: ``desc: N unit in 1 min 3 s``."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        desc: str,
        total: float | None = None,
        unit: str = "it",
        enabled: bool | None = None,
        **options: Any,
    ) -> None:
        stream = sys.stderr
        self._plain = not _is_terminal(stream)
        self._started = time.perf_counter()
        quiet = enabled is False or silenced()
        self._silencing = quiet
        if quiet:
            _silence(+1)  # until closed, whatever runs inside is silent too
        super().__init__(
            iterable,
            desc=desc,
            total=total,
            unit=unit,
            file=stream,
            disable=quiet,
            leave=False,
            mininterval=LOG_INTERVAL if self._plain else 0.1,
            maxinterval=LOG_INTERVAL if self._plain else 10.0,
            ascii=self._plain or None,
            dynamic_ncols=not self._plain,
            **options,
        )

    def display(self, msg: str | None = None, pos: int | None = None) -> bool | None:
        """On a terminal tqdm's redraw; in a log one plain line per refresh."""
        if not self._plain:
            return super().display(msg, pos)
        if msg is None:
            self.fp.write(f"{self.__str__()}\n")
            self.fp.flush()
        return True

    def close(self) -> None:
        """Close the bar and write the summary line (once)."""
        if getattr(self, "_silencing", False):
            self._silencing = False
            _silence(-1)
        if self.disable:
            return
        done, unit = self.n, self.unit
        if self._plain:
            self.fp = _Discard()  # tqdm's closing carriage return has no place in a log
        super().close()
        seconds = time.perf_counter() - self._started
        sys.stderr.write(f"{self.desc}: {done:g} {unit} in {duration(seconds)}\n")
        sys.stderr.flush()


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    enabled: bool | None = None,
) -> Iterator[T]:
    """Iterate ``iterable`` under a ``Progress`` bar (see the module docstring)."""
    bar = Progress(iterable, desc=desc, total=total, unit=unit, enabled=enabled)
    try:
        yield from bar
    finally:
        bar.close()


@contextmanager
def phase(desc: str, *, enabled: bool | None = None) -> Iterator[None]:
    """A step without counts (loading a model): a start line, then ``desc: done in 3.2 s``;
    with ``enabled=False`` silent, and so is every bar and phase inside it."""
    if enabled is False or silenced():
        _silence(+1)
        try:
            yield
        finally:
            _silence(-1)
        return
    started = time.perf_counter()
    sys.stderr.write(f"{desc} ...\n")
    sys.stderr.flush()
    yield
    sys.stderr.write(f"{desc}: done in {duration(time.perf_counter() - started)}\n")
    sys.stderr.flush()


@contextmanager
def quiet(enabled: bool | None = False) -> Iterator[None]:
    """Every bar and phase inside silent where ``enabled`` is False (a call's
    ``progress=False`` around work that has no bar of its own, such as loading or
    pre-scoring); shown as they would be otherwise."""
    if enabled is not False:
        yield
        return
    _silence(+1)
    try:
        yield
    finally:
        _silence(-1)


def duration(seconds: float) -> str:
    """``4.2 s``, ``1 min 3 s`` or ``1 h 2 min``: how long a phase took, for people."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class _Discard:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
