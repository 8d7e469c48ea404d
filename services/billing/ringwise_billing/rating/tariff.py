"""Tariffs: per-tenant price lists, in versions with effective dates.

A tariff version holds outbound rates (by the dialled number's longest prefix) and inbound
rates (by the tenant's own dialled number, e.g. toll-free numbers cost the receiver); inbound
calls without a matching inbound rate are free, internal calls always are. A version is in
force from its effective date until the next version's. Correcting a version makes a new
revision of it; the book keeps the latest revision of each version.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ringwise_billing.rating.money import MoneyError, parse_amount, parse_currency, to_micros

MAX_BLOCK_S = 3600
MAX_PREFIX_LEN = 15
_INCREMENT = re.compile(r"^(\d{1,4})/(\d{1,4})$")
_PREFIX = re.compile(r"^\+?(\d{1,15})$")
_VERSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TariffError(ValueError):
    """Invalid tariff input; `errors` lists {"field": json-pointer, "message": ...}."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def digits(number: str) -> str:
    """A number's digits: "+44 20 7946-0000" -> "442079460000"."""
    return "".join(ch for ch in number if ch.isdigit())


@dataclass(frozen=True, slots=True)
class Increment:
    """Billing increments "first/next": the first block is charged whole, then each `next`
    seconds started is charged whole (60/60 per minute, 30/6, 1/1 per second)."""

    first_s: int
    next_s: int

    @classmethod
    def parse(cls, text: str) -> Increment:
        match = _INCREMENT.match(text)
        if not match:
            raise ValueError('an increment is "first/next" in seconds, e.g. "60/60" or "30/6"')
        first, nxt = int(match[1]), int(match[2])
        if not (1 <= first <= MAX_BLOCK_S and 1 <= nxt <= MAX_BLOCK_S):
            raise ValueError(f"increments are 1..{MAX_BLOCK_S} seconds")
        return cls(first, nxt)

    def billed_seconds(self, seconds: int) -> int:
        """Seconds charged for a call of `seconds` (> 0)."""
        if seconds <= self.first_s:
            return self.first_s
        blocks = -(-(seconds - self.first_s) // self.next_s)
        return self.first_s + blocks * self.next_s

    def __str__(self) -> str:
        return f"{self.first_s}/{self.next_s}"


@dataclass(frozen=True, slots=True)
class Rate:
    prefix: str  # digits only
    per_minute: Decimal
    connection_fee: Decimal = Decimal(0)
    increment: Increment = Increment(60, 60)
    minimum_s: int = 0
    description: str = ""
    # Integer micro-units, so rating is integer arithmetic (exact and fast).
    per_minute_micros: int = field(init=False, repr=False, compare=False)
    connection_fee_micros: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_minute_micros", to_micros(self.per_minute))
        object.__setattr__(self, "connection_fee_micros", to_micros(self.connection_fee))

    def billed_seconds(self, seconds: int) -> int:
        return self.increment.billed_seconds(max(seconds, self.minimum_s))

    def cost_micros(self, seconds: int) -> int:
        """Price of an answered call lasting `seconds` (> 0), rounded up to a micro-unit."""
        billed = self.billed_seconds(seconds)
        return self.connection_fee_micros + -(-(self.per_minute_micros * billed) // 60)

    def to_doc(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "per_minute": str(self.per_minute),
            "connection_fee": str(self.connection_fee),
            "increment": str(self.increment),
            "minimum_s": self.minimum_s,
            "description": self.description,
        }


class _PrefixTable:
    """Longest-prefix match over digit strings."""

    __slots__ = ("_by_prefix", "_lengths")

    def __init__(self, rates: Iterable[Rate]) -> None:
        self._by_prefix = {rate.prefix: rate for rate in rates}
        self._lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)

    def match(self, number_digits: str) -> Rate | None:
        by_prefix = self._by_prefix
        for length in self._lengths:
            if length <= len(number_digits):
                rate = by_prefix.get(number_digits[:length])
                if rate is not None:
                    return rate
        return None


@dataclass(frozen=True)
class TariffVersion:
    version_id: str
    effective_from: datetime
    currency: str
    outbound: tuple[Rate, ...]
    inbound: tuple[Rate, ...] = ()
    revision: int = 1
    name: str = ""
    _outbound: _PrefixTable = field(init=False, repr=False, compare=False)
    _inbound: _PrefixTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_outbound", _PrefixTable(self.outbound))
        object.__setattr__(self, "_inbound", _PrefixTable(self.inbound))

    def outbound_rate(self, dialled: str) -> Rate | None:
        return self._outbound.match(digits(dialled))

    def inbound_rate(self, own_number: str) -> Rate | None:
        return self._inbound.match(digits(own_number))

    def to_doc(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "effective_from": self.effective_from,
            "currency": self.currency,
            "revision": self.revision,
            "name": self.name,
            "outbound": [rate.to_doc() for rate in self.outbound],
            "inbound": [rate.to_doc() for rate in self.inbound],
        }


class TariffBook:
    """A tenant's tariff versions; the one in force at a moment rates a call started then."""

    def __init__(self, versions: Iterable[TariffVersion]) -> None:
        latest: dict[str, TariffVersion] = {}
        for version in versions:
            known = latest.get(version.version_id)
            if known is None or version.revision > known.revision:
                latest[version.version_id] = version
        self.versions = sorted(latest.values(), key=lambda v: (v.effective_from, v.version_id))
        self._starts = [v.effective_from for v in self.versions]

    def in_force(self, at: datetime) -> TariffVersion | None:
        index = bisect.bisect_right(self._starts, at)
        return self.versions[index - 1] if index else None

    def __bool__(self) -> bool:
        return bool(self.versions)


def _parse_rate(raw: object, where: str, errors: list[dict[str, str]]) -> Rate | None:
    if not isinstance(raw, Mapping):
        errors.append({"field": where, "message": "a rate is an object"})
        return None
    before = len(errors)

    def amount(name: str, default: str) -> Decimal:
        try:
            return parse_amount(raw.get(name, default))
        except MoneyError as exc:
            errors.append({"field": f"{where}/{name}", "message": str(exc)})
            return Decimal(0)

    prefix = raw.get("prefix")
    match = _PREFIX.match(prefix) if isinstance(prefix, str) else None
    if match is None:
        errors.append(
            {"field": f"{where}/prefix", "message": f"1 to {MAX_PREFIX_LEN} digits, '+' allowed"}
        )
    per_minute = amount("per_minute", "")
    connection_fee = amount("connection_fee", "0")
    increment = Increment(60, 60)
    try:
        raw_increment = raw.get("increment", "60/60")
        if not isinstance(raw_increment, str):
            raise ValueError('an increment is a string such as "60/60"')
        increment = Increment.parse(raw_increment)
    except ValueError as exc:
        errors.append({"field": f"{where}/increment", "message": str(exc)})
    minimum = raw.get("minimum_s", 0)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or not 0 <= minimum <= 3600:
        errors.append({"field": f"{where}/minimum_s", "message": "whole seconds, 0..3600"})
        minimum = 0
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 200:
        errors.append({"field": f"{where}/description", "message": "text up to 200 characters"})
        description = ""
    if len(errors) > before or match is None:
        return None
    return Rate(match[1], per_minute, connection_fee, increment, minimum, description)


def _parse_rates(raw: object, where: str, errors: list[dict[str, str]]) -> tuple[Rate, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 50_000:
        errors.append({"field": where, "message": "a list of rates (at most 50000)"})
        return ()
    rates: list[Rate] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        rate = _parse_rate(item, f"{where}/{index}", errors)
        if rate is None:
            continue
        if rate.prefix in seen:
            errors.append({"field": f"{where}/{index}/prefix", "message": "duplicate prefix"})
        seen.add(rate.prefix)
        rates.append(rate)
    return tuple(rates)


def parse_effective_from(raw: object) -> datetime:
    if not isinstance(raw, str | datetime):
        raise ValueError("an ISO 8601 date-time with a time zone")
    try:
        moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError("an ISO 8601 date-time with a time zone") from None
    if moment.tzinfo is None:
        raise ValueError("the date-time needs a time zone (e.g. Z)")
    return moment.astimezone(UTC)


def parse_version(raw: object, *, revision: int = 1) -> TariffVersion:
    """A tariff version from its JSON/document form; TariffError lists every bad field."""
    errors: list[dict[str, str]] = []
    if not isinstance(raw, Mapping):
        raise TariffError([{"field": "/", "message": "a tariff version is an object"}])
    version_id = raw.get("version_id")
    if not isinstance(version_id, str) or not _VERSION_ID.match(version_id):
        errors.append({"field": "/version_id", "message": "1-64 of A-Z a-z 0-9 _ . -"})
    effective_from = datetime.min.replace(tzinfo=UTC)
    try:
        effective_from = parse_effective_from(raw.get("effective_from"))
    except ValueError as exc:
        errors.append({"field": "/effective_from", "message": str(exc)})
    currency = "XXX"
    try:
        currency = parse_currency(raw.get("currency"))
    except MoneyError as exc:
        errors.append({"field": "/currency", "message": str(exc)})
    name = raw.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        errors.append({"field": "/name", "message": "text up to 200 characters"})
        name = ""
    outbound = _parse_rates(raw.get("outbound", []), "/outbound", errors)
    inbound = _parse_rates(raw.get("inbound", []), "/inbound", errors)
    if errors:
        raise TariffError(errors)
    assert isinstance(version_id, str)
    return TariffVersion(
        version_id=version_id,
        effective_from=effective_from,
        currency=currency,
        outbound=outbound,
        inbound=inbound,
        revision=revision,
        name=name,
    )
