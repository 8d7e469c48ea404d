"""Recording metadata, access (search, download, legal hold) and the audit chain."""
