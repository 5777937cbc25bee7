"""ONIX for Books: read and write ONIX 3.0/3.1 (and write 2.1), validate, compute deltas."""

from .reader import iter_onix_records, read_onix_works

__all__ = ["iter_onix_records", "read_onix_works"]
