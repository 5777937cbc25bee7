"""Engine benchmark (issue 5): small deliveries through the durable engine vs a plain loop.

N small deliveries (default 1,000) across P partners (default 20, cap 2 each) are delivered

* by the engine on SQLite (one ``serve``-like worker process),
* by the engine on PostgreSQL with 1 and with 3 worker processes,
* by a plain ``for`` loop over the same transport and ledger, in this process,

all in the same run. The transport is the engine tests' ``FolderTransport`` (tests/engine_worker.py:
copy through a ``.part`` file, then rename) and the ledger their SQLite ledger, so what differs
is the engine alone: DBOS checkpoints, queues, dequeuing, the lease. Work is enqueued through the
DBOS client before the workers start; the clock runs from the first worker's "ready" to the last
rename (from the transport's own event log).

    .venv/bin/python bench/engine.py [--deliveries 1000] [--partners 20] [--skip-pg]
        [--repeat 1] [--queue-polling-interval S] [--worker-concurrency N]

The overhead per delivery is (engine time - plain-loop time) / deliveries, as the issue defines
it (the engine runs partners in parallel, the loop does not). ``--repeat`` runs the SQLite engine
(and the plain loop) that many times and reports the median. Each engine run also prints the CPU
time its worker processes used per delivery, a figure other load on the machine moves less than
wall time. The engine settings are ``EngineSettings``'s defaults unless overridden. The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.engine_worker import (  # noqa: E402
    EventLog,
    FolderTransport,
    SqliteLedger,
    Worker,
    read_events,
    sha256_file,
)

from consonance_sftp.engine import (  # noqa: E402
    EngineClient,
    EngineSettings,
)
from consonance_sftp.models import DeliveryOutcome  # noqa: E402
from consonance_sftp.ports.delivery import DeliveryRecord, DeliveryRequest, FileToSend  # noqa: E402

APP_VERSION = "test-1"  # what tests/engine_worker.py runs under
CAP = 2
SIZE = 2048


class _NoFence:
    def check(self) -> None:
        return None


def make_requests(src: Path, n: int, partners: int) -> list[DeliveryRequest]:
    src.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = src / f"f{i:05d}.bin"
        path.write_bytes(i.to_bytes(4, "big") * (SIZE // 4))
        f = FileToSend(
            source=str(path), remote_path=f"/in/{path.name}", sha256=sha256_file(path), size=SIZE
        )
        out.append(
            DeliveryRequest(
                flow="bench", partner=f"p{i % partners:02d}", package=f"pkg {i}", files=(f,)
            )
        )
    return out


async def plain_loop(work: Path, requests: list[DeliveryRequest]) -> float:
    """The same transfers and ledger writes, one after the other, no engine."""
    work.mkdir(parents=True, exist_ok=True)
    events = EventLog(str(work / "plain-events.jsonl"), "plain")
    transport = FolderTransport({"dest": str(work / "plain-dest")}, events)
    ledger = SqliteLedger(str(work / "plain-ledger.db"))
    fence = _NoFence()
    t0 = time.perf_counter()
    for req in requests:
        for f in req.files:
            state = await transport.remote_state(req.partner, f)
            if state.final_matches:
                continue
            await transport.stage(req.partner, f, fence)
            await transport.publish(req.partner, f, fence)
            await asyncio.to_thread(
                ledger.record,
                DeliveryRecord(
                    workflow_id="plain",
                    flow=req.flow,
                    partner=req.partner,
                    remote_path=f.remote_path,
                    sha256=f.sha256,
                    size=f.size,
                    generation=0,
                    outcome=DeliveryOutcome.SENT,
                ),
            )
    return time.perf_counter() - t0


DEFAULTS = EngineSettings(
    system_database_url="sqlite:///unused", application_version=APP_VERSION, executor_id="defaults"
)
TUNING: dict[str, Any] = {
    "queue_polling_interval_s": DEFAULTS.queue_polling_interval_s,
    "worker_concurrency": DEFAULTS.worker_concurrency,
}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_cfg(db_url: str, executor_id: str, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    return {
        "db": db_url,
        "executor_id": executor_id,
        "events": str(run_dir / "events.jsonl"),
        "ledger": str(run_dir / "ledger.db"),
        "dest": str(run_dir / "dest"),
        "caps": [CAP],
        "heartbeat_s": 2.0,
        "takeover_after_s": 30.0,
        **TUNING,
    }


def engine_run(
    work: Path, db_url: str, requests: list[DeliveryRequest], workers: int, label: str
) -> tuple[float, float]:
    """Enqueue every request through the DBOS client, start the workers, time them; return
    (seconds, CPU seconds the workers used while delivering)."""
    run_dir = work / label
    run_dir.mkdir()
    # The DBOS client does not create DBOS's schema: one short start of a worker does.
    first = Worker(_worker_cfg(db_url, f"{label}-0", run_dir / "warmup"), run_dir)
    try:
        first.wait_ready(120)
        first.terminate(30)
    finally:
        first.close()
    client = EngineClient(
        EngineSettings(
            system_database_url=db_url, application_version=APP_VERSION, executor_id="bench"
        )
    )
    try:
        for req in requests:
            client.enqueue_delivery(req, max_connections=CAP)
    finally:
        client.close()
    events = run_dir / "events.jsonl"
    procs = []
    try:
        for w in range(workers):
            procs.append(Worker(_worker_cfg(db_url, f"{label}-{w}", run_dir), run_dir))
        for p in procs:
            p.wait_ready(120)
        cpu0 = sum(_cpu_seconds(p.proc.pid) for p in procs)
        deadline = time.monotonic() + 900
        while True:
            renames = [e for e in read_events(events) if e["ev"] == "rename"]
            if len(renames) >= len(requests):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {len(renames)}/{len(requests)} after 900 s")
            time.sleep(0.5)
        cpu = sum(_cpu_seconds(p.proc.pid) for p in procs) - cpu0
        all_events = read_events(events)
        start = min(e["t"] for e in all_events if e["ev"] == "ready")
        end = max(e["t"] for e in all_events if e["ev"] == "rename")
        paths = {(e["partner"], e["path"]) for e in all_events if e["ev"] == "rename"}
        if len(paths) != len(requests) or len(renames) != len(requests):
            raise AssertionError(f"{label}: {len(renames)} renames of {len(paths)} files")
        return float(end - start), cpu
    finally:
        for p in procs:
            try:
                p.terminate(30)
            finally:
                p.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument("--skip-pg", action="store_true", help="SQLite and the plain loop only.")
    parser.add_argument(
        "--repeat", type=int, default=1, help="SQLite engine runs (and plain loops); the median"
    )
    parser.add_argument(
        "--queue-polling-interval",
        type=float,
        default=DEFAULTS.queue_polling_interval_s,
        help="EngineSettings.queue_polling_interval_s (default: its default)",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=DEFAULTS.worker_concurrency,
        help="EngineSettings.worker_concurrency (default: its default)",
    )
    args = parser.parse_args()
    TUNING["queue_polling_interval_s"] = args.queue_polling_interval
    TUNING["worker_concurrency"] = args.worker_concurrency
    n = args.deliveries
    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    load = os.getloadavg()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"queue polling interval {args.queue_polling_interval:g} s, "
        f"worker concurrency {args.worker_concurrency}"
    )
    results: dict[str, float | None] = {}
    try:
        requests = make_requests(work / "src", n, args.partners)
        plains: list[float] = []
        sqlites: list[float] = []
        for rep in range(args.repeat):
            plain = asyncio.run(plain_loop(work / f"plain{rep}", requests))
            plains.append(plain)
            print(f"plain loop:          {n} deliveries in {plain:6.2f} s = {n / plain:7.1f} /s")
            secs, cpu = engine_run(
                work, f"sqlite:///{work}/dbos{rep}.sqlite", requests, 1, f"sqlite{rep}"
            )
            sqlites.append(secs)
            print(
                f"engine, SQLite:      {n} deliveries in {secs:6.2f} s = {n / secs:7.1f} /s "
                f"(worker CPU {cpu / n * 1000:.1f} ms per delivery; overhead "
                f"{(secs - plain) / n * 1000:.2f} ms)"
            )
        plain = statistics.median(plains)
        sqlite_s = statistics.median(sqlites)
        results["deliveries_per_s_sqlite"] = round(n / sqlite_s, 1)

        pg: dict[int, float] = {}
        if not args.skip_pg:
            from tests.fixtures.postgres import _start, _stop, find_pg_bin

            bin_dir = find_pg_bin()
            if bin_dir is None:
                raise SystemExit("PostgreSQL binaries not found (make system-deps); or --skip-pg")
            cluster = _start(bin_dir)
            try:
                for workers in (1, 3):
                    url = cluster.create_database(f"bench_pg_{workers}")
                    secs, cpu = engine_run(work, url, requests, workers, f"pg{workers}")
                    pg[workers] = secs
                    print(
                        f"engine, PostgreSQL x{workers}: {n} deliveries in {secs:6.2f} s = "
                        f"{n / secs:7.1f} /s (workers' CPU {cpu / n * 1000:.1f} ms per delivery)"
                    )
            finally:
                _stop(cluster)
        results["deliveries_per_s_pg_1"] = round(n / pg[1], 1) if 1 in pg else None
        results["deliveries_per_s_pg_3"] = round(n / pg[3], 1) if 3 in pg else None
        overhead = (sqlite_s - plain) / n * 1000
        results["overhead_ms_per_delivery"] = round(overhead, 2)
        median = " (medians)" if args.repeat > 1 else ""
        print(
            f"engine overhead (SQLite - plain) / deliveries{median}: {overhead:.2f} ms "
            f"(PostgreSQL x1: {((pg[1] - plain) / n * 1000) if 1 in pg else float('nan'):.2f} ms)"
        )
        load = os.getloadavg()
        print(f"load average after:  {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
