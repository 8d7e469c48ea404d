"""Person-follows-number routing policy, pure (no I/O): the profile as data (model), the
engine that turns it into a call plan (engine), configuration checks (validation), "where
would this call go, and why" (explain), a user's own changes (changes) and the outbound
caller-ID and dialling-control policy (outbound). Not wired into the ARI executor yet:
see docs/routing-policy.md.
"""
