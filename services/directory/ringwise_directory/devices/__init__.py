"""Devices: a user's SIP phones, static-IP SIP trunks and external numbers (up to 5)."""
