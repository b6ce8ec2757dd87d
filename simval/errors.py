"""Errors simval raises on bad input, each naming the culprit.

Every error is a ``SimvalError`` and also a ``ValueError``, so callers can catch
either; the subclass says which kind of input was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real


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


def refuse(name: str, value: object, wanted: str) -> OptionError:
    """The one message for an argument outside its allowed values, naming the argument
    (a keyword, or a flag such as ``--reps``), the value given and what is allowed."""
    return OptionError(f"{name}={plain(value)} is not allowed; choose {wanted}")


def check_option(name: str, value: object, allowed: Iterable[object]) -> None:
    """Raise OptionError unless ``value`` is one of ``allowed``, listing the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise refuse(name, value, "one of " + ", ".join(plain(a) for a in allowed))


def check_count(name: str, value: object, *, at_least: int = 1) -> int:
    """``value`` as an int, or OptionError unless it is a whole number (an int, not a
    bool) of at least ``at_least``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < at_least:
        raise refuse(name, value, f"a whole number of at least {at_least}")
    return int(value)


def check_number(
    name: str,
    value: object,
    *,
    above: float = -math.inf,
    below: float = math.inf,
) -> float:
    """``value`` as a float, or OptionError unless it is a real number strictly between
    ``above`` and ``below`` (a bool is not a number here)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not above < value < below
    ):
        if below == math.inf:
            wanted = "a positive number" if above == 0 else f"a number above {above:g}"
        else:
            wanted = f"a number strictly between {above:g} and {below:g}"
        raise refuse(name, value, wanted)
    return float(value)


def check_alpha(value: object, *, name: str = "alpha") -> float:
    """The significance level: a number strictly between 0 and 1 (a 1 - alpha
    confidence level is spelled through ``alpha`` everywhere in simval)."""
    return check_number(name, value, above=0, below=1)


def check_seed(name: str, value: object) -> None:
    """Raise OptionError unless ``value`` seeds numpy: None, a non-negative whole
    number or a ``numpy.random.Generator``."""
    import numpy as np

    if value is None or isinstance(value, np.random.Generator):
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise refuse(
            name, value, "None, a non-negative whole number or a numpy Generator"
        )


def plain(value: object) -> str:
    """``repr(value)``, but a numpy scalar as the Python value it holds (``7``, not
    ``np.int64(7)``), so a message shows a value as the user's data has it."""
    item = getattr(value, "item", None)  # a numpy scalar (numpy loads only when used)
    plain_value = (
        item() if callable(item) and getattr(value, "ndim", None) == 0 else value
    )
    return repr(plain_value)
