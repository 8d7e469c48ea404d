"""Users: email as the immutable username, extension, numbers, role, language, status."""
