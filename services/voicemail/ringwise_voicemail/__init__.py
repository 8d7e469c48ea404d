"""Ringwise voicemail service."""
