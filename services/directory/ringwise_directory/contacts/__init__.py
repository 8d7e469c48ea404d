"""Contacts (personal and tenant-wide, Staff/Public/Private) and the directory search."""
