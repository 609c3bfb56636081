"""Ingest's routes: one module per resource (tracking calls, batches)."""
