"""The ONIX feed state in the store (per recipient, per product content hashes), on SQLite
and on the real PostgreSQL of the fixtures."""

from __future__ import annotations

import pytest

from consonance_sftp.adapters.store import open_store
from consonance_sftp.errors import StoreError


def test_hashes_are_kept_per_recipient_and_replaced_as_a_whole(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.load_onix_hashes("feed", "dist") == {}
        first = {f"978000000{i:04d}": f"{i:064x}" for i in range(1200)}  # > one batch
        store.save_onix_hashes("feed", "dist", first)
        store.save_onix_hashes("feed", "google", {"a": "1" * 64})
        store.save_onix_hashes("other", "dist", {"b": "2" * 64})
        assert store.load_onix_hashes("feed", "dist") == first

        # The next successful send: one product changed, one gone (sent as 05), one new.
        second = dict(first)
        second["9780000000001"] = "f" * 64
        del second["9780000000002"]
        second["new"] = "e" * 64
        store.save_onix_hashes("feed", "dist", second)
        assert store.load_onix_hashes("feed", "dist") == second
        # Other recipients (same partner in another flow, another partner) are untouched.
        assert store.load_onix_hashes("feed", "google") == {"a": "1" * 64}
        assert store.load_onix_hashes("other", "dist") == {"b": "2" * 64}

        store.save_onix_hashes("feed", "dist", {})
        assert store.load_onix_hashes("feed", "dist") == {}
    finally:
        store.close()


@pytest.mark.postgres
def test_a_failed_save_on_postgresql_leaves_the_previous_baseline_whole(pg_url: str) -> None:
    store = open_store(pg_url)  # PostgreSQL enforces the column length; SQLite would not
    try:
        store.save_onix_hashes("feed", "dist", {"a": "1" * 64})
        with pytest.raises(StoreError, match="ONIX feed hashes"):
            store.save_onix_hashes("feed", "dist", {"b": "2" * 64, "c": "x" * 65})
        assert store.load_onix_hashes("feed", "dist") == {"a": "1" * 64}
    finally:
        store.close()
