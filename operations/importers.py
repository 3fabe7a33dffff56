"""Parsers of provider bills: an OpenAI-style usage/cost export and an AWS Cost and Usage
Report, both CSV (optionally gzip-compressed). Pure functions: bytes in, parsed lines out,
or `BillFormatError` naming the row and column at fault. Nothing here writes.

Column names are matched loosely — case and punctuation are ignored, so the CUR's
`lineItem/UnblendedCost` and CUR 2.0's `line_item_unblended_cost` are the same column, and
so are `Cost (USD)` and `cost_usd`. Rows are numbered as a spreadsheet shows them: the
header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

MAX_FILE_BYTES = 256 * 1024 * 1024
# AWS services whose cost is model inference (compared with metering's tracked cost of models
# priced under provider "aws"); every other service is shared infrastructure.
AWS_MODEL_SERVICES = frozenset({"amazonbedrock"})


class BillFormatError(ValueError):
    """The file cannot be imported; `row` and `column` say where (None: the whole file)."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        self.row, self.column = row, column
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclass
class ParsedLine:
    row_number: int
    natural_key: str
    day: date
    item: str
    usage_quantity: Decimal
    usage_unit: str
    cost: Decimal
    shared_infrastructure: bool = False


@dataclass
class ParsedBill:
    provider: str
    sha256: str
    lines: list[ParsedLine]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Accepted spellings (normalised) of each field, first match wins.
OPENAI_COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("date", "day", "usagedate", "starttimeiso", "starttime", "timestamp"),
    "model": ("model", "modelid", "snapshotid", "lineitem", "name"),
    "tokens": ("tokens", "totaltokens", "ntokenstotal"),
    "input_tokens": ("inputtokens", "ncontexttokenstotal", "prompttokens"),
    "output_tokens": ("outputtokens", "ngeneratedtokenstotal", "completiontokens"),
    "cost": ("cost", "costusd", "amount", "amountvalue", "costinusd", "totalcost"),
    "currency": ("currency", "amountcurrency"),
    "project": ("projectid", "project"),
    "api_key": ("apikeyid",),
}
AWS_COLUMNS: dict[str, tuple[str, ...]] = {
    "product_code": ("lineitemproductcode",),
    "product_name": ("productproductname", "productname"),
    "usage_amount": ("lineitemusageamount",),
    "cost": ("lineitemunblendedcost",),
    "start": ("lineitemusagestartdate",),
    "line_item_id": ("identitylineitemid",),
    "time_interval": ("identitytimeinterval",),
    "currency": ("lineitemcurrencycode",),
    "unit": ("pricingunit",),
    "usage_type": ("lineitemusagetype",),
}


def sniff_provider(header: list[str]) -> str:
    """`aws` when the header has CUR line-item columns, else `openai`."""
    names = {_norm(h) for h in header}
    return "aws" if any(n.startswith("lineitem") for n in names) else "openai"


def _decode(raw: bytes) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise BillFormatError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise BillFormatError(f"the file looks gzip-compressed but cannot be read: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BillFormatError(f"the file is not UTF-8 text (byte {exc.start})") from None


def _rows(text: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BillFormatError("the file is empty") from None
    except csv.Error as exc:
        raise BillFormatError(f"not CSV: {exc}", row=1) from None
    if not any(h.strip() for h in header):
        raise BillFormatError("the header row is empty", row=1)

    def data() -> Iterator[tuple[int, list[str]]]:
        number = 1
        try:
            for row in reader:
                number += 1
                if not row or not any(cell.strip() for cell in row):
                    continue  # blank lines (often the last) are not rows
                if len(row) != len(header):
                    raise BillFormatError(f"{len(row)} cells where the header has {len(header)}", row=number)
                yield number, row
        except csv.Error as exc:
            raise BillFormatError(f"not CSV: {exc}", row=number + 1) from None

    return header, data()


def _columns(header: list[str], spec: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """field -> index of the first header cell that spells it."""
    index = {}
    normalised = [_norm(h) for h in header]
    for field, spellings in spec.items():
        for spelling in spellings:
            if spelling in normalised:
                index[field] = normalised.index(spelling)
                break
    return index


def _decimal(value: str, *, row: int, column: str, negative_ok: bool) -> Decimal:
    text = value.strip().replace("$", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise BillFormatError(f"{value!r} is not a number", row=row, column=column) from None
    if not number.is_finite():
        raise BillFormatError(f"{value!r} is not a finite number", row=row, column=column)
    if abs(number) >= Decimal("1e13"):
        raise BillFormatError(f"{value!r} is too large", row=row, column=column)
    if number < 0 and not negative_ok:
        raise BillFormatError(f"{value!r} is negative", row=row, column=column)
    return number


def _day(value: str, *, row: int, column: str) -> date:
    text = value.strip()
    if text.isdigit():  # Unix seconds (the costs API's start_time)
        return datetime.fromtimestamp(int(text), tz=UTC).date()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise BillFormatError(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)", row=row, column=column) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.date()


def _key(provider: str, parts: tuple[str, ...], seen: Counter[tuple[str, ...]]) -> str:
    """The natural key of a row: its identifying fields plus how many rows with the same
    fields came before it in this file (so two identical rows stay two rows, and a second
    file holding the same rows maps them to the same keys)."""
    seen[parts] += 1
    text = "\x1f".join((provider, *parts, str(seen[parts])))
    return hashlib.sha256(text.encode()).hexdigest()


def _cell(row: list[str], columns: dict[str, int], field: str) -> str:
    return row[columns[field]].strip() if field in columns else ""


def _header_name(header: list[str], columns: dict[str, int], field: str) -> str:
    return header[columns[field]]


def parse_openai(header: list[str], rows: Iterator[tuple[int, list[str]]]) -> list[ParsedLine]:
    columns = _columns(header, OPENAI_COLUMNS)
    missing = [f for f in ("date", "model", "cost") if f not in columns]
    if "tokens" not in columns and "input_tokens" not in columns and "output_tokens" not in columns:
        missing.append("tokens")
    if missing:
        raise BillFormatError(
            f"missing column(s) {', '.join(missing)}; an OpenAI export needs date, model, tokens "
            "(or input_tokens/output_tokens) and cost",
            row=1,
        )
    name = {field: _header_name(header, columns, field) for field in columns}
    token_fields = ["tokens"] if "tokens" in columns else [f for f in ("input_tokens", "output_tokens") if f in columns]
    lines: list[ParsedLine] = []
    seen: Counter[tuple[str, ...]] = Counter()
    for number, row in rows:
        day = _day(_cell(row, columns, "date"), row=number, column=name["date"])
        model = _cell(row, columns, "model")
        if not model:
            raise BillFormatError("the model is empty", row=number, column=name["model"])
        if len(model) > 200:
            raise BillFormatError("the model name is longer than 200 characters", row=number, column=name["model"])
        tokens = Decimal(0)
        for field in token_fields:
            value = _cell(row, columns, field) or "0"
            amount = _decimal(value, row=number, column=name[field], negative_ok=False)
            if amount != amount.to_integral_value():
                raise BillFormatError(f"{value!r} is not a whole number of tokens", row=number, column=name[field])
            tokens += amount
        cost = _decimal(_cell(row, columns, "cost"), row=number, column=name["cost"], negative_ok=False)
        currency = _cell(row, columns, "currency")
        if currency and currency.lower() != "usd":
            raise BillFormatError(
                f"currency {currency!r}: only USD bills are supported", row=number, column=name["currency"]
            )
        parts = (day.isoformat(), model, _cell(row, columns, "project"), _cell(row, columns, "api_key"))
        lines.append(
            ParsedLine(
                row_number=number,
                natural_key=_key("openai", parts, seen),
                day=day,
                item=model,
                usage_quantity=tokens,
                usage_unit="tokens",
                cost=cost,
            )
        )
    return lines


def parse_aws(header: list[str], rows: Iterator[tuple[int, list[str]]]) -> list[ParsedLine]:
    columns = _columns(header, AWS_COLUMNS)
    missing = [
        label
        for field, label in (
            ("usage_amount", "lineItem/UsageAmount"),
            ("cost", "lineItem/UnblendedCost"),
            ("start", "lineItem/UsageStartDate"),
        )
        if field not in columns
    ]
    if "product_code" not in columns and "product_name" not in columns:
        missing.insert(0, "lineItem/ProductCode or product/ProductName")
    if missing:
        raise BillFormatError(f"missing CUR column(s) {', '.join(missing)}", row=1)
    name = {field: _header_name(header, columns, field) for field in columns}
    service_field = "product_code" if "product_code" in columns else "product_name"
    lines: list[ParsedLine] = []
    seen: Counter[tuple[str, ...]] = Counter()
    for number, row in rows:
        service = _cell(row, columns, service_field)
        if not service and service_field == "product_code":
            service = _cell(row, columns, "product_name")
        if not service:
            raise BillFormatError("the service is empty", row=number, column=name[service_field])
        day = _day(_cell(row, columns, "start"), row=number, column=name["start"])
        usage = _decimal(
            _cell(row, columns, "usage_amount") or "0", row=number, column=name["usage_amount"], negative_ok=True
        )
        # Credits and refunds are negative line items; they belong to the bill.
        cost = _decimal(_cell(row, columns, "cost"), row=number, column=name["cost"], negative_ok=True)
        currency = _cell(row, columns, "currency")
        if currency and currency.upper() != "USD":
            raise BillFormatError(
                f"currency {currency!r}: only USD bills are supported", row=number, column=name["currency"]
            )
        line_item = _cell(row, columns, "line_item_id")
        if line_item:
            parts: tuple[str, ...] = (line_item, _cell(row, columns, "time_interval"))
        else:  # no identity columns: the whole row identifies it
            parts = tuple(cell.strip() for cell in row)
        lines.append(
            ParsedLine(
                row_number=number,
                natural_key=_key("aws", parts, seen),
                day=day,
                item=service[:200],
                usage_quantity=usage,
                usage_unit=_cell(row, columns, "unit")[:60],
                cost=cost,
                shared_infrastructure=_norm(service) not in AWS_MODEL_SERVICES,
            )
        )
    return lines


def bill_parse(raw: bytes, *, provider: str | None = None) -> ParsedBill:
    """Parse a whole file (every row is checked before anything is written by the caller)."""
    digest = hashlib.sha256(raw).hexdigest()
    header, rows = _rows(_decode(raw))
    detected = sniff_provider(header)
    provider = provider or detected
    if provider not in ("openai", "aws"):
        raise BillFormatError(f"unknown provider {provider!r} (openai or aws)")
    if provider != detected:
        expected = "CUR line-item columns (lineItem/…)" if provider == "aws" else "no CUR line-item columns"
        raise BillFormatError(f"this does not look like a {provider} bill: expected {expected}", row=1)
    lines = parse_aws(header, rows) if provider == "aws" else parse_openai(header, rows)
    if not lines:
        raise BillFormatError("the file has a header but no data rows")
    return ParsedBill(provider=provider, sha256=digest, lines=lines)
