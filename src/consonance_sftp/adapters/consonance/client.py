"""ConsonanceClient: the ConsonanceAPI port over Consonance's GraphQL API.

Lists page by keyset: ask again with ``after: <last id>`` until a page comes back empty (the
page size is the server's; none is documented). ``changed_since`` asks for one day earlier than
given, because Consonance's filter is a date and may miss a change made late on the day of the
last poll; records are de-duplicated by id across pages. Contracts have no documented list
query: ``iter_contracts`` pages through the works' contract ids and reads each contract with
the documented ``contract(contractSearch: {idEq})``, a few at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import mimetypes
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

from consonance_sftp.adapters.consonance import mapping, mutations
from consonance_sftp.adapters.consonance.documents import load
from consonance_sftp.adapters.consonance.transport import (
    GraphQLTransport,
    RequestStats,
    RetryPolicy,
)
from consonance_sftp.errors import (
    LOCAL_DISK_FULL_ERRNOS,
    ConsonanceQueryError,
    ConsonanceUnavailable,
    LocalDiskFull,
)
from consonance_sftp.models import (
    Contact,
    Contract,
    Product,
    ProductionFile,
    SupportingResource,
    Todo,
    Work,
)
from consonance_sftp.ports.consonance import AttachTarget, ConsonanceAPI

T = TypeVar("T")
OVERLAP = timedelta(days=1)
CONTRACT_READS = 4
"""Contracts read at once by ``iter_contracts`` (one request each; none is documented to
list them): enough to hide the round trip, few enough not to look like a flood."""


class ConsonanceClient:
    """Async client; use as ``async with ConsonanceClient(url, token) as api``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        auth_scheme: str = "Bearer",
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._transport = GraphQLTransport(
            base_url, token, timeout=timeout, retry=retry, auth_scheme=auth_scheme, client=http
        )

    @property
    def stats(self) -> RequestStats:
        return self._transport.stats

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> ConsonanceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- reading --------------------------------------------------------------------------

    async def _pages(
        self,
        operation: str,
        document: str,
        root: str,
        search_var: str,
        search: dict[str, Any],
        build: Callable[[dict[str, Any]], T],
    ) -> AsyncIterator[T]:
        after: int | None = None
        seen: set[int] = set()
        while True:
            page_search = {**search, "after": after} if after is not None else dict(search)
            data = await self._transport.execute(operation, document, {search_var: page_search})
            rows = data.get(root)
            if not isinstance(rows, list):
                raise ConsonanceQueryError(f"Consonance answered {operation} without {root}")
            if not rows:
                return
            for row in rows:
                row_id = int(row["id"])
                if after is not None and row_id <= after:
                    raise ConsonanceQueryError(
                        f"Consonance paged {operation} out of order: id {row_id} after {after}"
                    )
                if row_id not in seen:
                    seen.add(row_id)
                    yield build(row)
            after = int(rows[-1]["id"])

    @staticmethod
    def _since(changed_since: date | None) -> dict[str, Any]:
        if changed_since is None:
            return {}
        return {"changedSince": (changed_since - OVERLAP).isoformat()}

    def iter_works(self, *, changed_since: date | None = None) -> AsyncIterator[Work]:
        return self._pages(
            "Works",
            load("works.graphql"),
            "works",
            "workSearch",
            self._since(changed_since),
            mapping.work,
        )

    def iter_products(self, *, changed_since: date | None = None) -> AsyncIterator[Product]:
        return self._pages(
            "Products",
            load("products.graphql"),
            "products",
            "productSearch",
            self._since(changed_since),
            mapping.product,
        )

    async def get_work(self, work_id: int) -> Work | None:
        data = await self._transport.execute("Work", load("work.graphql"), {"id": work_id})
        raw = data.get("work")
        return mapping.work(raw) if raw else None

    async def get_product_by_isbn(self, isbn13: str) -> Product | None:
        data = await self._transport.execute(
            "ProductByIsbn", load("product_by_isbn.graphql"), {"isbn": isbn13}
        )
        raw = data.get("product")
        return mapping.product(raw) if raw else None

    async def contract(self, contract_id: int) -> Contract | None:
        data = await self._transport.execute(
            "Contract", load("contract.graphql"), {"id": contract_id}
        )
        raw = data.get("contract")
        return mapping.contract(raw) if raw else None

    async def _contract_ids(self) -> AsyncIterator[int]:
        """Every work's contract ids, in work order, each once."""
        seen: set[int] = set()
        pages = self._pages(
            "WorkContracts",
            load("work_contracts.graphql"),
            "works",
            "workSearch",
            {},
            lambda row: [int(c["id"]) for c in row.get("contracts") or ()],
        )
        async for ids in pages:
            for contract_id in ids:
                if contract_id not in seen:
                    seen.add(contract_id)
                    yield contract_id

    async def _contracts(self, concurrency: int) -> AsyncIterator[Contract]:
        window: deque[asyncio.Task[Contract | None]] = deque()
        try:
            async for contract_id in self._contract_ids():
                window.append(asyncio.create_task(self.contract(contract_id)))
                if len(window) >= concurrency:
                    found = await window.popleft()
                    if found is not None:
                        yield found
            while window:
                found = await window.popleft()
                if found is not None:
                    yield found
        finally:
            for task in window:  # the caller stopped early, or one read failed
                task.cancel()
            await asyncio.gather(*window, return_exceptions=True)

    def iter_contracts(self, *, concurrency: int = CONTRACT_READS) -> AsyncIterator[Contract]:
        """Every contract of every work, in the works' order, each once; up to
        ``concurrency`` contracts are read at a time. A contract removed between the two
        reads is left out."""
        return self._contracts(max(1, concurrency))

    def iter_contacts(self) -> AsyncIterator[Contact]:
        return self._pages(
            "Contacts",
            load("contacts.graphql"),
            "contacts",
            "contactSearch",
            {},
            mapping.contact_record,
        )

    async def execute(
        self, operation: str, document: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run any document (reports, one-off queries); returns ``data``."""
        return await self._transport.execute(operation, document, variables)

    # --- writing --------------------------------------------------------------------------

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
        if target is AttachTarget.SUPPORTING_RESOURCE:
            operation, root, record = (
                "CreateSupportingResource",
                "createSupportingResource",
                ("supportingResource"),
            )
            args = mutations.variables(
                workId=work_id,
                resourceFileName=filename,
                resourceVariant=variant,
                status=status,
                productIds=list(product_ids) or None,
                linkToAllProducts=None if product_ids else True,
            )
            doc = mutations.document("create_supporting_resource")
        else:
            operation, root, record = (
                "CreateProductionFile",
                "createProductionFile",
                ("productionFile"),
            )
            args = mutations.variables(
                workId=work_id,
                fileName=filename,
                fileVariant=variant,
                approvalStatus=status,
                productIds=list(product_ids) or None,
            )
            doc = mutations.document("create_production_file")
        data = await self._transport.execute(operation, doc, args, idempotent=False)
        raw = mutations.payload(operation, data, root, record)
        url = raw["_payload"].get("presignedUrl")
        if not url:
            raise ConsonanceQueryError(f"Consonance answered {operation} without an upload URL")
        size = await self._upload(url, source, filename)
        if target is AttachTarget.SUPPORTING_RESOURCE:
            res = mapping.resource(raw)
            return res if res.file_size is not None else _with_size(res, size)
        pf = mapping.production_file(raw)
        return pf if pf.file_size is not None else _with_size(pf, size)

    async def _upload(self, url: str, source: Path | bytes, filename: str) -> int:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        http = self._transport.http
        try:
            if isinstance(source, bytes):
                response = await http.put(
                    url, content=source, headers={"Content-Type": content_type}
                )
                size = len(source)
            else:
                size = (await asyncio.to_thread(source.stat)).st_size
                response = await http.put(
                    url,
                    content=_chunks(source),
                    headers={"Content-Type": content_type, "Content-Length": str(size)},
                )
        except httpx.HTTPError as exc:
            raise ConsonanceUnavailable(
                f"upload of {filename} to Consonance failed: {exc!r}"
            ) from exc
        if response.status_code >= 400:
            raise ConsonanceUnavailable(
                f"upload of {filename} to Consonance failed with HTTP {response.status_code}",
                retryable=response.status_code >= 500,
            )
        return size

    async def download_file(self, url: str, dest: Path) -> tuple[int, str]:
        """Stream a file Consonance links to (production file, resource) into ``dest``.

        Written under a temporary name, fsynced, then renamed: ``dest`` is never half a file.
        Returns (size, SHA-256). Links are usually presigned storage URLs that must not get
        our API token, so the token goes only to URLs on the API's own origin.
        """
        headers = self._transport.auth_headers_for(url)
        part = dest.with_name(f".{dest.name}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._transport.http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    raise ConsonanceUnavailable(
                        f"download of {url} from Consonance failed with HTTP "
                        f"{response.status_code}",
                        retryable=response.status_code >= 500 or response.status_code == 429,
                    )
                await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
                with part.open("wb") as out:
                    async for chunk in response.aiter_bytes(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                        await asyncio.to_thread(out.write, chunk)
                    await asyncio.to_thread(os.fsync, out.fileno())
        except httpx.HTTPError as exc:
            raise ConsonanceUnavailable(
                f"download of {url} from Consonance failed: {exc!r}"
            ) from exc
        except OSError as exc:
            if exc.errno not in LOCAL_DISK_FULL_ERRNOS:
                raise
            # Our disk, not the network. An HTTP download starts again, so its partial only
            # takes space: remove it.
            await asyncio.to_thread(part.unlink, missing_ok=True)
            raise LocalDiskFull.writing(exc, dest, kept=False) from exc
        await asyncio.to_thread(os.replace, part, dest)
        return size, digest.hexdigest()

    async def update_todo(self, todo_id: int, *, completed: bool) -> Todo:
        data = await self._transport.execute(
            "UpdateTodo",
            mutations.document("update_todo"),
            mutations.variables(id=todo_id, completed=completed),
        )  # setting a to-do's state twice is harmless: retried like a query
        return mapping.todo(mutations.payload("UpdateTodo", data, "updateTodo", "todo"))

    async def add_note(
        self, text: str, *, work_id: int | None = None, product_id: int | None = None
    ) -> int:
        data = await self._transport.execute(
            "CreateNote",
            mutations.document("create_note"),
            mutations.variables(workId=work_id, productId=product_id, noteText=text),
            idempotent=False,
        )
        return int(mutations.payload("CreateNote", data, "createNote", "note")["id"])


async def _chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    # Files are local; reads of 1 MiB are short enough not to stall the event loop.
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _with_size(record: Any, size: int) -> Any:
    return dataclasses.replace(record, file_size=size)


def _conforms(client: ConsonanceClient) -> ConsonanceAPI:
    """Never called: makes mypy check that the client implements the port."""
    return client
