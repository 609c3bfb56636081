"""Kafka plumbing: one batching publisher per process, a batch consumer runner, DLQ, topics."""
