"""Invoices: a PDF for each completed top-up and for each ended month."""
