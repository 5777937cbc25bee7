"""``assets ISBN``: every version of every asset kind of a title, who sent it, when, and what it
superseded.

The ISBN (ISBN-13 or ISBN-10, with or without hyphens; checked and converted with
python-stdnum) is resolved to its product and work from our own records first: the asset
versions matched to that ISBN when a partner's file was taken in. Only when none is there is
Consonance asked (``get_product_by_isbn``), so the versions made by flows that do not record
an ISBN (a cover downloaded from Consonance, a derived image) are found too; ``offline`` never
asks. The versions listed are the product's and its work's own (``product_id`` empty), each
kind's versions oldest first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

from stdnum import isbn as stdnum_isbn
from stdnum.exceptions import ValidationError as StdnumError

from consonance_sftp.errors import ConsonanceError, ConsonanceSftpError

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.ports.store import AssetVersion, Store

FOUND_IN_RECORDS = "records"
FOUND_IN_CONSONANCE = "consonance"


class BadIsbn(ConsonanceSftpError):
    """The text given is not a valid ISBN-13 or ISBN-10."""


def isbn13_of(text: str) -> str:
    """The ISBN-13 of an ISBN-13 or ISBN-10 (hyphens and spaces allowed; checksum checked)."""
    try:
        valid = stdnum_isbn.validate(text)
    except StdnumError as exc:
        raise BadIsbn(
            f"{text!r} is not a valid ISBN: {exc}",
            hint="Give an ISBN-13 (978...) or an ISBN-10, with or without hyphens.",
        ) from None
    return str(stdnum_isbn.to_isbn13(valid))


@dataclass(frozen=True, slots=True)
class AssetLine:
    """One asset version as ``assets`` shows it: the stored version, and the number of the
    version it superseded (None: the first of its kind)."""

    version: AssetVersion
    supersedes: int | None = None  # the id of the version this one replaced
    supersedes_version: int | None = None  # ... and its number

    @property
    def level(self) -> str:
        return "work" if self.version.product_id is None else "product"

    @property
    def current(self) -> bool:
        return self.version.superseded_by is None

    def to_dict(self) -> dict[str, Any]:
        v = self.version
        created = v.created_at.astimezone(UTC).isoformat(timespec="seconds") if v.created_at else ""
        return {
            "id": v.id,
            "kind": v.kind,
            "level": self.level,
            "work_id": v.work_id,
            "product_id": v.product_id,
            "version": v.version,
            "current": self.current,
            "sha256": v.sha256,
            "size": v.size,
            "partner": v.partner,
            "original_name": v.original_name,
            "source": v.source,
            "created_at": created or None,
            "supersedes": self.supersedes,
            "supersedes_version": self.supersedes_version,
            "superseded_by": v.superseded_by,
            "intake_id": v.intake_id,
            "local_path": v.local_path,
        }


@dataclass(slots=True)
class AssetHistory:
    """What ``assets ISBN`` found: the title, where it was resolved, every version."""

    isbn13: str
    found_in: str  # FOUND_IN_RECORDS or FOUND_IN_CONSONANCE
    work_ids: list[int] = field(default_factory=list)
    product_ids: list[int] = field(default_factory=list)
    lines: list[AssetLine] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "isbn13": self.isbn13,
            "found_in": self.found_in,
            "work_ids": self.work_ids,
            "product_ids": self.product_ids,
            "versions": [line.to_dict() for line in self.lines],
        }


def versions_of(store: Store, scopes: list[tuple[int, int | None]]) -> list[AssetLine]:
    """Every version of the products and their works in ``scopes``, grouped by level and kind,
    oldest first, each with the version it superseded."""
    products: dict[int, set[int]] = {}
    for work_id, product_id in scopes:
        wanted = products.setdefault(work_id, set())
        if product_id is not None:
            wanted.add(product_id)
    picked: list[AssetVersion] = []
    for work_id, wanted in products.items():
        picked += [
            v
            for v in store.list_asset_versions(work_id)
            if v.product_id is None or v.product_id in wanted
        ]
    by_id = {v.id: v for v in picked}
    replaced = {v.superseded_by: v for v in picked if v.superseded_by is not None}
    picked.sort(key=lambda v: (v.work_id, v.product_id or 0, v.kind, v.version or 0))
    out: list[AssetLine] = []
    for v in picked:
        before = None if v.id is None else replaced.get(v.id)
        if before is None or before.id not in by_id:
            out.append(AssetLine(v))
        else:
            out.append(AssetLine(v, supersedes=before.id, supersedes_version=before.version))
    return out


async def asset_history(app: App, isbn: str, *, offline: bool = False) -> AssetHistory:
    """Every version of every asset kind of the product with this ISBN and of its work."""
    isbn13 = isbn13_of(isbn)
    scopes = await asyncio.to_thread(app.store.asset_scopes_for_isbn, isbn13)
    found_in = FOUND_IN_RECORDS
    if not scopes:
        if offline:
            raise ConsonanceSftpError(
                f"no asset version of ISBN {isbn13} is in our records",
                hint="Without --offline, Consonance is asked for the product and its work.",
            )
        scopes = await _from_consonance(app, isbn13)
        found_in = FOUND_IN_CONSONANCE
    lines = await asyncio.to_thread(versions_of, app.store, scopes)
    return AssetHistory(
        isbn13=isbn13,
        found_in=found_in,
        work_ids=sorted({w for w, _ in scopes}),
        product_ids=sorted({p for _, p in scopes if p is not None}),
        lines=lines,
    )


async def _from_consonance(app: App, isbn13: str) -> list[tuple[int, int | None]]:
    try:
        async with app.consonance() as client:
            product = await client.get_product_by_isbn(isbn13)
    except ConsonanceError as exc:
        raise ConsonanceSftpError(
            f"no asset version of ISBN {isbn13} is in our records, and Consonance could not "
            f"be asked for its product: {exc}",
            hint="Check [consonance] in the config and that Consonance is reachable.",
        ) from exc
    if product is None:
        raise ConsonanceSftpError(
            f"ISBN {isbn13} is in neither our asset records nor Consonance",
            hint="Check the ISBN; a title only has versions once a file of it was taken in "
            "or sent.",
        )
    return [(product.work_id, product.id)]
