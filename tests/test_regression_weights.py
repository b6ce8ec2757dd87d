"""Survey weights in fit(weights=...): R's lm / glm with weights= and sandwich's
vcovHC / vcovCL (tests/reference/weights_reference.R and its committed output), the
svyglm relation, and the errors of bad weights."""

from __future__ import annotations

import numpy as np
import pytest
from support import r_reference

from simval.errors import DataError, OptionError
from simval.regression import fit

DATA, CASES, EXPECTED = r_reference("weights")
FITTED = CASES[CASES["cov"] != "svyglm"]


@pytest.mark.parametrize("case", FITTED.to_dict("records"), ids=FITTED["case"].tolist())
def test_matches_r_lm_and_glm_with_weights(case):
    result = fit(
        case["formula_py"], DATA, family=case["family"], cov=case["cov"], weights="w"
    )
    expected = EXPECTED[EXPECTED["case"] == case["case"]]
    assert result.table["term"].tolist() == expected["term"].tolist()
    for column in ("estimate", "std_error"):
        np.testing.assert_allclose(
            result.table[column], expected[column], rtol=1e-6, atol=1e-9, err_msg=column
        )


def test_svyglm_is_hc0_times_n_over_n_minus_1():
    """survey::svyglm on independent units with these weights: the weighted logit's
    estimates, and HC0 standard errors times sqrt(n / (n - 1))."""
    result = fit("yb ~ C(arm) + x", DATA, family="logit", cov="HC0", weights="w")
    expected = EXPECTED[EXPECTED["case"] == "logit_svyglm"]
    n = len(DATA)
    np.testing.assert_allclose(
        result.table["estimate"], expected["estimate"], rtol=1e-6
    )
    np.testing.assert_allclose(
        result.table["std_error"] * np.sqrt(n / (n - 1)), expected["std_error"],
        rtol=1e-6,
    )  # fmt: skip


def test_weights_change_the_fit_and_refits_keep_them():
    weighted = fit("y ~ C(arm) + x", DATA, weights="w")
    plain = fit("y ~ C(arm) + x", DATA)
    assert not np.allclose(weighted.table["estimate"], plain.table["estimate"])
    assert weighted.weights == "w" and plain.weights is None
    assert weighted.refit(DATA) == weighted
    # equal weights are no weights
    same = fit("y ~ C(arm) + x", DATA.assign(w=2.5), weights="w")
    np.testing.assert_allclose(same.table["estimate"], plain.table["estimate"])
    np.testing.assert_allclose(same.table["std_error"], plain.table["std_error"])


@pytest.mark.parametrize(
    ("data", "options", "error", "message"),
    [
        (DATA.assign(w=-DATA["w"]), {}, DataError, "positive and finite; rows 0"),
        (DATA.assign(w="a"), {}, DataError, "must hold numbers"),
        (DATA, {"weights": "nope"}, DataError, "weights column 'nope'"),
        (DATA, {"family": "logit", "cov": "nonrobust"}, OptionError, "sandwich"),
        (DATA, {"family": "ologit"}, OptionError, "cannot be combined"),
        (DATA, {"absorb": "g"}, OptionError, "cannot be combined"),
    ],
    ids=["negative", "text", "missing-column", "model-based", "ordered", "absorb"],
)
def test_bad_weights_name_the_culprit(data, options, error, message):
    options = {"weights": "w", **options}
    formula = "yb ~ x" if options.get("family") == "logit" else "y ~ x"
    if options.get("family") == "ologit":
        formula = "yc ~ x"
    with pytest.raises(error, match=message):
        fit(formula, data, **options)


def test_rows_without_a_weight_are_dropped_like_na_omit():
    holed = DATA.assign(w=DATA["w"].where(DATA.index % 10 != 0))
    result = fit("y ~ x", holed, weights="w")
    assert result.nobs == len(DATA) - len(DATA[DATA.index % 10 == 0])
    np.testing.assert_allclose(
        result.table["estimate"],
        fit("y ~ x", DATA[DATA.index % 10 != 0], weights="w").table["estimate"],
    )
