"""Seeding the sandbox catalogue: generated, or from any ONIX 3.0 file.

ONIX seeding uses the service's own ONIX reader (``formats.onix.reader``), then adds what ONIX
does not carry and the flows need: a project stage, the usual to-dos and a contract per work.
Cover links in the ONIX point at the publisher's web server; by default they are replaced by
sandbox-served JPEGs of the stated size so the sandbox works offline (``keep_resource_urls``
keeps them).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from consonance_sftp.formats.onix.reader import read_onix_works
from consonance_sftp.models import Contract, SupportingResource, Todo, Work
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.generator import TODO_NAMES, generate_catalogue

CATALOGUE_DIR = "consonance"


def catalogue_dir(data_dir: Path) -> Path:
    """Where the catalogue lives under the sandbox data dir (next to the SFTP partners')."""
    return data_dir / CATALOGUE_DIR


def _placeholder(resource: SupportingResource) -> SupportingResource:
    is_jpeg = (
        resource.content_type or ""
    ).lower() == "image/jpeg" or resource.filename.lower().endswith((".jpg", ".jpeg"))
    if not is_jpeg:
        return resource
    width = min(resource.width or 40, 4000)
    height = min(resource.height or 60, 6000)
    return dataclasses.replace(
        resource,
        url=f"/files/generated/sr-{resource.id}-{width}x{height}.jpg",
        content_type="image/jpeg",
        width=width,
        height=height,
    )


def catalogue_from_onix(
    source: Path | BinaryIO,
    *,
    with_workflow: bool = True,
    keep_resource_urls: bool = False,
    now: datetime | None = None,
) -> Catalogue:
    stamp = now or datetime.now(UTC)
    works = read_onix_works(source)
    cat = Catalogue.from_records(works)
    out: list[Work] = []
    contracts: list[Contract] = []
    for work in works:
        products = tuple(dataclasses.replace(p, updated_at=stamp) for p in work.products)
        resources = tuple(
            r if r.created_at else dataclasses.replace(r, created_at=stamp)
            for r in work.supporting_resources
        )
        if not keep_resource_urls:
            resources = tuple(_placeholder(r) for r in resources)
        changes: dict[str, object] = {
            "products": products,
            "supporting_resources": resources,
            "updated_at": stamp,
        }
        if with_workflow:
            pub = min((p.publication_date for p in products if p.publication_date), default=None)
            pub = pub or stamp.date()
            if not work.todos:
                changes["todos"] = tuple(
                    Todo(id=cat.new_id(), name=name, due_date=pub - timedelta(days=120 - 20 * i))
                    for i, name in enumerate(TODO_NAMES)
                )
            if work.project_stage is None:
                changes["project_stage"] = "Editorial"
            if not work.contract_ids:
                contract = Contract(
                    id=cat.new_id(), contract_name=f"Contract: {work.title}", work_id=work.id
                )
                contracts.append(contract)
                changes["contract_ids"] = (contract.id,)
        out.append(dataclasses.replace(work, **changes))  # type: ignore[arg-type]
    seeded = Catalogue.from_records(out, cat.contacts.values(), contracts)
    seeded.next_id = max(seeded.next_id, cat.next_id)
    return seeded


def seed(
    data_dir: Path,
    *,
    products: int | None = None,
    works: int | None = None,
    seed_value: int = 1,
    onix: Path | None = None,
    keep_resource_urls: bool = False,
) -> Catalogue:
    """Build a catalogue and save it under ``data_dir``; returns it."""
    if onix is not None:
        catalogue = catalogue_from_onix(onix, keep_resource_urls=keep_resource_urls)
    elif works is not None:
        catalogue = generate_catalogue(seed=seed_value, works=works)
    else:
        catalogue = generate_catalogue(products or 200, seed=seed_value)
    catalogue.save(catalogue_dir(data_dir))
    return catalogue


def load_or_seed(data_dir: Path, *, works: int = 24, seed_value: int = 1) -> Catalogue:
    """The saved catalogue, or a generated one of ``works`` works saved for next time."""
    where = catalogue_dir(data_dir)
    if Catalogue.exists(where):
        return Catalogue.load(where)
    return seed(data_dir, works=works, seed_value=seed_value)
