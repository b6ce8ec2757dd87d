"""Reading the files survey data comes in: CSV (any delimiter, decimal commas), Stata
``.dta``, SPSS ``.sav`` and Parquet, with their value and variable labels.

``read_survey(path) -> Survey`` keeps the numbers a labelled file stores (the codes a
study's options declare) and the labels beside them, so ``simval init`` can draft a
study from them and ``--human`` reads every format the same way. A file that cannot be
read is one ``DataError`` line naming the file and what to do about it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from simval.errors import DataError

Format = Literal["csv", "stata", "spss", "parquet"]

SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".dta": "stata",
    ".sav": "spss",
    ".zsav": "spss",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""The file name endings read_survey takes, and the format each one names."""

DELIMITERS = (",", ";", "\t", "|")
"""The CSV delimiters detected, preferred in this order when several fit."""

_SAMPLE_RECORDS = 200
"""How many records the delimiter and decimal detection look at."""

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_DECIMAL_POINT = re.compile(r"^[+-]?\d*\.\d+$")

_FORMAT_NAMES: dict[str, str] = {
    "csv": "a CSV text",
    "stata": "a Stata .dta",
    "spss": "an SPSS .sav",
    "parquet": "a Parquet",
    "excel": "an Excel workbook",
}


@dataclass(frozen=True)
class Survey:
    """A survey file as simval reads it.

    ``frame``: one row per respondent; a labelled column holds its codes (numbers),
    whose labels are in ``value_labels`` (column -> code -> label; a Parquet
    categorical's categories coded 1, 2, ... in their order, as R numbers a factor's
    levels). ``variable_labels``: column -> its description (often the question).
    ``user_missing``: column -> the codes an SPSS file declares missing; they stay codes
    in a column with value labels (an item declares them under ``missing:``) and are
    blank in a column without (a quantity such as age, where 999 is no age).
    ``delimiter`` and ``decimal``: what a CSV file was split on (detected).
    """

    frame: pd.DataFrame
    value_labels: dict[str, dict[float, str]] = field(default_factory=dict)
    variable_labels: dict[str, str] = field(default_factory=dict)
    format: Format = "csv"
    delimiter: str | None = None
    decimal: str | None = None
    user_missing: dict[str, tuple[float, ...]] = field(default_factory=dict)
    path: str = ""

    @property
    def reading_note(self) -> str | None:
        """One line on how a CSV file was split when it was not the plain comma and
        point (None otherwise), for a command to print."""
        if self.format != "csv" or (self.delimiter, self.decimal) == (",", "."):
            return None
        decimals = " and decimal commas" if self.decimal == "," else ""
        return (
            f"Read {self.path} as CSV separated by {_delimiter_name(self.delimiter)}"
            f"{decimals} (detected)."
        )


def read_survey(path: str | Path, *, encoding: str = "utf-8") -> Survey:
    """The survey in ``path`` (CSV, .dta, .sav, Parquet: see ``SUFFIXES``), its codes
    and labels; DataError naming the file and the fix when it cannot be read.

    ``encoding`` applies to CSV text (a UTF-8 byte-order mark is dropped either way).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    wanted = _format_of_name(path)
    found = _format_of_bytes(path)
    if found is not None and found != wanted:
        suffix = {v: k for k, v in reversed(SUFFIXES.items())}.get(found)
        fix = (
            f"rename it to end in {suffix}"
            if suffix
            else "save it as CSV (UTF-8) or read it with pandas and pass the DataFrame"
        )
        raise DataError(
            f"{path} holds {_FORMAT_NAMES[found]} file, not {_FORMAT_NAMES[wanted]}; "
            f"{fix}"
        )
    if wanted != "csv" and found is None:
        raise DataError(
            f"{path} is not {_FORMAT_NAMES[wanted]} file (its first bytes are not "
            "one); if it is text, rename it to end in .csv"
        )
    readers = {"csv": _read_csv, "stata": _read_stata, "spss": _read_spss}
    if wanted == "parquet":
        return _read_parquet(path)
    return readers[wanted](path, encoding=encoding)


def _format_of_name(path: Path) -> Format:
    """The format the file's name ending declares; DataError for any other ending."""
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if suffix in (".xlsx", ".xls", ".xlsm", ".ods"):
        raise DataError(
            f"{path} is a spreadsheet; save it as CSV (UTF-8) or pass "
            "pandas.read_excel(...) as a DataFrame"
        )
    known = ", ".join(SUFFIXES)
    raise DataError(
        f"{path}: cannot read files ending in {suffix!r}; simval reads {known}"
    )


def _format_of_bytes(path: Path) -> str | None:
    """The binary format the file's first bytes announce (None for text)."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:4] in (b"$FL2", b"$FL3"):
        return "spss"
    if head.startswith(b"<stata_dta>"):
        return "stata"
    if (
        len(head) >= 4
        and 104 <= head[0] <= 115
        and head[1] in (1, 2)
        and head[2:4] == b"\x01\x00"
    ):
        return "stata"  # the formats before Stata 13: version, byte order, type 1
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        return "excel"
    return None


def _read_csv(path: Path, *, encoding: str) -> Survey:
    """A CSV file split on its detected delimiter, with decimal commas where its
    numbers have them."""
    raw = path.read_bytes()
    try:
        text = raw.decode(
            "utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding
        )
    except UnicodeDecodeError as exc:
        raise DataError(_encoding_problem(path, raw, exc, encoding=encoding)) from None
    if not text.strip():
        raise DataError(
            f"{path} is empty: it needs a header line and a row per respondent"
        )
    sample = _records(text)
    delimiter = _delimiter(sample)
    decimal = _decimal(sample, delimiter=delimiter)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, decimal=decimal)
    except pd.errors.ParserError as exc:
        raise DataError(
            _ragged(path, text, delimiter=delimiter) or f"{path}: {exc}"
        ) from None
    return Survey(
        frame=frame, format="csv", delimiter=delimiter, decimal=decimal, path=str(path)
    )


def _records(text: str) -> list[str]:
    """The first records of the file, whole (a quoted field may span lines)."""
    lines = text.splitlines(keepends=True)[: _SAMPLE_RECORDS * 2]
    return [line for line in lines if line.strip()][:_SAMPLE_RECORDS]


def _split(lines: list[str], delimiter: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(lines)), delimiter=delimiter))


def _delimiter(sample: list[str]) -> str:
    """The delimiter that splits every sampled record into the same number (more than
    one) of fields, the most fields winning; else the one splitting the header most."""
    counts = {d: [len(r) for r in _split(sample, d) if r] for d in DELIMITERS}
    consistent = [d for d, n in counts.items() if n and min(n) == max(n) > 1]
    if consistent:
        return max(consistent, key=lambda d: (counts[d][0], -DELIMITERS.index(d)))
    header = {d: n[0] if n else 1 for d, n in counts.items()}
    return max(DELIMITERS, key=lambda d: (header[d], -DELIMITERS.index(d)))


def _decimal(sample: list[str], *, delimiter: str) -> str:
    """ "," when fields split on another delimiter hold numbers with decimal commas (as
    Excel writes them where the comma is the decimal mark) and none with points."""
    if delimiter == ",":
        return "."
    fields = [f.strip() for row in _split(sample[1:], delimiter) for f in row]
    commas = any(_DECIMAL_COMMA.match(f) for f in fields)
    points = any(_DECIMAL_POINT.match(f) for f in fields)
    return "," if commas and not points else "."


def _ragged(path: Path, text: str, *, delimiter: str) -> str | None:
    """The line naming the first record whose field count differs from the header's."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, [])
    for row in reader:
        if row and len(row) != len(header):
            return (
                f"{path}: line {reader.line_num} has {len(row)} fields but the header "
                f"has {len(header)}, splitting on {_delimiter_name(delimiter)} (detected); "
                "quote the fields that contain it, or save the file with one delimiter"
            )
    return None


def _delimiter_name(delimiter: str | None) -> str:
    names = {",": "',' (comma)", ";": "';' (semicolon)", "\t": "tabs", "|": "'|' (bar)"}
    return names.get(delimiter, repr(delimiter))


def _encoding_problem(
    path: Path, raw: bytes, exc: UnicodeDecodeError, *, encoding: str
) -> str:
    """Where the text stops being ``encoding`` and which encoding to convert from."""
    line = raw[: exc.start].count(b"\n") + 1
    try:
        raw.decode("cp1252")
        source = "cp1252"  # Excel's and Windows' usual one in Western Europe and the Americas
    except UnicodeDecodeError:
        source = "latin-1"
    return (
        f"{path} is not {encoding} text (byte 0x{raw[exc.start]:02x} on line {line}); it "
        f"is probably {source}: convert it (iconv -f {source} -t utf-8, or save it as "
        f"'CSV UTF-8'), or in Python read_survey(path, encoding={source!r})"
    )


def _read_stata(path: Path, *, encoding: str) -> Survey:
    """A Stata file's codes, value labels and variable labels (pyreadstat)."""
    import pyreadstat

    try:
        frame, meta = pyreadstat.read_dta(str(path))
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError) as exc:
        raise DataError(
            f"{path}: cannot read it as a Stata .dta file ({exc}); save it again from "
            "Stata (saveold) or export it as CSV"
        ) from None
    return _labelled(path, frame, meta, fmt="stata", user_missing={})


def _read_spss(path: Path, *, encoding: str) -> Survey:
    """An SPSS file's codes, value labels, variable labels and declared missing values
    (pyreadstat, reading user-missing values as the codes they are)."""
    import pyreadstat

    try:
        frame, meta = pyreadstat.read_sav(str(path), user_missing=True)
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError) as exc:
        raise DataError(
            f"{path}: cannot read it as an SPSS .sav file ({exc}); save it again from "
            "SPSS or export it as CSV"
        ) from None
    declared = _declared_missing(frame, meta)
    for column, codes in declared.items():
        if column not in meta.variable_value_labels:
            frame[column] = frame[column].mask(frame[column].isin(codes))
    return _labelled(path, frame, meta, fmt="spss", user_missing=declared)


def _declared_missing(frame: pd.DataFrame, meta) -> dict[str, tuple[float, ...]]:
    """Per column, the codes in the data or its labels that SPSS declares missing
    (discrete values and ranges alike)."""
    declared: dict[str, tuple[float, ...]] = {}
    ranges = {c: list(r) for c, r in (meta.missing_ranges or {}).items()}
    for column, values in (meta.missing_user_values or {}).items():
        ranges.setdefault(column, []).extend({"lo": v, "hi": v} for v in values)
    for column, spans in ranges.items():
        if column not in frame or not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        seen = set(frame[column].dropna()) | set(
            meta.variable_value_labels.get(column, {})
        )
        codes = sorted(
            _code(v) for v in seen if any(s["lo"] <= v <= s["hi"] for s in spans)
        )
        if codes:
            declared[column] = tuple(codes)
    return declared


def _labelled(
    path: Path, frame: pd.DataFrame, meta, *, fmt: Format, user_missing: dict
) -> Survey:
    """A Survey from pyreadstat's frame and metadata (whole-number columns as ints)."""
    value_labels = {
        column: {_code(code): str(label) for code, label in sorted(labels.items())}
        for column, labels in meta.variable_value_labels.items()
        if labels
    }
    variable_labels = {
        column: label.strip()
        for column, label in meta.column_names_to_labels.items()
        if label and label.strip()
    }
    return Survey(
        frame=_whole_as_int(frame),
        value_labels=value_labels,
        variable_labels=variable_labels,
        format=fmt,
        user_missing=user_missing,
        path=str(path),
    )


def _read_parquet(path: Path) -> Survey:
    """A Parquet file; each categorical column becomes codes 1, 2, ... in the order of
    its categories, the categories its value labels."""
    try:
        frame = pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(
            f"{path}: cannot read it as a Parquet file ({exc}); write it again with "
            "pandas.DataFrame.to_parquet or export it as CSV"
        ) from None
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    value_labels: dict[str, dict[float, str]] = {}
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            categories = values.cat.categories
            if pd.api.types.is_numeric_dtype(categories):
                frame[column] = values.astype(float)
                continue
            value_labels[column] = {i + 1: str(c) for i, c in enumerate(categories)}
            codes = values.cat.codes.astype(float) + 1
            frame[column] = codes.mask(values.isna())
    return Survey(
        frame=_whole_as_int(frame),
        value_labels=value_labels,
        format="parquet",
        path=str(path),
    )


def _whole_as_int(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns holding only whole numbers, none missing, as ints (as a CSV reads
    them), so a prompt shows 34, not 34.0."""
    whole = {
        column: frame[column].astype(np.int64)
        for column in frame.columns
        if pd.api.types.is_float_dtype(frame[column])
        and frame[column].notna().all()
        and (frame[column] == np.round(frame[column])).all()
    }
    return frame.assign(**whole) if whole else frame


def _code(value: float) -> float:
    """A code as the study writes it: 2, not 2.0."""
    value = float(value)
    return int(value) if value.is_integer() else value
