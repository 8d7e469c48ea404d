"""Person-follows-number routing policy: the profile as data (model), the pure engine that
turns it into a call plan (engine), configuration checks (validation) and "where would this
call go, and why" (explain). Not wired into the ARI executor yet: see docs/routing-policy.md.
"""
