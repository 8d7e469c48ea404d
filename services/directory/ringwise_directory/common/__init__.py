"""Pieces every directory feature shares: validation, records (pages, ETags), access rules."""
