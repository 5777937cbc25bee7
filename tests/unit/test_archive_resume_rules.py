"""Which archive a run delivers instead of writing a new one (``flows.archive_resume``): the
flow's latest archive, whole on disk, while a partner has no outcome recorded for it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.flows.archive_resume import undelivered_archive
from consonance_sftp.formats.archive import sidecar_line
from consonance_sftp.models import AuditAction, DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRecord


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        yield s


def _written(store: SqlStore, folder: Path, name: str, flow: str = "nightly") -> Path:
    path = folder / f"{name}.tar.zst.age"
    data = name.encode() * 100
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    path.with_name(path.name + ".sha256").write_text(sidecar_line(sha, path.name))
    store.append_audit(
        "flow:archive",
        AuditAction.ARCHIVE_WRITTEN,
        f"archive:{path.name}",
        {"flow": flow, "path": str(path), "sha256": sha, "size": len(data), "files": 3},
    )
    return path


def _row(store: SqlStore, path: Path, partner: str, outcome: DeliveryOutcome) -> None:
    data = path.read_bytes()
    store.record_delivery(
        DeliveryRecord(
            flow="nightly",
            partner=partner,
            remote_path=f"/vault/{path.name}",
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            outcome=outcome,
        )
    )


def test_the_latest_archive_without_an_outcome_is_delivered_again(
    store: SqlStore, tmp_path: Path
) -> None:
    _written(store, tmp_path, "nightly-1")
    latest = _written(store, tmp_path, "nightly-2")
    _written(store, tmp_path, "other-1", flow="other")
    found = undelivered_archive(store, "nightly", ["vault", "cold"])
    assert found is not None
    assert (found.path, found.size, found.files) == (latest, latest.stat().st_size, 3)
    assert found.partners == ("vault", "cold")
    _row(store, latest, "vault", DeliveryOutcome.SENT)
    found = undelivered_archive(store, "nightly", ["vault", "cold"])
    assert found is not None and found.partners == ("cold",)
    _row(store, latest, "cold", DeliveryOutcome.RUNNING)  # still going: delivered again
    assert undelivered_archive(store, "nightly", ["vault", "cold"]) is not None


def test_a_delivered_or_failed_archive_is_not_reused(store: SqlStore, tmp_path: Path) -> None:
    path = _written(store, tmp_path, "nightly-1")
    _row(store, path, "vault", DeliveryOutcome.SENT)
    _row(store, path, "cold", DeliveryOutcome.FAILED)  # failed for good: a new run writes anew
    assert undelivered_archive(store, "nightly", ["vault", "cold"]) is None
    assert undelivered_archive(store, "nightly", []) is None


def test_an_archive_not_whole_on_disk_is_not_reused(store: SqlStore, tmp_path: Path) -> None:
    path = _written(store, tmp_path, "nightly-1")
    assert undelivered_archive(store, "nightly", ["vault"]) is not None
    path.write_bytes(path.read_bytes()[:-1])  # not the size recorded
    assert undelivered_archive(store, "nightly", ["vault"]) is None
    path = _written(store, tmp_path, "nightly-2")
    path.with_name(path.name + ".sha256").unlink()  # no sidecar
    assert undelivered_archive(store, "nightly", ["vault"]) is None
    path = _written(store, tmp_path, "nightly-3")
    path.unlink()  # removed
    assert undelivered_archive(store, "nightly", ["vault"]) is None
