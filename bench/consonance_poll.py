"""Poll cost against a large sandbox: requests and time, with and without changes.

Starts the Consonance sandbox (real HTTP, in a thread) with a generated catalogue, takes the
baseline (a full read: the peer every incremental poll is compared with), then measures an
incremental poll with no changes and one after N changes (stage moves, to-dos, prices).

    .venv/bin/python bench/consonance_poll.py              # 50,000 products, 10 changes
    .venv/bin/python bench/consonance_poll.py --products 5000 --changes 3
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from decimal import Decimal

import httpx

from consonance_sftp.adapters.consonance import ConsonanceClient
from consonance_sftp.flows.changes import ChangeDetector, PollReport
from consonance_sftp.ports.snapshots import Snapshot
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.consonance.runner import SandboxThread
from consonance_sftp.sandbox.consonance.server import SandboxSettings


class DictSnapshots:
    def __init__(self) -> None:
        self.data: dict[str, dict[int, Snapshot]] = {}
        self.marks: dict[str, str] = {}

    def load_snapshots(self, kind: str) -> dict[int, Snapshot]:
        return dict(self.data.get(kind, {}))

    def save_snapshots(self, kind: str, snapshots: Mapping[int, Snapshot]) -> None:
        self.data.setdefault(kind, {}).update(snapshots)

    def get_watermark(self, name: str) -> str | None:
        return self.marks.get(name)

    def set_watermark(self, name: str, value: str) -> None:
        self.marks[name] = value


async def measure(
    label: str, detector: ChangeDetector, api: ConsonanceClient, run: str = "poll"
) -> tuple[PollReport, int, float]:
    before = api.stats.requests
    started = time.perf_counter()
    report = await (detector.poll() if run == "poll" else detector.reconcile())
    seconds = time.perf_counter() - started
    requests = api.stats.requests - before
    print(
        f"{label:<28} mode={report.mode:<11} requests={requests:>4}  time={seconds:7.2f}s  "
        f"works read={report.works_read:>6}  events={len(report.events)}"
    )
    return report, requests, seconds


async def main(products: int, changes: int, page_size: int) -> None:
    t0 = time.perf_counter()
    catalogue = generate_catalogue(products, seed=1)
    print(
        f"generated {len(catalogue.products):,} products in {len(catalogue.works):,} works "
        f"in {time.perf_counter() - t0:.1f}s; server page size {page_size}"
    )
    with SandboxThread(catalogue, SandboxSettings(page_size=page_size)) as sandbox:
        async with ConsonanceClient(sandbox.url, sandbox.token, timeout=120) as api:
            detector = ChangeDetector(api, DictSnapshots())
            _, full_req, full_s = await measure("baseline (full read)", detector, api)
            _, none_req, none_s = await measure("incremental, no changes", detector, api)
            ids = catalogue.work_ids[:: max(1, len(catalogue.work_ids) // changes)][:changes]
            with httpx.Client(base_url=f"{sandbox.url}/_sandbox") as control:
                for i, work_id in enumerate(ids):
                    work = catalogue.works[work_id]
                    if i % 3 == 0:
                        control.post(f"/works/{work_id}/stage", json={"stage": "Send to printer"})
                    elif i % 3 == 1:
                        todo = next((t for t in work.todos if not t.completed), work.todos[0])
                        control.post(f"/todos/{todo.id}/complete", json={"completed": True})
                    else:
                        price = work.products[0].prices[0]
                        control.patch(
                            f"/products/{work.products[0].id}",
                            json={
                                "price": {
                                    "currency": price.currency,
                                    "price_type": price.price_type,
                                    "qualifier": price.qualifier,
                                    "amount": str(price.amount + Decimal("1")),
                                }
                            },
                        )
            report, ten_req, ten_s = await measure(f"incremental, {changes} changes", detector, api)
            _, rec_req, rec_s = await measure("full reconcile", detector, api, run="reconcile")
    print()
    print(f"events after {changes} changes: {len(report.events)}")
    print(
        f"no changes : {none_req} requests, {none_s:.2f}s "
        f"= {none_s / full_s:.4f} x the full read ({full_req} requests, {full_s:.1f}s)"
    )
    print(
        f"{changes} changes: {ten_req} requests, {ten_s:.2f}s "
        f"= {ten_s / full_s:.4f} x the full read; reconcile {rec_req} requests, {rec_s:.1f}s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--page-size", type=int, default=250)
    args = parser.parse_args()
    asyncio.run(main(args.products, args.changes, args.page_size))
