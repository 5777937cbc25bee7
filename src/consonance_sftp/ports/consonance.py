"""ConsonanceAPI port: reading the catalogue and writing back what the flows produce."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Protocol

from consonance_sftp.models import Product, Work


class ConsonanceAPI(Protocol):
    def iter_works(self, *, changed_since: date | None = None) -> AsyncIterator[Work]:
        """Every work (with its products), in ascending id order, paging through the API."""
        ...

    def iter_products(self, *, changed_since: date | None = None) -> AsyncIterator[Product]: ...

    async def get_work(self, work_id: int) -> Work | None: ...

    async def get_product_by_isbn(self, isbn13: str) -> Product | None: ...
