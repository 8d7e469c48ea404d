"""Pure input validation: every check adds a field error; one 422 problem lists them all."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any
from urllib.parse import unquote

from ringwise_kit.api import ApiError

E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")
EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Z]{2})?$")
EXTENSION = re.compile(r"^[0-9]{2,6}$")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{1,39}$")
HHMM = re.compile(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")
# VAT ids: an ISO country prefix then 2-13 letters/digits (the EU VIES shape).
VAT = re.compile(r"^[A-Z]{2}[0-9A-Z+*.]{2,13}$")

# ISO 3166-1 alpha-2, officially assigned codes.
# fmt: off
COUNTRIES = frozenset(
    (
        "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW",
        "AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN",
        "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG",
        "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ",
        "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI",
        "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL",
        "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR",
        "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
        "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA",
        "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME",
        "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU",
        "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP",
        "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR",
        "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD",
        "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
        "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
        "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE",
        "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
    )
)
# fmt: on


@cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def unprocessable(errors: list[dict[str, str]]) -> ApiError:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return ApiError(422, "Unprocessable Content", detail, errors=errors)


class Fields:
    """Reads a JSON object field by field, collecting every error before failing once."""

    def __init__(self, body: Any, *, partial: bool = False) -> None:
        self.errors: list[dict[str, str]] = []
        self.partial = partial
        if not isinstance(body, Mapping):
            self.body: Mapping[str, Any] = {}
            self.error("", "must be a JSON object")
        else:
            self.body = body

    def error(self, name: str, message: str) -> None:
        self.errors.append({"field": name, "message": message})

    def has(self, name: str) -> bool:
        return name in self.body

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        known = set(allowed)
        for name in self.body:
            if name not in known:
                self.error(name, "is not a field of this resource")

    def check(self) -> None:
        if self.errors:
            raise unprocessable(self.errors)

    def _present(self, name: str, required: bool) -> bool:
        if name not in self.body or self.body[name] is None:
            if required and not self.partial:
                self.error(name, "is required")
            return False
        return True

    def text(
        self, name: str, *, required: bool = False, max_len: int = 200, min_len: int = 1
    ) -> str | None:
        if not self._present(name, required):
            return None
        value = self.body[name]
        if not isinstance(value, str):
            self.error(name, "must be a string")
            return None
        value = value.strip()
        if CONTROL.search(value):
            self.error(name, "must not contain control characters")
            return None
        if not min_len <= len(value) <= max_len:
            self.error(name, f"must be {min_len} to {max_len} characters")
            return None
        return value

    def pattern(
        self, name: str, regex: re.Pattern[str], message: str, *, required: bool = False
    ) -> str | None:
        value = self.text(name, required=required, max_len=320)
        if value is not None and not regex.match(value):
            self.error(name, message)
            return None
        return value

    def choice(self, name: str, choices: Iterable[str], *, required: bool = False) -> str | None:
        options = list(choices)
        value = self.text(name, required=required, max_len=64)
        if value is not None and value not in options:
            self.error(name, f"must be one of {', '.join(options)}")
            return None
        return value

    def integer(self, name: str, low: int, high: int, *, required: bool = False) -> int | None:
        if not self._present(name, required):
            return None
        value = self.body[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, "must be an integer")
            return None
        if not low <= value <= high:
            self.error(name, f"must be between {low} and {high}")
            return None
        return int(value)

    def boolean(self, name: str, *, required: bool = False) -> bool | None:
        if not self._present(name, required):
            return None
        value = self.body[name]
        if not isinstance(value, bool):
            self.error(name, "must be true or false")
            return None
        return value

    def strings(
        self, name: str, *, max_items: int = 50, max_len: int = 100, required: bool = False
    ) -> list[str] | None:
        if not self._present(name, required):
            return None
        value = self.body[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(name, "must be a list of strings")
            return None
        if len(value) > max_items:
            self.error(name, f"at most {max_items} items")
            return None
        items = [v.strip() for v in value]
        for index, item in enumerate(items):
            if not 1 <= len(item) <= max_len:
                self.error(f"{name}/{index}", f"must be 1 to {max_len} characters")
                return None
        if len(set(items)) != len(items):
            self.error(name, "must not repeat an item")
            return None
        return items

    def objects(
        self, name: str, *, max_items: int = 50, required: bool = False
    ) -> list[Any] | None:
        if not self._present(name, required):
            return None
        value = self.body[name]
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.error(name, "must be a list of objects")
            return None
        if len(value) > max_items:
            self.error(name, f"at most {max_items} items")
            return None
        return value

    # Domain fields shared by several features.
    def email(self, name: str = "email", *, required: bool = False) -> str | None:
        value = self.pattern(name, EMAIL, "must be an email address", required=required)
        if value is not None and len(value) > 254:
            self.error(name, "must be at most 254 characters")
            return None
        return value

    def e164(self, name: str, *, required: bool = False) -> str | None:
        return self.pattern(
            name, E164, "must be an E.164 number: + then 6 to 15 digits", required=required
        )

    def e164_list(self, name: str, *, max_items: int = 20) -> list[str] | None:
        values = self.strings(name, max_items=max_items, max_len=16)
        if values is None:
            return None
        bad = [i for i, v in enumerate(values) if not E164.match(v)]
        for index in bad:
            self.error(f"{name}/{index}", "must be an E.164 number: + then 6 to 15 digits")
        return None if bad else values

    def language(self, name: str = "language", *, required: bool = False) -> str | None:
        return self.pattern(
            name, LANGUAGE, "must be a language tag like en or en-GB", required=required
        )

    def time_zone(self, name: str = "time_zone", *, required: bool = False) -> str | None:
        value = self.text(name, required=required, max_len=64)
        if value is not None and value not in time_zones():
            self.error(name, "must be an IANA time zone like Europe/London")
            return None
        return value

    def country(self, name: str = "country", *, required: bool = False) -> str | None:
        value = self.text(name, required=required, max_len=2, min_len=2)
        if value is not None and value not in COUNTRIES:
            self.error(name, "must be an ISO 3166-1 alpha-2 country code like GB")
            return None
        return value

    def extension(self, name: str = "extension", *, required: bool = False) -> str | None:
        return self.pattern(name, EXTENSION, "must be 2 to 6 digits", required=required)


def normalise_number(raw: str) -> str:
    """A number from a path: '+' is optional there (it needs escaping in URLs)."""
    value = unquote(raw).strip()
    if not value.startswith("+"):
        value = "+" + value
    if not E164.match(value):
        raise ApiError(
            404, "Not Found", "no such number", errors=[{"field": "number", "message": "not E.164"}]
        )
    return value


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)
