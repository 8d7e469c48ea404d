"""Callback and click-to-dial (issue #5): POST .../users/{user_id}/calls rings the user first,
then the target (docs/outbound-calls.md, "Click-to-dial")."""
