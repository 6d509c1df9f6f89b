"""Durable file I/O: atomic writes and run-length-encoded masks."""
