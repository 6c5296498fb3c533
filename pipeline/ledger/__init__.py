"""ledger.json and ``pipeline status``: the account of a batch, derived from its state."""
