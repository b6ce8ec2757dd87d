"""Progress of long work: a bar on a terminal, plain periodic lines in a log, a summary at the end.

Every long phase (model conversion, fine-tuning, scoring, validation, reports) runs
through ``progress``: on a terminal a tqdm bar with counts and an ETA; when stderr
is not a terminal (a job script, CI, output piped to a file) a plain line every
``LOG_INTERVAL`` seconds instead of carriage-return redraws, so a log shows that
work goes on and how far it is. Either way a phase ends with one line naming what
was done and how long it took. ``enabled=False`` silences it; ``None`` (the default
everywhere) shows it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

LOG_INTERVAL = 30.0
"""Seconds between plain progress lines when stderr is not a terminal."""

T = TypeVar("T")


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
        super().__init__(
            iterable,
            desc=desc,
            total=total,
            unit=unit,
            file=stream,
            disable=enabled is False,
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
    """A step without counts (loading a model): a start line, then ``desc: done in 3.2 s``."""
    if enabled is False:
        yield
        return
    started = time.perf_counter()
    sys.stderr.write(f"{desc} ...\n")
    sys.stderr.flush()
    yield
    sys.stderr.write(f"{desc}: done in {duration(time.perf_counter() - started)}\n")
    sys.stderr.flush()


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
