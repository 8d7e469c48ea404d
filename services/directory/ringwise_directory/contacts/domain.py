"""Pure rules for contacts and who sees or edits them (seed 001, "Viewable by / Editable by").

Private: only the contact's owner. Staff: every user of the tenant. Public: anyone with access
to the directory (today the same people as Staff; a public directory comes later).
"""

from __future__ import annotations

import re
from typing import Any

from ringwise_directory.common.validation import E164, Fields

SCOPES = ("personal", "tenant")
VISIBILITIES = ("staff", "public", "private")
FIELDS = (
    "scope",
    "name",
    "company",
    "email",
    "numbers",
    "visibility",
    "editable_by",
    "vip",
    "groups",
)
SHARED = ("staff", "public")


def contact_fields(body: Any, *, partial: bool) -> dict[str, Any]:
    fields = Fields(body, partial=partial)
    fields.reject_unknown(FIELDS if not partial else FIELDS[1:])
    out: dict[str, Any] = {
        "scope": None if partial else fields.choice("scope", SCOPES),
        "name": fields.text("name", required=True, max_len=120),
        "company": fields.text("company", max_len=120),
        "email": fields.email(),
        "visibility": fields.choice("visibility", VISIBILITIES),
        "editable_by": fields.choice("editable_by", VISIBILITIES),
        "vip": fields.boolean("vip"),
        "groups": fields.strings("groups", max_items=20, max_len=60),
    }
    numbers = fields.objects("numbers", max_items=10)
    if numbers is not None:
        checked = []
        for index, item in enumerate(numbers):
            entry = Fields(item)
            entry.reject_unknown(("label", "number"))
            label = entry.text("label", max_len=40)
            number = entry.pattern("number", E164, "must be an E.164 number", required=True)
            for error in entry.errors:
                fields.error(f"numbers/{index}/{error['field']}", error["message"])
            checked.append({"label": label or "", "number": number})
        out["numbers"] = checked
    fields.check()
    result = {k: v for k, v in out.items() if v is not None}
    if partial:
        for name in ("company", "email"):
            if fields.has(name) and fields.body[name] is None:
                result[name] = None
    else:
        result.setdefault("scope", "personal")
        # Seed 001 recommends Staff for both; a personal contact defaults to private.
        default = "staff" if result["scope"] == "tenant" else "private"
        result.setdefault("visibility", default)
        result.setdefault("editable_by", default)
        result.setdefault("vip", False)
        result.setdefault("groups", [])
        result.setdefault("numbers", [])
    return result


def scope_errors(contact: dict[str, Any]) -> list[dict[str, str]]:
    errors = []
    if contact.get("scope") == "tenant":
        for name in ("visibility", "editable_by"):
            if contact.get(name) == "private":
                errors.append({"field": name, "message": "a tenant-wide contact cannot be private"})
    return errors


def visible_query(tenant_id: str, viewer_id: str) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "$or": [{"owner_id": viewer_id}, {"visibility": {"$in": list(SHARED)}}],
    }


def can_view(contact: dict[str, Any], viewer_id: str) -> bool:
    return contact.get("owner_id") == viewer_id or contact.get("visibility") in SHARED


def can_edit(contact: dict[str, Any], viewer_id: str, is_admin: bool) -> bool:
    if contact.get("owner_id") == viewer_id:
        return True
    if contact.get("scope") == "tenant" and is_admin:
        return True
    return contact.get("editable_by") in SHARED and can_view(contact, viewer_id)


def search_pattern(text: str) -> re.Pattern[str]:
    return re.compile(re.escape(text.strip()), re.IGNORECASE)


def digits_pattern(text: str) -> re.Pattern[str] | None:
    """A query made of a number's characters matches numbers containing those digits; a
    national trunk prefix (020 7111...) is dropped so it matches the E.164 form (+44 20 7111)."""
    digits = re.sub(r"[^0-9]", "", text)
    if len(digits) < 2 or re.search(r"[^0-9+()\s.-]", text):
        return None
    if not text.strip().startswith("+") and len(digits.lstrip("0")) >= 2:
        digits = digits.lstrip("0")
    return re.compile(re.escape(digits))
