"""What a Wilkinson formula reads: the one parser that study checks and regression fits share.

formulaic parses the formula into terms and factors. formulaic 1.2's own
``required_variables`` leaves out the arguments of stateful transforms
(``center(x)``, ``scale(x)``, ``poly(x, 2)``) until the formula has been
materialized once, so each factor's expression is read here with Python's ``ast``
instead: a study can then reject a formula naming an undeclared variable before any
data is seen, and a fit selects exactly the columns the formula needs.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator

from formulaic import Formula, SimpleFormula
from formulaic.errors import FormulaicError
from formulaic.parser.types import Factor, Term
from formulaic.transforms import TRANSFORMS
from formulaic.utils.code import sanitize_variable_names

from simval.errors import FormulaError

__all__ = [
    "formula_variables",
    "has_intercept",
    "outcome_of",
    "parse_formula",
    "rhs_factors",
]


def parse_formula(formula: str) -> Formula:
    """Parse ``formula`` with formulaic, raising FormulaError with its message's first line."""
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, not {formula!r}")
    try:
        return Formula(formula)
    except (FormulaicError, SyntaxError) as exc:
        raise FormulaError(
            f"cannot parse formula {formula!r}: {_first_line(exc)}"
        ) from None


def formula_variables(formula: str) -> set[str]:
    """Every variable ``formula`` reads from the data, outcome included.

    ``y ~ np.log(x) + center(z) + C(g, levels=[1, 2])`` reads y, x, z and g: names of
    formulaic's transforms (``np``, ``center``, ``C``, ``contr``, ...) and of Python's
    builtins in call position are not data, nor are keyword names and literals.
    """
    parsed = parse_formula(formula)
    return {
        name
        for term in _terms(parsed)
        for factor in term.factors
        for name in _factor_variables(factor, formula=formula)
    }


def outcome_of(formula: str) -> str:
    """The single outcome variable on the left of ``formula`` (``np.log(y) ~ x`` gives y)."""
    parsed = parse_formula(formula)
    if isinstance(parsed, SimpleFormula) or not hasattr(parsed, "lhs"):
        raise FormulaError(
            f"formula {formula!r} has no outcome; write it as 'y ~ {formula}'"
        )
    outcome = {
        name
        for term in _terms(parsed.lhs)
        for factor in term.factors
        for name in _factor_variables(factor, formula=formula)
    }
    if len(outcome) != 1:
        raise FormulaError(
            f"formula {formula!r} must have exactly one outcome on its left side"
        )
    return outcome.pop()


def rhs_factors(formula: str) -> dict[str, set[str]]:
    """Each factor on the right of ``formula`` (``C(gender)``, ``age``, ``np.log(x)``),
    once, in order, with the data variables it reads: what a data check names when a
    term cannot be estimated."""
    parsed = parse_formula(formula)
    return {
        factor.expr: _factor_variables(factor, formula=formula)
        for term in _terms(getattr(parsed, "rhs", parsed))
        for factor in term.factors
        if factor.eval_method in (Factor.EvalMethod.LOOKUP, Factor.EvalMethod.PYTHON)
    }


def has_intercept(formula: str) -> bool:
    """Whether the right of ``formula`` keeps its intercept (no ``- 1`` or ``+ 0``)."""
    parsed = parse_formula(formula)
    return any(str(term) == "1" for term in _terms(getattr(parsed, "rhs", parsed)))


def _terms(part: object) -> Iterator[Term]:
    """The terms of every side and part of a parsed formula (``y ~ x | z`` has several)."""
    if isinstance(part, SimpleFormula):
        yield from part
    else:  # a StructuredFormula, or a tuple of parts
        for sub in part:
            yield from _terms(sub)


def _factor_variables(factor: Factor, *, formula: str) -> set[str]:
    """The data variables one factor reads: its name (a lookup) or its expression's names."""
    if factor.eval_method == Factor.EvalMethod.LOOKUP:
        return {factor.expr}
    if factor.eval_method != Factor.EvalMethod.PYTHON:
        return set()  # a literal such as the intercept's 1
    aliases: dict[str, str] = {}  # `my var` is sanitized to a Python name and back
    code = sanitize_variable_names(factor.expr, {}, aliases)
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(
            f"cannot parse term {factor.expr!r} of formula {formula!r}: {exc.msg}"
        ) from None
    return {aliases.get(name, name) for name in _expression_names(tree)}


def _expression_names(tree: ast.AST) -> set[str]:
    """Names a Python expression reads from the data.

    A name read as a value is data unless it is one of formulaic's transforms (``contr``,
    ``Treatment``); a called name or an attribute's root (``center``, ``np`` of
    ``np.log``) is data only when neither a transform nor a builtin (``x.fillna(0)``
    reads x; an unknown ``sqrt(x)`` reads sqrt, which the data then lacks). ``Q("a b")``
    reads the column named by its string.
    """
    names: set[str] = set()
    functions = {
        id(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_quote(node):
            names.add(node.args[0].value)
        if not isinstance(node, ast.Name) or node.id in TRANSFORMS:
            continue
        if id(node) in functions and hasattr(builtins, node.id):
            continue
        names.add(node.id)
    bound = {  # comprehension and lambda variables are not data
        node.id if isinstance(node, ast.Name) else node.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.arg)
        or (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store))
    }
    return names - bound


def _is_quote(call: ast.Call) -> bool:
    """Whether ``call`` is formulaic's ``Q("column name")``, which reads that column."""
    return (
        isinstance(call.func, ast.Name)
        and call.func.id == "Q"
        and len(call.args) == 1
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    )


def _first_line(exc: Exception) -> str:
    """The first line of an exception message (formulaic appends a highlighted formula)."""
    return str(exc).strip().splitlines()[0]
