"""The ledger: append-only money movements (call charges, adjustments, top-ups, fees)."""
