"""Royalty statements going out (issue 16): which payee a statement belongs to (``statements``),
its machine-readable companion (``companion``) and its optional encryption (``protect``).
Pure rules and local file conversions; no network, no store."""
