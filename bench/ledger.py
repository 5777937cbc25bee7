"""Ledger-write micro-benchmark: what one delivery costs the store, on SQLite and PostgreSQL.

Each delivery is what the engine's ``StoreLedger`` does for one file: ``record_delivery``
(planned), ``update_delivery`` (sent) and ``append_audit`` (``delivery.sent``). Since the ledger
is covered by the audit trail, the first two also append their covering event in their own
transaction; this measures what that costs. ``--writers`` stores write at once, each from its
own thread (own chain), as concurrent workers would.

    .venv/bin/python bench/ledger.py [--deliveries 500] [--writers 1] [--skip-pg]

To compare with an earlier version of the store, run it with that version's ``src`` first on
``PYTHONPATH``, e.g. ``git archive <commit> src | tar -x -C /tmp/before`` then
``PYTHONPATH=/tmp/before/src .venv/bin/python bench/ledger.py``. The last line is one JSON
object: milliseconds per delivery per backend, and ``audit verify`` seconds afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consonance_sftp.adapters.store import open_store  # noqa: E402
from consonance_sftp.models import DeliveryOutcome  # noqa: E402
from consonance_sftp.ports.delivery import DeliveryRecord  # noqa: E402


def deliver(url: str, base: int, count: int) -> None:
    with open_store(url) as store:
        for n in range(base, base + count):
            row = store.record_delivery(
                DeliveryRecord(
                    flow="print",
                    partner=f"partner{n % 20}",
                    remote_path=f"/in/{n}/interior.pdf",
                    sha256=f"{n:064x}",
                    size=1_000_000 + n,
                    outcome=DeliveryOutcome.PLANNED,
                    workflow_id=f"wf-{n}",
                    trigger="schedule",
                )
            )
            assert row.id is not None
            store.update_delivery(row.id, outcome=DeliveryOutcome.SENT, attempts=1)
            store.append_audit("engine", "delivery.sent", f"partner:/in/{n}", {"n": n})


def run(url: str, deliveries: int, writers: int) -> dict[str, float]:
    open_store(url).close()  # migrate outside the clock
    per = deliveries // writers
    threads = [threading.Thread(target=deliver, args=(url, i * per, per)) for i in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    with open_store(url) as store:
        started = time.perf_counter()
        report = store.verify_audit()
        verify = time.perf_counter() - started
    assert report.ok, report.problems
    return {"ms_per_delivery": 1000 * elapsed / (per * writers), "verify_s": verify}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = run(f"sqlite:///{tmp}/bench.db", args.deliveries, args.writers)
        print("sqlite", out["sqlite"], flush=True)
    if not args.skip_pg:
        from tests.fixtures.postgres import _start, _stop, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            print("no PostgreSQL binaries: skipping it", flush=True)
        else:
            cluster = _start(bin_dir)
            try:
                out["postgresql"] = run(cluster.create_database(), args.deliveries, args.writers)
                print("postgresql", out["postgresql"], flush=True)
            finally:
                _stop(cluster)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
