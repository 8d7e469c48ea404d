"""Pure rules for tenant records."""

from __future__ import annotations

from typing import Any

from ringwise_directory.common.validation import SLUG, VAT, Fields

STATUSES = ("active", "suspended")
FIELDS = ("tenant_id", "name", "country", "vat_id", "time_zone", "language")


def tenant_fields(body: Any, *, partial: bool) -> dict[str, Any]:
    """The settable fields of a tenant (create: all required ones; PATCH: any subset)."""
    fields = Fields(body, partial=partial)
    allowed = FIELDS if not partial else FIELDS[1:]
    fields.reject_unknown(allowed)
    out: dict[str, Any] = {}
    if not partial and fields.has("tenant_id"):
        out["tenant_id"] = fields.pattern(
            "tenant_id", SLUG, "2-40 lower-case letters, digits, - or _, starting alphanumeric"
        )
    out["name"] = fields.text("name", required=True, max_len=120)
    out["country"] = fields.country(required=True)
    if fields.has("vat_id"):
        vat = fields.body.get("vat_id")
        out["vat_id"] = (
            None
            if vat in (None, "")
            else fields.pattern("vat_id", VAT, "must look like GB123456789 (country prefix)")
        )
    out["time_zone"] = fields.time_zone(required=True)
    out["language"] = fields.language()
    fields.check()
    result = {k: v for k, v in out.items() if v is not None or k == "vat_id"}
    if not partial:
        result.setdefault("language", "en")
    return result
