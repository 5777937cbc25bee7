"""``consonance-sftp assets ISBN`` against our store on SQLite and on the real PostgreSQL, and
against the Consonance sandbox over HTTP when our records do not know the ISBN.

The versions are written through the store as the intake hand-off writes them (the product's
ISBN, the partner, the original name); what is checked is what an editor reads: which version
is current, who sent each one, under what name, and which version it superseded.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from stdnum import isbn as stdnum_isbn

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.database import create_engine
from consonance_sftp.ports.store import AssetVersion
from tests.cli import CLI
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.fixtures.store import migrate_to

ISBN13 = "9781900200011"
ISBN10 = str(stdnum_isbn.format(stdnum_isbn.to_isbn10(ISBN13)))  # 1-900200-01-?, hyphenated
OTHER = "9781900200028"  # another product of the same work
SHA = ["a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64]


def _config(root: Path, db_url: str, consonance_url: str, token: str) -> Path:
    (root / "token").write_text(token)
    path = root / "consonance-sftp.toml"
    path.write_text(
        f'state_dir = "{root / "var"}"\n'
        "[database]\n"
        f'url = "{db_url}"\n'
        "[consonance]\n"
        f'base_url = "{consonance_url}"\n'
        f'token = {{file = "{root / "token"}"}}\n'
    )
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CLI, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert "Traceback" not in done.stdout + done.stderr
    return done


def _intake(kind: str, sha: str, name: str, partner: str, **extra: object) -> AssetVersion:
    return AssetVersion(
        work_id=7,
        product_id=70,
        kind=kind,
        sha256=sha,
        size=1000 + len(name),
        source=f"intake:{partner}",
        isbn=ISBN13,
        partner=partner,
        original_name=name,
        **extra,  # type: ignore[arg-type]
    )


def test_assets_lists_every_version_with_its_origin_on_both_databases(
    store_url: str, tmp_path: Path
) -> None:
    with open_store(store_url) as store:
        v1 = store.add_asset_version(_intake("cover", SHA[0], "9781900200011_cover.pdf", "ann"))
        v2 = store.add_asset_version(
            _intake("cover", SHA[1], "9781900200011_cover_v2.pdf", "bob", intake_id=12)
        )
        interior = store.add_asset_version(
            _intake("interior", SHA[2], "1900200011/interior/book.pdf", "typo")
        )
        work_level = store.add_asset_version(
            AssetVersion(work_id=7, kind="jacket_copy", sha256=SHA[3], size=40, source="derived")
        )
        # Another product of the work, and another work: neither is this title's.
        store.add_asset_version(
            AssetVersion(work_id=7, product_id=71, kind="cover", sha256=SHA[4], size=5, isbn=OTHER)
        )
        store.add_asset_version(AssetVersion(work_id=8, kind="cover", sha256=SHA[4], size=5))
        assert store.asset_scopes_for_isbn(ISBN13) == [(7, 70)]
        assert store.asset_scopes_for_isbn(OTHER) == [(7, 71)]
        assert store.asset_scopes_for_isbn("9780000000002") == []
        back = store.get_asset_version(v2.id or 0)
        assert back is not None
        assert (back.isbn, back.partner, back.original_name, back.intake_id) == (
            ISBN13,
            "bob",
            "9781900200011_cover_v2.pdf",
            12,
        )
    # Consonance is unreachable (port 9): the ISBN is resolved from our records alone.
    config = _config(tmp_path, store_url, "http://127.0.0.1:9", "unused")

    done = _cli(config, "assets", ISBN10, "--json")  # an ISBN-10, hyphenated
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout)
    assert (found["isbn13"], found["found_in"], found["work_ids"], found["product_ids"]) == (
        ISBN13,
        "records",
        [7],
        [70],
    )
    rows = {(v["kind"], v["version"]): v for v in found["versions"]}
    assert set(rows) == {("cover", 1), ("cover", 2), ("interior", 1), ("jacket_copy", 1)}
    first, second = rows["cover", 1], rows["cover", 2]
    assert (first["id"], first["current"], first["superseded_by"], first["supersedes"]) == (
        v1.id,
        False,
        v2.id,
        None,
    )
    assert (second["current"], second["supersedes"], second["supersedes_version"]) == (
        True,
        v1.id,
        1,
    )
    assert (second["partner"], second["original_name"], second["sha256"], second["size"]) == (
        "bob",
        "9781900200011_cover_v2.pdf",
        SHA[1],
        1000 + len("9781900200011_cover_v2.pdf"),
    )
    assert second["created_at"] and second["intake_id"] == 12
    assert rows["interior", 1]["id"] == interior.id
    assert rows["jacket_copy", 1]["id"] == work_level.id
    assert rows["jacket_copy", 1]["level"] == "work" and second["level"] == "product"

    table = _cli(config, "assets", ISBN13)
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"ISBN {ISBN13}: work 7, product 70 (found in our records)" in table.stdout
    line = next(x for x in table.stdout.splitlines() if "cover_v2.pdf" in x)
    assert "bob" in line and SHA[1][:12] in line and "v1" in line and "yes" in line
    assert "4 versions" in table.stdout


def test_a_bad_isbn_is_one_line_naming_it(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", "http://127.0.0.1:9", "x")
    done = _cli(config, "assets", "9781900200012")  # wrong check digit
    assert done.returncode == 1
    assert "'9781900200012' is not a valid ISBN" in done.stderr
    assert "checksum" in done.stderr.lower()


def test_an_isbn_not_in_our_records_is_resolved_through_consonance(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path
) -> None:
    sandbox = consonance_sandbox_factory()
    product = next(
        p for p in sandbox.catalogue.products.values() if (p.isbn13 or "").startswith("978")
    )
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(db_url) as store:
        # Versions a flow recorded without an ISBN (a cover downloaded from Consonance).
        mine = store.add_asset_version(
            AssetVersion(
                work_id=product.work_id,
                product_id=product.id,
                kind="cover_image",
                sha256=SHA[0],
                size=9,
                source="consonance",
            )
        )
        store.add_asset_version(
            AssetVersion(work_id=product.work_id + 100000, kind="cover", sha256=SHA[1], size=1)
        )
    config = _config(tmp_path, db_url, sandbox.url, sandbox.token)

    offline = _cli(config, "assets", str(product.isbn13), "--offline")
    assert offline.returncode == 1
    assert f"no asset version of ISBN {product.isbn13} is in our records" in offline.stderr

    isbn10 = str(stdnum_isbn.to_isbn10(str(product.isbn13)))
    done = _cli(config, "assets", isbn10, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout)
    assert (found["found_in"], found["work_ids"], found["product_ids"]) == (
        "consonance",
        [product.work_id],
        [product.id],
    )
    assert [v["id"] for v in found["versions"]] == [mine.id]


# The revision before 0009, whichever it is (0009 may be renumbered onto another revision).
BEFORE = "0009-1"


def test_migration_0009_keeps_older_versions_and_their_numbering(empty_url: str) -> None:
    migrate_to(empty_url, BEFORE)
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO asset_versions (work_id, product_id, kind, version, sha256, "
                    "size, source, created_at) VALUES (3, 30, 'cover', 1, :s, 10, "
                    "'intake:ann', CURRENT_TIMESTAMP)"
                ),
                {"s": SHA[0]},
            )
    finally:
        engine.dispose()
    with open_store(empty_url) as store:  # migrates to head
        [old] = store.list_asset_versions(3)
        assert (old.version, old.source, old.partner, old.isbn) == (1, "intake:ann", None, None)
        new = store.add_asset_version(
            AssetVersion(work_id=3, product_id=30, kind="cover", sha256=SHA[1], size=11)
        )
        assert new.version == 2
    migrate_to(empty_url, BEFORE, down=True)
    engine = create_engine(empty_url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("asset_versions")}
        assert not {"isbn", "partner", "original_name", "intake_id"} & columns
        # The numbering's unique index survived the downgrade: a second v2 is refused.
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO asset_versions (work_id, product_id, kind, version, sha256, "
                    "size, created_at) VALUES (3, 30, 'cover', 2, :s, 1, CURRENT_TIMESTAMP)"
                ),
                {"s": SHA[2]},
            )
    finally:
        engine.dispose()
    migrate_to(empty_url, "head")
    with open_store(empty_url) as store:
        assert [v.version for v in store.list_asset_versions(3)] == [1, 2]
