"""The sandbox's catalogue: works, products, contacts, contracts, notes and files, in memory.

Records are our own domain models (``models.Work``...), so the generator and the ONIX reader
feed it directly. Indices (by id, by ISBN, to-do to work) make the GraphQL resolvers cheap; the
whole state is pickled under a data directory so the separate processes of the demo (seed,
serve, control) share it. Every change bumps ``updated_at`` of the record and of its work:
that is what ``changedSince`` reads, and why a product change also makes its siblings "likely
to have changed", as Consonance documents.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import pickle
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from consonance_sftp.models import (
    Contact,
    Contract,
    Price,
    Product,
    ProductionFile,
    SupportingResource,
    Todo,
    Work,
)

# 2: products carry ``asin`` (a slots dataclass pickles its fields by position, so a
# catalogue saved before is refused with "seed it again", not read into the wrong fields).
# 3: products carry ``gtin``, ``unpriced_item_type``, dates, parts...; works ``series`` and
# ``other_subjects``; texts and resources ``audiences`` (issue 18).
FORMAT_VERSION = 3
STATE_FILE = "catalogue.pickle"
UPLOADS_DIR = "uploads"


class CatalogueError(Exception):
    """A control or mutation request names something the catalogue does not have."""


@dataclass(slots=True)
class Note:
    id: int
    text: str
    created_at: datetime
    work_id: int | None = None
    product_id: int | None = None


@dataclass(slots=True)
class PendingUpload:
    """A presigned upload the sandbox handed out and waits for."""

    token: str
    kind: str  # "supporting_resource" | "production_file"
    record_id: int
    work_id: int
    filename: str


@dataclass(slots=True)
class Catalogue:
    works: dict[int, Work] = field(default_factory=dict)
    contacts: dict[int, Contact] = field(default_factory=dict)
    contracts: dict[int, Contract] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    uploads: dict[str, PendingUpload] = field(default_factory=dict)
    # Paths of uploaded files, by the URL path the resolvers publish.
    files: dict[str, str] = field(default_factory=dict)
    next_id: int = 1_000_000
    # Indices, rebuilt by ``reindex``; not persisted.
    work_ids: list[int] = field(default_factory=list)
    product_ids: list[int] = field(default_factory=list)
    products: dict[int, Product] = field(default_factory=dict)
    isbn_index: dict[str, int] = field(default_factory=dict)
    todo_work: dict[int, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # --- building -------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls,
        works: Iterable[Work],
        contacts: Iterable[Contact] = (),
        contracts: Iterable[Contract] = (),
    ) -> Catalogue:
        cat = cls(
            works={w.id: w for w in works},
            contacts={c.id: c for c in contacts},
            contracts={c.id: c for c in contracts},
        )
        for work in cat.works.values():
            for contribution in work.contributions:
                cat.contacts.setdefault(contribution.contributor.id, contribution.contributor)
        cat.reindex()
        cat.next_id = max(cat._max_id() + 1, cat.next_id)
        return cat

    def _max_id(self) -> int:
        ids = [0, *self.works, *self.contacts, *self.contracts]
        for work in self.works.values():
            ids.extend(p.id for p in work.products)
            ids.extend(t.id for t in work.todos)
            ids.extend(r.id for r in work.supporting_resources)
            for product in work.products:
                ids.extend(pr.id for pr in product.prices)
                ids.extend(f.id for f in product.production_files)
        return max(ids)

    def reindex(self) -> None:
        self.work_ids = sorted(self.works)
        self.products = {p.id: p for w in self.works.values() for p in w.products}
        self.product_ids = sorted(self.products)
        self.isbn_index = {p.isbn13: p.id for p in self.products.values() if p.isbn13}
        self.todo_work = {t.id: w.id for w in self.works.values() for t in w.todos}

    def new_id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id

    # --- reading --------------------------------------------------------------------------

    def works_after(self, after: int | None) -> Iterator[Work]:
        start = 0 if after is None else bisect.bisect_right(self.work_ids, after)
        for work_id in self.work_ids[start:]:
            yield self.works[work_id]

    def products_after(self, after: int | None) -> Iterator[Product]:
        start = 0 if after is None else bisect.bisect_right(self.product_ids, after)
        for product_id in self.product_ids[start:]:
            yield self.products[product_id]

    def work_of(self, product: Product) -> Work:
        return self.works[product.work_id]

    def notes_for(self, *, work_id: int | None = None, product_id: int | None = None) -> list[Note]:
        return [
            n
            for n in self.notes
            if (work_id is not None and n.work_id == work_id)
            or (product_id is not None and n.product_id == product_id)
        ]

    def get_work(self, work_id: int) -> Work:
        try:
            return self.works[work_id]
        except KeyError:
            raise CatalogueError(f"no work with id {work_id}") from None

    def get_product(self, product_id: int) -> Product:
        try:
            return self.products[product_id]
        except KeyError:
            raise CatalogueError(f"no product with id {product_id}") from None

    # --- changing -------------------------------------------------------------------------

    def _put_work(self, work: Work, now: datetime | None = None) -> Work:
        stamp = now or datetime.now(UTC)
        work = dataclasses.replace(work, updated_at=stamp)
        with self.lock:
            is_new = work.id not in self.works
            self.works[work.id] = work
            for product in work.products:
                self.products[product.id] = product
                if product.isbn13:
                    self.isbn_index[product.isbn13] = product.id
            for todo in work.todos:
                self.todo_work[todo.id] = work.id
            if is_new:
                bisect.insort(self.work_ids, work.id)
            known = set(self.product_ids)
            for product in work.products:
                if product.id not in known:
                    bisect.insort(self.product_ids, product.id)
        return work

    def _put_product(self, product: Product) -> Product:
        now = datetime.now(UTC)
        product = dataclasses.replace(product, updated_at=now)
        work = self.get_work(product.work_id)
        products = tuple(product if p.id == product.id else p for p in work.products)
        self._put_work(dataclasses.replace(work, products=products), now)
        return product

    def add_records(
        self,
        *,
        works: Iterable[Work] = (),
        contacts: Iterable[Contact] = (),
        contracts: Iterable[Contract] = (),
    ) -> None:
        """Add (or replace) whole records, keeping each work's ``updated_at`` if it has one."""
        with self.lock:
            for contact in contacts:
                self.contacts[contact.id] = contact
            for contract in contracts:
                self.contracts[contract.id] = contract
            for work in works:
                self._put_work(work, work.updated_at)
            self.next_id = max(self.next_id, self._max_id() + 1)

    def update_work(self, work_id: int, **changes: Any) -> Work:
        return self._put_work(dataclasses.replace(self.get_work(work_id), **changes))

    def set_project_stage(self, work_id: int, stage: str | None) -> Work:
        return self.update_work(work_id, project_stage=stage)

    def update_todo(
        self,
        todo_id: int,
        *,
        completed: bool | None = None,
        name: str | None = None,
        due_date: date | None = None,
    ) -> Todo:
        work_id = self.todo_work.get(todo_id)
        if work_id is None:
            raise CatalogueError(f"no to-do with id {todo_id}")
        work = self.works[work_id]
        changed: Todo | None = None
        todos: list[Todo] = []
        for todo in work.todos:
            if todo.id == todo_id:
                changes: dict[str, Any] = {}
                if completed is not None:
                    changes["completed"] = completed
                if name is not None:
                    changes["name"] = name
                if due_date is not None:
                    changes["due_date"] = due_date
                todo = dataclasses.replace(todo, **changes)
                changed = todo
            todos.append(todo)
        self._put_work(dataclasses.replace(work, todos=tuple(todos)))
        assert changed is not None
        return changed

    def update_product(self, product_id: int, **changes: Any) -> Product:
        return self._put_product(dataclasses.replace(self.get_product(product_id), **changes))

    def set_price(
        self,
        product_id: int,
        *,
        currency: str,
        price_type: str,
        amount: Decimal,
        qualifier: str | None = "05",
        territories: tuple[str, ...] | None = None,
    ) -> Product:
        product = self.get_product(product_id)
        prices = list(product.prices)
        for i, price in enumerate(prices):
            if (price.currency, price.price_type, price.qualifier) == (
                currency,
                price_type,
                qualifier,
            ):
                prices[i] = dataclasses.replace(price, amount=amount)
                break
        else:
            prices.append(
                Price(
                    id=self.new_id(),
                    amount=amount,
                    currency=currency,
                    price_type=price_type,
                    qualifier=qualifier,
                    territories=territories or (),
                )
            )
        return self._put_product(dataclasses.replace(product, prices=tuple(prices)))

    def add_supporting_resource(
        self,
        work_id: int,
        *,
        filename: str,
        variant: str,
        product_ids: tuple[int, ...] = (),
        caption: str | None = None,
        status: str | None = "APPROVED",
        unlink_previous: bool = False,
    ) -> SupportingResource:
        work = self.get_work(work_id)
        resource_id = self.new_id()
        resource = SupportingResource(
            id=resource_id,
            variant=variant,
            filename=filename,
            url=None,  # set once the upload arrives
            status=status,
            product_ids=product_ids,
            created_at=datetime.now(UTC),
            caption=caption,
        )
        existing = work.supporting_resources
        if unlink_previous:
            existing = tuple(r for r in existing if r.variant != variant)
        self._put_work(dataclasses.replace(work, supporting_resources=(*existing, resource)))
        return resource

    def add_production_file(
        self,
        work_id: int,
        *,
        filename: str,
        variant: str,
        product_ids: tuple[int, ...],
        approval_status: str = "APPROVED",
    ) -> ProductionFile:
        work = self.get_work(work_id)
        targets = product_ids or tuple(p.id for p in work.products)
        if not targets:
            raise CatalogueError(f"work {work_id} has no products to attach a production file to")
        record = ProductionFile(
            id=self.new_id(),
            file_variant=variant,
            filename=filename,
            approval_status=approval_status,
            allow_distribution="ALLOWED",
            file_format=Path(filename).suffix.lstrip(".").upper() or None,
            product_ids=targets,
            created_at=datetime.now(UTC),
        )
        now = datetime.now(UTC)
        products = tuple(
            dataclasses.replace(p, production_files=(*p.production_files, record), updated_at=now)
            if p.id in targets
            else p
            for p in work.products
        )
        self._put_work(dataclasses.replace(work, products=products), now)
        return record

    def presign(self, kind: str, record_id: int, work_id: int, filename: str) -> str:
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.uploads[token] = PendingUpload(token, kind, record_id, work_id, filename)
        return token

    def complete_upload(self, token: str, stored_at: Path, size: int) -> str:
        """Record an uploaded file; returns the URL path it is now served under."""
        with self.lock:
            pending = self.uploads.pop(token, None)
        if pending is None:
            raise CatalogueError("unknown or already used upload URL")
        url_path = f"/files/uploads/{pending.record_id}/{pending.filename}"
        with self.lock:
            self.files[url_path] = str(stored_at)
        work = self.get_work(pending.work_id)
        if pending.kind == "supporting_resource":
            resources = tuple(
                dataclasses.replace(r, url=url_path, file_size=size)
                if r.id == pending.record_id
                else r
                for r in work.supporting_resources
            )
            self._put_work(dataclasses.replace(work, supporting_resources=resources))
        else:
            now = datetime.now(UTC)
            products = tuple(
                dataclasses.replace(
                    p,
                    production_files=tuple(
                        dataclasses.replace(f, url=url_path, file_size=size)
                        if f.id == pending.record_id
                        else f
                        for f in p.production_files
                    ),
                    updated_at=now,
                )
                if any(f.id == pending.record_id for f in p.production_files)
                else p
                for p in work.products
            )
            self._put_work(dataclasses.replace(work, products=products), now)
        return url_path

    def add_note(self, text: str, *, work_id: int | None, product_id: int | None) -> Note:
        if work_id is None and product_id is None:
            raise CatalogueError("a note needs a workId or a productId")
        if work_id is not None:
            self.get_work(work_id)
        if product_id is not None:
            self.get_product(product_id)
        note = Note(self.new_id(), text, datetime.now(UTC), work_id, product_id)
        with self.lock:
            self.notes.append(note)
        return note

    # --- persistence ----------------------------------------------------------------------

    def save(self, data_dir: Path) -> Path:
        """Write the catalogue atomically under ``data_dir`` (pickle: a local, trusted file)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        target = data_dir / STATE_FILE
        tmp = target.with_suffix(".tmp")
        with self.lock:
            state = {
                "version": FORMAT_VERSION,
                "works": self.works,
                "contacts": self.contacts,
                "contracts": self.contracts,
                "notes": self.notes,
                "uploads": self.uploads,
                "files": self.files,
                "next_id": self.next_id,
            }
            with tmp.open("wb") as fh:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, data_dir: Path) -> Catalogue:
        path = data_dir / STATE_FILE
        try:
            with path.open("rb") as fh:
                state = pickle.load(fh)  # noqa: S301 - our own file in the sandbox data dir
        except FileNotFoundError:
            raise CatalogueError(
                f"no sandbox catalogue in {data_dir}; run 'consonance-sftp sandbox seed' first"
            ) from None
        if state.get("version") != FORMAT_VERSION:
            raise CatalogueError(f"{path} was written by another version; seed it again")
        cat = cls(
            works=state["works"],
            contacts=state["contacts"],
            contracts=state["contracts"],
            notes=state["notes"],
            uploads=state["uploads"],
            files=state["files"],
            next_id=state["next_id"],
        )
        cat.reindex()
        return cat

    @staticmethod
    def exists(data_dir: Path) -> bool:
        return (data_dir / STATE_FILE).is_file()
