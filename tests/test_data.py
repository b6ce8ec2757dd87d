"""Survey files in every format simval reads (simval.data.read_survey): each written by
its own library with value labels and read back as codes and labels; CSV delimiters and
decimal commas detected; every unreadable file refused in one line naming the fix."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from simval.data import read_survey
from simval.errors import DataError
from simval.study import Item, Study
from simval.tasks import read_human

TRUST = {1: "Not at all", 2: "Somewhat", 3: "A lot", 8: "Don't know"}
GENDER = {1: "Male", 2: "Female"}


def _people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "respondent": [11, 12, 13, 14, 15],
            "age": [34, 51, 27, 999, 62],
            "gender": [1, 2, 2, 1, 2],
            "trust": [1, 3, 8, 2, 3],
            "income": [1200.5, 830.25, 2100.0, 1500.75, 990.0],
        }
    )


def test_a_stata_file_gives_its_codes_value_labels_and_variable_labels(tmp_path):
    """pandas.to_stata writes value labels; read_survey returns the codes as whole
    numbers, the labels per code and the variable labels, and read_human indexes the
    respondents by their id."""
    path = tmp_path / "survey.dta"
    _people().to_stata(
        path,
        write_index=False,
        value_labels={"trust": TRUST, "gender": GENDER},
        variable_labels={"trust": "How much do you trust the government?"},
    )
    survey = read_survey(path)
    assert survey.format == "stata"
    assert survey.value_labels == {"trust": TRUST, "gender": GENDER}
    assert survey.variable_labels == {"trust": "How much do you trust the government?"}
    assert survey.frame["trust"].tolist() == [1, 3, 8, 2, 3]
    assert survey.frame["trust"].dtype == np.int64
    assert survey.frame["income"].tolist() == _people()["income"].tolist()
    assert survey.reading_note is None
    people = read_human(path)
    assert people.index.tolist() == [11, 12, 13, 14, 15]
    assert people.loc[13, "trust"] == 8


def test_an_spss_file_keeps_labelled_missing_codes_and_blanks_unlabelled_ones(tmp_path):
    """SPSS declares 8 missing in the labelled trust item (kept as the code, listed in
    user_missing, so the study can declare it) and 990-999 in age, which has no labels
    (a quantity: 999 becomes missing, never an age)."""
    path = tmp_path / "survey.sav"
    pyreadstat.write_sav(
        _people().astype({"age": float, "trust": float, "gender": float}),
        str(path),
        column_labels={"trust": "Trust in government"},
        variable_value_labels={"trust": TRUST, "gender": GENDER},
        missing_ranges={"trust": [8], "age": [{"lo": 990, "hi": 999}]},
    )
    survey = read_survey(path)
    assert survey.format == "spss"
    assert survey.value_labels["trust"] == TRUST
    assert survey.user_missing == {"trust": (8,), "age": (999,)}
    assert survey.frame["trust"].tolist() == [1, 3, 8, 2, 3]
    assert survey.frame["age"].isna().tolist() == [False, False, False, True, False]
    assert survey.frame["gender"].dtype == np.int64


def test_a_parquet_file_codes_its_categoricals_in_category_order(tmp_path):
    """A pandas categorical becomes codes 1, 2, ... in its categories' order (missing
    stays missing) with the categories as labels; the saved index comes back as a
    column."""
    people = _people().set_index("respondent")
    people["gender"] = pd.Categorical(
        ["Male", "Female", None, "Male", "Female"], categories=["Male", "Female"]
    )
    path = tmp_path / "survey.parquet"
    people.to_parquet(path)
    survey = read_survey(path)
    assert survey.format == "parquet"
    assert survey.value_labels == {"gender": {1: "Male", 2: "Female"}}
    assert survey.frame["gender"].tolist()[:2] == [1.0, 2.0]
    assert survey.frame["gender"].isna().tolist() == [False, False, True, False, False]
    assert read_human(path).index.tolist() == [11, 12, 13, 14, 15]


def test_an_excel_csv_with_semicolons_and_decimal_commas_is_detected(tmp_path):
    """Excel where the comma is the decimal mark: ';' between fields, ',' in numbers
    (and a byte-order mark); both detected and said, the numbers read as numbers."""
    path = tmp_path / "excel.csv"
    text = "respondent;age;income;trust\n11;34;1200,5;1\n12;51;830,25;3\n13;27;2100;8\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    survey = read_survey(path)
    assert (survey.delimiter, survey.decimal) == (";", ",")
    assert survey.frame.columns.tolist() == ["respondent", "age", "income", "trust"]
    assert survey.frame["income"].tolist() == [1200.5, 830.25, 2100.0]
    assert "';' (semicolon) and decimal commas" in survey.reading_note
    people = read_human(path)
    assert people.attrs["reading_note"] == survey.reading_note
    assert people["age"].tolist() == [34, 51, 27]


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("age\ttrust\tcity\n34\t1\tLeeds\n51\t3\tYork\n", "\t"),
        ("age|trust\n34|1\n51|3\n", "|"),
        ('age,trust,note\n34,1,"a; b"\n51,3,"c; d"\n', ","),
        ("age;trust\n34;1\n51;3\n", ";"),
    ],
)
def test_the_delimiter_is_the_one_that_splits_every_row_alike(
    tmp_path, text, delimiter
):
    """Tabs, bars, semicolons, and commas around quoted fields that hold a semicolon."""
    path = tmp_path / "data.csv"
    path.write_text(text)
    survey = read_survey(path)
    assert survey.delimiter == delimiter
    assert survey.decimal == "."
    assert survey.frame["trust"].tolist() == [1, 3]
    assert (survey.reading_note is None) == (delimiter == ",")


def test_a_plain_comma_csv_reads_as_pandas_reads_it(tmp_path):
    """The CSV simval task writes comes back exactly as pandas.read_csv reads it."""
    path = tmp_path / "data.csv"
    _people().to_csv(path, index=False)
    survey = read_survey(path)
    pd.testing.assert_frame_equal(survey.frame, pd.read_csv(path))
    assert (survey.delimiter, survey.decimal, survey.reading_note) == (",", ".", None)


def test_labelled_answers_stay_codes_that_pass_the_studys_check(tmp_path):
    """A study whose options are the file's value labels accepts the file as read."""
    path = tmp_path / "survey.dta"
    _people().to_stata(path, write_index=False, value_labels={"trust": TRUST})
    study = Study(
        items=(
            Item(
                "trust",
                "Trust?",
                options={"Not at all": 1, "Somewhat": 2, "A lot": 3},
                missing={"Don't know": 8},
            ),
        ),
        persona=("age",),
    )
    study.check_data(read_human(path))


def _bad(tmp_path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_survey(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_ragged_csv_names_the_line_and_the_delimiter(tmp_path):
    message = _bad(tmp_path, "r.csv", b"a;b;c\n1;2;3\n4;5;6;7\n")
    assert "line 3 has 4 fields but the header has 3" in message
    assert "';' (semicolon)" in message


def test_text_that_is_not_utf8_names_the_encoding_to_convert_from(tmp_path):
    message = _bad(tmp_path, "w.csv", "city,n\nMálaga,2\n".encode("cp1252"))
    assert "not utf-8 text (byte 0xe1 on line 2)" in message
    assert "iconv -f cp1252 -t utf-8" in message
    frame = read_survey(tmp_path / "w.csv", encoding="cp1252").frame
    assert frame["city"].tolist() == ["Málaga"]


def test_a_file_under_the_wrong_name_says_what_it_holds(tmp_path):
    """An SPSS file named .csv (the issue's 'utf-8 codec can't decode' case), text
    named .dta, a spreadsheet, an unknown ending, and files that do not parse."""
    sav = tmp_path / "real.sav"
    pyreadstat.write_sav(_people(), str(sav))
    shutil.copy(sav, tmp_path / "data.csv")
    with pytest.raises(
        DataError, match="holds an SPSS .sav file, not a CSV text; rename"
    ):
        read_survey(tmp_path / "data.csv")
    assert "if it is text, rename it to end in .csv" in _bad(
        tmp_path, "t.dta", b"a,b\n1,2\n"
    )
    assert "save it as CSV (UTF-8)" in _bad(tmp_path, "book.xlsx", b"PK\x03\x04rest")
    assert "simval reads .csv, .tsv" in _bad(tmp_path, "data.rds", b"X\n")
    assert "cannot read it as a Stata .dta file" in _bad(
        tmp_path, "c.dta", b"<stata_dta>x"
    )
    assert "cannot read it as an SPSS .sav file" in _bad(tmp_path, "c.sav", b"$FL2xx")
    assert "cannot read it as a Parquet file" in _bad(tmp_path, "c.parquet", b"PAR1xx")
    assert "is empty" in _bad(tmp_path, "e.csv", b"\n")


def test_read_human_still_refuses_a_header_without_rows(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("age;trust\n")
    with pytest.raises(DataError, match="has a header but no respondents"):
        read_human(path)
    with pytest.raises(DataError, match="does not exist"):
        read_human(tmp_path / "none.sav")
