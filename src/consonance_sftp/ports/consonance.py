"""ConsonanceAPI port: reading the catalogue and writing back what the flows produce."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path
from typing import Protocol

from consonance_sftp.models import (
    Contact,
    Contract,
    Product,
    ProductionFile,
    SupportingResource,
    Todo,
    Work,
)


class AttachTarget(enum.StrEnum):
    """Where a file goes in Consonance: a cover/image/resource, or a print/ebook/audio file."""

    SUPPORTING_RESOURCE = "supporting_resource"
    PRODUCTION_FILE = "production_file"


class ConsonanceAPI(Protocol):
    def iter_works(self, *, changed_since: date | None = None) -> AsyncIterator[Work]:
        """Every work (with its products), in ascending id order, paging through the API.

        With ``changed_since``, only works that changed on or after that date (Consonance's
        filter is a date and over-inclusive; implementations over-fetch a day and never
        yield a work twice).
        """
        ...

    def iter_products(self, *, changed_since: date | None = None) -> AsyncIterator[Product]: ...

    async def get_work(self, work_id: int) -> Work | None: ...

    async def get_product_by_isbn(self, isbn13: str) -> Product | None: ...

    async def contract(self, contract_id: int) -> Contract | None:
        """One contract with its dates, term, money terms and licensed rights; None if
        there is none with that id."""
        ...

    def iter_contracts(self) -> AsyncIterator[Contract]:
        """Every contract of every work, each once (works in ascending id order)."""
        ...

    def iter_contacts(self) -> AsyncIterator[Contact]:
        """Every contact, persons and organisations, in ascending id order."""
        ...

    async def attach_file(
        self,
        *,
        work_id: int,
        source: Path | bytes,
        filename: str,
        target: AttachTarget,
        variant: str,
        product_ids: Sequence[int] = (),
        status: str | None = None,
    ) -> SupportingResource | ProductionFile:
        """Create the record and upload the bytes to the presigned URL Consonance returns.
        ``status``: a production file's ``approvalStatus`` (``AWAITING_APPROVAL``,
        ``APPROVED``...) or a supporting resource's ``status`` (``DRAFT``, ``APPROVED``);
        None: Consonance's default."""
        ...

    async def download_file(self, url: str, dest: Path) -> tuple[int, str]:
        """Fetch a linked file (production file, resource) into ``dest`` atomically;
        returns (size, SHA-256)."""
        ...

    async def update_todo(self, todo_id: int, *, completed: bool) -> Todo: ...

    async def add_note(
        self, text: str, *, work_id: int | None = None, product_id: int | None = None
    ) -> int:
        """Add a note to a work or product; returns the note's id."""
        ...
