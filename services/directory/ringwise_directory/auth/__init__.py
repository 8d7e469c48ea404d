"""Authentication data: argon2 password hashes, temporary passwords, lockout, API keys."""
