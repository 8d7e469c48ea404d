"""Users to CSV / Excel, and CSV rows back to user bodies (pure: no I/O beyond buffers)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, TYPE_STRING

COLUMNS = (
    "email",
    "name",
    "extension",
    "smartnumber",
    "outbound_numbers",
    "allowed_clis",
    "role",
    "language",
    "status",
    "ring_timeout_s",
)
LIST_COLUMNS = ("outbound_numbers", "allowed_clis")
MAX_IMPORT_ROWS = 1000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not one row's problem)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _csv_safe(text: str) -> str:
    """Spreadsheets run cells starting with = @ (or +/- not followed by a digit) as formulas."""
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in ("+", "-") and not text[1:2].isdigit()):
        return "'" + text
    return text


def rows(users: Iterable[dict[str, Any]]) -> list[list[str]]:
    return [[_cell(user.get(column)) for column in COLUMNS] for user in users]


def to_csv(users: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows([[_csv_safe(v) for v in row] for row in rows(users)])
    return buffer.getvalue().encode("utf-8")


def to_xlsx(users: Iterable[dict[str, Any]]) -> bytes:
    book = Workbook(write_only=False)
    sheet = book.active
    assert sheet is not None
    sheet.title = "Users"
    sheet.append(list(COLUMNS))
    for row in rows(users):
        # Older records or imports may hold characters a workbook cannot carry.
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("", value) for value in row])
    # Every value is text (a "+44..." number or "=..." name must never become a formula).
    for line in sheet.iter_rows(min_row=2):
        for cell in line:
            cell.data_type = TYPE_STRING
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def parse_csv(text: str) -> list[tuple[int, dict[str, Any]]]:
    """(row number as a spreadsheet shows it, user body) for each non-empty row."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportFileError("the file is empty") from None
    except csv.Error as exc:
        raise ImportFileError(f"not CSV: {exc}") from None
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ImportFileError(
            f"unknown columns: {', '.join(unknown)} (known: {', '.join(COLUMNS)})"
        )
    for needed in ("email", "name"):
        if needed not in header:
            raise ImportFileError(f"the column {needed} is required")
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        for values in reader:
            row_number = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                out.append(
                    (row_number, {"__error__": f"{len(values)} cells, header has {len(header)}"})
                )
                continue
            body: dict[str, Any] = {}
            for column, raw in zip(header, values, strict=True):
                value = raw.strip().removeprefix("'")
                if value == "":
                    continue
                if column in LIST_COLUMNS:
                    body[column] = [
                        v for v in value.replace(";", " ").replace(",", " ").split() if v
                    ]
                elif column == "ring_timeout_s":
                    body[column] = int(value) if value.isdigit() else value
                else:
                    body[column] = value
            out.append((row_number, body))
            if len(out) > MAX_IMPORT_ROWS:
                raise ImportFileError(f"at most {MAX_IMPORT_ROWS} rows per import")
    except csv.Error as exc:
        raise ImportFileError(f"not CSV at line {reader.line_num}: {exc}") from None
    return out


def repeated_rows(parsed: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Errors for unreadable rows and for rows repeating an earlier row's email (any case)
    or extension: the first one is imported, the repeats are reported."""
    errors: list[dict[str, Any]] = []
    first_row: dict[tuple[str, str], int] = {}
    for row, body in parsed:
        if "__error__" in body:
            errors.append({"row": row, "field": "", "message": body["__error__"]})
            continue
        for column in ("email", "extension"):
            value = body.get(column)
            if not isinstance(value, str):
                continue
            key = (column, value.strip().lower())
            if key in first_row:
                errors.append(
                    {"row": row, "field": column, "message": f"repeats row {first_row[key]}"}
                )
                break
            first_row[key] = row
    return errors
