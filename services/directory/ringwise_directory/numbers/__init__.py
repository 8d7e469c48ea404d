"""Numbers: which tenant, user and devices a dialled number reaches (resolve_number)."""
