"""Errors simval raises on bad input, each naming the culprit.

Every error is a ``SimvalError`` and also a ``ValueError``, so callers can catch
either; the subclass says which kind of input was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class SimvalError(ValueError):
    """Base class of every error simval raises on bad input."""


class OptionError(SimvalError):
    """An option (family, cov, strategy, ...) took a value outside its allowed set."""


class StudyError(SimvalError):
    """The study declaration is inconsistent (duplicate item, undeclared variable, ...)."""


class DataError(SimvalError):
    """A data frame lacks a column, is empty, or holds codes outside an item's options."""


class FormulaError(SimvalError):
    """A formula names a variable or term that the data cannot provide."""


class EstimationError(SimvalError):
    """A model cannot be estimated on the data (separation, constant outcome, ...)."""


class SimulatorError(SimvalError):
    """A simulator returned output that breaks the Simulator contract."""


class ModelError(SimvalError):
    """A model or adapter cannot be found, read or loaded (a missing folder, one without
    weights or adapter files, a hub id not on this machine, a failed load)."""


class MissingDependencyError(SimvalError, ImportError):
    """An optional dependency is not installed; the message names the install command.

    Also an ``ImportError``, so code that catches ``ImportError`` keeps working.
    """


def check_option(name: str, value: object, allowed: Iterable[object]) -> None:
    """Raise OptionError unless ``value`` is one of ``allowed``, listing the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        choices = ", ".join(plain(a) for a in allowed)
        raise OptionError(
            f"{name}={plain(value)} is not allowed; choose one of {choices}"
        )


def plain(value: object) -> str:
    """``repr(value)``, but a numpy scalar as the Python value it holds (``7``, not
    ``np.int64(7)``), so a message shows a value as the user's data has it."""
    return repr(value.item() if isinstance(value, np.generic) else value)
