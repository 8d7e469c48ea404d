"""Numbers (DIDs): lifecycle, assignment, and resolve_number for routing."""
