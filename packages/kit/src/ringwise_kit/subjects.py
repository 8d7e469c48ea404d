"""The one subject grammar of Ringwise on NATS: ringwise.v1.<domain>.<tenant|verb>.<event>.

docs/subjects.md lists every subject with its contract in proto/. Keep this file and that
table in step.
"""

from __future__ import annotations

import re

PREFIX = "ringwise.v1"
# Token used where an event belongs to no tenant (e.g. a call to an unassigned number).
NO_TENANT = "_"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")

# JetStream stream of call lifecycle events, and the events on it.
CALLS_STREAM = "CALLS"
CALL_EVENTS = f"{PREFIX}.call.>"
CALL_STARTED = "started"
CALL_ROUTED = "routed"
CALL_ANSWERED = "answered"
CALL_ENDED = "ended"
CALL_DIVERTED = "diverted"  # CallDiverted: delegated-call alerts (messaging)
CALL_MISSED = "missed"  # CallMissed: lost-call alerts (messaging)

# JetStream stream of recording events (services/recording archives what routing recorded).
RECORDINGS_STREAM = "RECORDINGS"
# Five tokens exactly, so the policy request subject (four tokens) stays out of the stream.
RECORDING_EVENTS = f"{PREFIX}.recording.*.*"
RECORDING_FINISHED = "finished"
RECORDING_ARCHIVED = "archived"
# Asterisk stored-recording names say whose a recording is: call recordings (routing records,
# the recording service archives and deletes them) and voicemail deposits (routing records,
# voicemail stores and deletes them). Neither owner touches the other's.
CALL_RECORDING_NAME_PREFIX = "rw-"
VOICEMAIL_RECORDING_NAME_PREFIX = "vm-"

# Dead letters: messages a durable consumer gave up on after N failed deliveries.
DLQ_STREAM = "DLQ"
DLQ_EVENTS = f"{PREFIX}.dlq.>"

# Request/reply.
DIRECTORY_RESOLVE_NUMBER = f"{PREFIX}.directory.resolve_number"
DIRECTORY_RESOLVE_USER = f"{PREFIX}.directory.resolve_user"
DIRECTORY_RESOLVE_TEAM = f"{PREFIX}.directory.resolve_team"
DIRECTORY_CHANGES = f"{PREFIX}.directory.*.number_changed"
RECORDING_POLICY = f"{PREFIX}.recording.policy"
# Core NATS (best effort; four tokens, outside RECORDINGS): a tenant's recording settings
# changed, so callers caching its policies drop them (body: RecordingPolicyRequest, tenant_id).
RECORDING_POLICY_CHANGED = f"{PREFIX}.recording.policy_changed"
DIRECTORY_AUTHENTICATE = f"{PREFIX}.directory.authenticate"
# Published (empty body) each time a directory instance starts: a change it stored just before
# a crash may never have been announced, so routing drops its number cache and re-applies
# every SIP device.
DIRECTORY_STARTED = f"{PREFIX}.directory.started"
# Core NATS (best effort): a user's routing profile or the tenant's routing policy was stored
# (body: ringwise.routing.v1.ProfileChanged); every routing instance drops its cached copy.
ROUTING_PROFILE_CHANGES = f"{PREFIX}.routing.*.profile_changed"
DIRECTORY_LIST_SIP_DEVICES = f"{PREFIX}.directory.list_sip_devices"
DIRECTORY_SIP_DEVICE_CHANGES = f"{PREFIX}.directory.*.sip_device_changed"
# Credit authorisation for chargeable calls (proto ringwise.billing.v1; queue group "billing").
BILLING_AUTHORISE = f"{PREFIX}.billing.authorise"
BILLING_RELEASE = f"{PREFIX}.billing.release"
VOICEMAIL_DEPOSIT_BEGIN = f"{PREFIX}.voicemail.deposit_begin"
VOICEMAIL_DEPOSIT_COMPLETE = f"{PREFIX}.voicemail.deposit_complete"
VOICEMAIL_MAILBOX_LOGIN = f"{PREFIX}.voicemail.mailbox_login"
VOICEMAIL_MAILBOX_LIST = f"{PREFIX}.voicemail.mailbox_list"
VOICEMAIL_MAILBOX_ACTION = f"{PREFIX}.voicemail.mailbox_action"

# JetStream stream of voicemail events: accepted deposits (voicemail's own work queue) and the
# events other services act on (alerts).
VOICEMAIL_STREAM = "VOICEMAIL"
VOICEMAIL_EVENTS = f"{PREFIX}.voicemail.*.*"
VOICEMAIL_DEPOSITED = "deposited"
VOICEMAIL_MESSAGE_RECEIVED = "message_received"
VOICEMAIL_MAILBOX_LOCKED = "mailbox_locked"


def tenant_token(tenant_id: str) -> str:
    if not tenant_id:
        return NO_TENANT
    if not _TOKEN.match(tenant_id):
        raise ValueError(f"tenant id {tenant_id!r} is not a valid subject token")
    return tenant_id


def call_event(tenant_id: str, event: str) -> str:
    return f"{PREFIX}.call.{tenant_token(tenant_id)}.{event}"


def call_events_of_kind(event: str) -> str:
    """Filter subject for one kind of call event across all tenants."""
    return f"{PREFIX}.call.*.{event}"


def recording_event(tenant_id: str, event: str) -> str:
    return f"{PREFIX}.recording.{tenant_token(tenant_id)}.{event}"


def recording_events_of_kind(event: str) -> str:
    return f"{PREFIX}.recording.*.{event}"


def dead_letter(consumer: str) -> str:
    return f"{PREFIX}.dlq.{consumer}"


def number_changed(tenant_id: str) -> str:
    return f"{PREFIX}.directory.{tenant_token(tenant_id)}.number_changed"


def api(service: str) -> str:
    """The subject a service answers the gateway's forwarded REST calls on (queue = service)."""
    if not _TOKEN.match(service):
        raise ValueError(f"service name {service!r} is not a valid subject token")
    return f"{PREFIX}.api.{service}"


def sip_device_changed(tenant_id: str) -> str:
    return f"{PREFIX}.directory.{tenant_token(tenant_id)}.sip_device_changed"


def voicemail_event(tenant_id: str, event: str) -> str:
    return f"{PREFIX}.voicemail.{tenant_token(tenant_id)}.{event}"


def voicemail_events_of_kind(event: str) -> str:
    return f"{PREFIX}.voicemail.*.{event}"


def profile_changed(tenant_id: str) -> str:
    return f"{PREFIX}.routing.{tenant_token(tenant_id)}.profile_changed"
