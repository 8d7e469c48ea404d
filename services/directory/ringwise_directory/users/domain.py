"""Pure rules for users: which fields, who may change which, and their checks."""

from __future__ import annotations

from typing import Any

from ringwise_directory.common.validation import Fields

TENANT_ROLES = ("tenant_admin", "supervisor", "user", "compliance_officer")
STATUSES = ("active", "suspended")
ADMIN_FIELDS = (
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
# What a user may change on their own profile (x-ringwise-self).
SELF_FIELDS = ("name", "language")
NULLABLE = ("extension", "smartnumber")
DEFAULT_RING_TIMEOUT_S = 20


def user_fields(body: Any, *, partial: bool, self_service: bool = False) -> dict[str, Any]:
    fields = Fields(body, partial=partial)
    allowed = SELF_FIELDS if self_service else ADMIN_FIELDS
    for name in fields.body:
        if name not in allowed:
            if self_service and name in ADMIN_FIELDS:
                fields.error(name, "only an administrator can change this")
            else:
                fields.error(name, "is not a field of this resource")
    out: dict[str, Any] = {
        "email": fields.email(required=True),
        "name": fields.text("name", required=True, max_len=120),
        "language": fields.language(),
    }
    if not self_service:
        if fields.has("role") and fields.body["role"] == "operator_admin":
            fields.error("role", "operator_admin is a platform role, not a tenant user's")
        else:
            out["role"] = fields.choice("role", TENANT_ROLES)
        out["status"] = fields.choice("status", STATUSES)
        out["extension"] = fields.extension()
        out["smartnumber"] = fields.e164("smartnumber")
        out["outbound_numbers"] = fields.e164_list("outbound_numbers")
        out["allowed_clis"] = fields.e164_list("allowed_clis")
        out["ring_timeout_s"] = fields.integer("ring_timeout_s", 5, 300)
    fields.check()
    result = {k: v for k, v in out.items() if v is not None}
    for name in NULLABLE:  # an explicit null clears these
        if partial and fields.has(name) and fields.body[name] is None:
            result[name] = None
    if not partial:
        result.setdefault("role", "user")
        result.setdefault("status", "active")
        result.setdefault("ring_timeout_s", DEFAULT_RING_TIMEOUT_S)
        result.setdefault("outbound_numbers", [])
        result.setdefault("allowed_clis", list(result["outbound_numbers"]))
    return result


def email_key(email: str) -> str:
    """Usernames compare case-insensitively."""
    return email.strip().lower()


def caller_id_errors(user: dict[str, Any]) -> list[dict[str, str]]:
    """Designated outbound numbers must be among the CLIs the admin allows."""
    allowed = set(user.get("allowed_clis") or [])
    return [
        {"field": f"outbound_numbers/{i}", "message": "must also be in allowed_clis"}
        for i, number in enumerate(user.get("outbound_numbers") or [])
        if number not in allowed
    ]
