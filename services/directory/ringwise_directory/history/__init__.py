"""History: the append-only audit of every change, queryable per tenant (seed 002 "History")."""
