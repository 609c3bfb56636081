"""Database plumbing: async engine, per-service schemas and migrations, the outbox."""
