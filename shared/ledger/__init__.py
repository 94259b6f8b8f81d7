"""The run ledger: one record per run, moved forward through the state machine with ETag concurrency."""
