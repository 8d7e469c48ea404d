"""CDRs: stored exactly once from CallEnded events; listed by GET /v1/cdrs (internal)."""
