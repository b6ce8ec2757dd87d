"""The formula parser study and regression share: every variable a formula reads, and its outcome."""

from __future__ import annotations

import pytest
from formulaic import Formula

from simval.errors import FormulaError, SimvalError
from simval.formulas import formula_variables, outcome_of


@pytest.mark.parametrize(
    ("formula", "variables"),
    [
        ("y ~ x", {"y", "x"}),
        ("y ~ center(z)", {"y", "z"}),  # formulaic's required_variables gives {y}
        ("y ~ center(x) + scale(z)", {"y", "x", "z"}),
        ("y ~ standardize(x) + poly(t, 2)", {"y", "x", "t"}),
        (
            "y ~ np.log(x) + I(a + b) + C(g) + poly(t, 2) + x:w",
            {"y", "x", "a", "b", "g", "t", "w"},
        ),
        ("np.log(y) ~ x", {"y", "x"}),
        ("y ~ log(x) + exp(z) + abs(w)", {"y", "x", "z", "w"}),
        ("y ~ C(x, levels=[1, 2])", {"y", "x"}),
        ('y ~ C(x, contr.treatment("a"))', {"y", "x"}),
        ('y ~ C(g, Treatment("b")) * x', {"y", "g", "x"}),
        ("y ~ bs(x, df=3)", {"y", "x"}),
        ("y ~ x.fillna(0)", {"y", "x"}),
        ("y ~ I(x**2) + {z + 1}", {"y", "x", "z"}),
        ("y ~ (a + b + c)**2 - 1", {"y", "a", "b", "c"}),
        ("y ~ x | g", {"y", "x", "g"}),
        ("y ~ `my var` + center(`my var`):x", {"y", "my var", "x"}),
        ('y ~ Q("my var")', {"y", "my var"}),
        ("y ~ sqrt(x)", {"y", "sqrt", "x"}),  # not a transform: the data must hold it
        ("y ~ 1", {"y"}),
    ],
)
def test_formula_variables(formula: str, variables: set[str]) -> None:
    assert formula_variables(formula) == variables


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x",
        "y ~ C(x, levels=[1, 2]) + np.log(z)",
        "y ~ x * w + I(a + b)",
        "np.log(y) ~ x",
        "y ~ x | g",
    ],
)
def test_formula_variables_agree_with_formulaic_without_stateful_transforms(
    formula: str,
) -> None:
    """Where formulaic's own answer is complete, ours is the same."""
    assert formula_variables(formula) == set(Formula(formula).required_variables)


@pytest.mark.parametrize(
    ("formula", "outcome"),
    [("y ~ x", "y"), ("np.log(y) ~ center(x)", "y"), ("`my y` ~ x", "my y")],
)
def test_outcome_of(formula: str, outcome: str) -> None:
    assert outcome_of(formula) == outcome


@pytest.mark.parametrize(
    ("formula", "culprit"),
    [
        ("x + z", "has no outcome"),
        ("y + w ~ x", "exactly one outcome"),
        ("I(y + w) ~ x", "exactly one outcome"),
    ],
)
def test_outcome_errors(formula: str, culprit: str) -> None:
    with pytest.raises(FormulaError, match=culprit):
        outcome_of(formula)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x +", "cannot parse formula 'y ~ x +': Operator `+`"),
        ("y ~ (x", "cannot parse formula 'y ~ (x': Could not find matching"),
        ("y ~ {x +}", "cannot parse formula 'y ~ {x +}'"),
    ],
)
@pytest.mark.parametrize("parse", [formula_variables, outcome_of])
def test_parse_error_is_one_line_formula_error(parse, formula: str, message: str):
    with pytest.raises(FormulaError) as info:
        parse(formula)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, SimvalError) and isinstance(info.value, ValueError)


def test_a_formula_must_be_a_string() -> None:
    with pytest.raises(FormulaError, match="must be a string, not 3"):
        formula_variables(3)
