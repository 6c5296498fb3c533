"""Run state: the write-ahead record of every job (intent, submitted, completed)."""
