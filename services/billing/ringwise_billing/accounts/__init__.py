"""Prepaid accounts: activation, balance, top-ups, credit authorisation and reservations."""
