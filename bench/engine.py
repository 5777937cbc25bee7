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
        [--repeat 1] [--queue-polling-interval S] [--worker-concurrency N] [--against REV]

The overhead per delivery is (engine time - plain-loop time) / deliveries, as the issue defines
it (the engine runs partners in parallel, the loop does not). ``--repeat`` runs the SQLite engine
(and the plain loop) that many times and reports the median. Each engine run also prints the CPU
time its worker processes used per delivery, a figure other load on the machine moves less than
wall time. The engine settings are ``EngineSettings``'s defaults unless overridden. The last line
is one JSON object.

``--against REV`` measures the git revision REV and the working tree in the same run: REV's
``src/`` is exported (``git archive``) into a temporary folder, removed at the end (Ctrl-C
included), and this same driver runs one measurement per tree in its own process with
``PYTHONPATH=<tree>/src``, interleaved (REV, HEAD, REV, HEAD ... for ``--repeat`` rounds) so
machine noise hits both alike; both use this virtualenv's packages (REV's declared dependencies
must be satisfied here). It prints a table (per metric each side's median, ratio HEAD/REV) and
whether HEAD is no slower: within 5 %, or within the spread of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Whose tests/engine_worker.py (test transport, ledger, worker process) runs: this tree's, or
# under --against a previous commit's own when its engine wants an older transport contract.
WORKER_ROOT = Path(os.environ.get("BENCH_ENGINE_WORKER_ROOT") or ROOT).resolve()
sys.path.insert(0, str(ROOT))
if WORKER_ROOT != ROOT:
    sys.path.insert(0, str(WORKER_ROOT))

from bench import against  # noqa: E402

try:
    from tests.engine_worker import (
        EventLog,
        FolderTransport,
        SqliteLedger,
        Worker,
        read_events,
        sha256_file,
    )

    from consonance_sftp.engine import EngineClient, EngineSettings
    from consonance_sftp.models import DeliveryOutcome

    try:
        from consonance_sftp.ports.delivery import DeliveryRecord, DeliveryRequest, FileToSend
    except ImportError:  # a previous commit (--against): the engine held these
        from consonance_sftp.engine import (  # type: ignore[attr-defined,no-redef]
            DeliveryRecord,
            DeliveryRequest,
            FileToSend,
        )
except ImportError as _exc:
    # Under --against, a previous commit's package may lack a name the benchmark (or the test
    # worker it runs) uses: say which, in one line, instead of a traceback.
    raise SystemExit(
        f"bench/engine.py: the consonance_sftp on this path lacks what the benchmark needs: {_exc}"
    ) from None

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


def _sent(req: DeliveryRequest, f: FileToSend) -> DeliveryRecord:
    """The ledger's record of one file sent, in this package's shape (a previous commit's
    engine record has a ``key``; the ledger row has its parts)."""
    names = {field.name for field in dataclasses.fields(DeliveryRecord)}
    where: dict[str, Any] = (
        {"key": f.key(req.partner)}
        if "key" in names
        else {"partner": req.partner, "remote_path": f.remote_path, "sha256": f.sha256}
    )
    return DeliveryRecord(
        workflow_id="plain",
        flow=req.flow,
        size=f.size,
        generation=0,
        outcome=DeliveryOutcome.SENT,
        **where,
    )


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
            if hasattr(transport, "stage"):
                await transport.stage(req.partner, f, fence)
                await transport.publish(req.partner, f, fence)
            else:  # a previous commit's test transport (--against): upload, verify, commit
                await transport.upload(req.partner, f, fence)
                await transport.verify(req.partner, f)
                await transport.commit(req.partner, f, fence)
            await asyncio.to_thread(
                ledger.record,
                _sent(req, f),
            )
    return time.perf_counter() - t0


try:
    DEFAULTS = EngineSettings(
        system_database_url="sqlite:///unused",
        application_version=APP_VERSION,
        executor_id="defaults",
    )
except (TypeError, ValueError) as _exc:  # a previous commit's settings may differ
    raise SystemExit(f"bench/engine.py: EngineSettings as the bench builds it: {_exc}") from None
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
            so_far = read_events(events)
            renames = [e for e in so_far if e["ev"] == "rename"]
            if len(renames) >= len(requests):
                break
            alerts = [e for e in so_far if e["ev"] == "alert"]
            if alerts:  # a delivery failed for good: the run cannot finish
                raise RuntimeError(f"{label}: {alerts[0].get('message')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {len(renames)}/{len(requests)} after 900 s")
            for p in procs:  # a dead worker would leave the rest waiting out the deadline
                if p.proc.poll() is not None:
                    code = p.proc.returncode
                    raise RuntimeError(f"{label}: worker exited {code}: {p.log_tail()}")
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


def check_contracts() -> None:
    """Stop with one line if this package's engine would call something the benchmark's test
    transport or ledger (tests/engine_worker.py) does not have: under ``--against`` the engine
    may be a previous commit's, and a missing method would fail every delivery, not the run."""
    import importlib
    import importlib.util
    import pkgutil

    import consonance_sftp

    # Earlier commits kept the engine's contracts in engine/contracts.py; now they are ports.
    modules = ["consonance_sftp.engine"]
    if importlib.util.find_spec("consonance_sftp.engine.contracts") is not None:
        modules.append("consonance_sftp.engine.contracts")
    ports = importlib.import_module("consonance_sftp.ports")
    modules += [f"consonance_sftp.ports.{m.name}" for m in pkgutil.iter_modules(ports.__path__)]
    where = Path(consonance_sftp.__file__).parent
    for name, impl in (("DeliveryTransport", FolderTransport), ("DeliveryLedger", SqliteLedger)):
        proto = None
        for module in modules:
            proto = getattr(importlib.import_module(module), name, None)
            if proto is not None:
                break
        if proto is None:
            raise SystemExit(
                f"bench/engine.py: {where} has no {name} protocol (looked in {', '.join(modules)})"
            )
        needed = [n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")]
        missing = [n for n in needed if not callable(getattr(impl, n, None))]
        if missing:
            raise SystemExit(
                f"bench/engine.py: {where}'s {name} needs {', '.join(missing)}, which the "
                f"benchmark's {impl.__name__} (tests/engine_worker.py) does not have"
            )


def measure(args: argparse.Namespace) -> None:
    """One measurement of the consonance_sftp on this path; the last line is its JSON."""
    import consonance_sftp

    package = Path(consonance_sftp.__file__).resolve().parent
    print(f"consonance_sftp from {package}")
    if args.tree_src is not None and not package.is_relative_to(Path(args.tree_src).resolve()):
        raise SystemExit(f"bench/engine.py: expected consonance_sftp from {args.tree_src}")
    check_contracts()
    if args.probe:
        return
    print(f"test worker from {Path(sys.modules[Worker.__module__].__file__ or '?').resolve()}")
    TUNING["queue_polling_interval_s"] = args.queue_polling_interval
    TUNING["worker_concurrency"] = args.worker_concurrency
    n = args.deliveries
    work = _scratch("bench-engine-")
    results: dict[str, float | None] = {}
    try:
        work.mkdir(mode=0o700)
        load = os.getloadavg()
        print(
            f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            f"on {os.cpu_count()} CPUs"
        )
        print(
            f"queue polling interval {args.queue_polling_interval:g} s, "
            f"worker concurrency {args.worker_concurrency}"
        )
        requests = make_requests(work / "src", n, args.partners)
        plains: list[float] = []
        sqlites: list[float] = []
        cpus: list[float] = []
        for rep in range(args.repeat):
            plain = asyncio.run(plain_loop(work / f"plain{rep}", requests))
            plains.append(plain)
            print(f"plain loop:          {n} deliveries in {plain:6.2f} s = {n / plain:7.1f} /s")
            secs, cpu = engine_run(
                work, f"sqlite:///{work}/dbos{rep}.sqlite", requests, 1, f"sqlite{rep}"
            )
            sqlites.append(secs)
            cpus.append(cpu)
            print(
                f"engine, SQLite:      {n} deliveries in {secs:6.2f} s = {n / secs:7.1f} /s "
                f"(worker CPU {cpu / n * 1000:.1f} ms per delivery; overhead "
                f"{(secs - plain) / n * 1000:.2f} ms)"
            )
        plain = statistics.median(plains)
        sqlite_s = statistics.median(sqlites)
        results["deliveries_per_s_sqlite"] = round(n / sqlite_s, 1)

        pg: dict[int, tuple[float, float]] = {}
        if not args.skip_pg:
            pg = _pg_runs(args, work, requests)
        for workers in (1, 3):
            results[f"deliveries_per_s_pg_{workers}"] = (
                round(n / pg[workers][0], 1) if workers in pg else None
            )
        overhead = (sqlite_s - plain) / n * 1000
        results["overhead_ms_per_delivery"] = round(overhead, 2)
        results["plain_loop_per_s"] = round(n / plain, 1)
        results["worker_cpu_ms_per_delivery_sqlite"] = round(statistics.median(cpus) / n * 1000, 2)
        for workers in (1, 3):
            results[f"worker_cpu_ms_per_delivery_pg_{workers}"] = (
                round(pg[workers][1] / n * 1000, 2) if workers in pg else None
            )
        median = " (medians)" if args.repeat > 1 else ""
        pg1 = ((pg[1][0] - plain) / n * 1000) if 1 in pg else float("nan")
        print(
            f"engine overhead (SQLite - plain) / deliveries{median}: {overhead:.2f} ms "
            f"(PostgreSQL x1: {pg1:.2f} ms)"
        )
        load = os.getloadavg()
        print(f"load average after:  {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


def _pg_runs(
    args: argparse.Namespace, work: Path, requests: list[DeliveryRequest]
) -> dict[int, tuple[float, float]]:
    """PostgreSQL with 1 and 3 workers: (seconds, workers' CPU seconds) for each. Under
    ``--against`` the parent's cluster gives the databases (``--pg-urls``)."""
    n = len(requests)
    out: dict[int, tuple[float, float]] = {}

    def run(workers: int, url: str) -> None:
        secs, cpu = engine_run(work, url, requests, workers, f"pg{workers}")
        out[workers] = (secs, cpu)
        print(
            f"engine, PostgreSQL x{workers}: {n} deliveries in {secs:6.2f} s = "
            f"{n / secs:7.1f} /s (workers' CPU {cpu / n * 1000:.1f} ms per delivery)"
        )

    if args.pg_urls:
        for workers, url in zip((1, 3), args.pg_urls.split(","), strict=True):
            run(workers, url)
        return out
    from tests.fixtures.postgres import _start, _stop, find_pg_bin

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found (make system-deps); or --skip-pg")
    cluster = _start(bin_dir)
    try:
        for workers in (1, 3):
            run(workers, cluster.create_database(f"bench_pg_{workers}"))
    finally:
        _stop(cluster)
    return out


# --- --against REV: the same measurement on a previous commit, in the same run ----------------

METRICS = [
    against.Metric("deliveries_per_s_sqlite", "deliveries/s, engine on SQLite", True),
    against.Metric("worker_cpu_ms_per_delivery_sqlite", "worker CPU ms/delivery, SQLite", False),
    against.Metric("overhead_ms_per_delivery", "overhead ms/delivery (SQLite - plain)", False),
    against.Metric("deliveries_per_s_pg_1", "deliveries/s, engine on PostgreSQL x1", True),
    against.Metric("deliveries_per_s_pg_3", "deliveries/s, engine on PostgreSQL x3", True),
    against.Metric("worker_cpu_ms_per_delivery_pg_1", "worker CPU ms/delivery, PG x1", False),
    against.Metric("worker_cpu_ms_per_delivery_pg_3", "workers' CPU ms/delivery, PG x3", False),
    against.Metric("plain_loop_per_s", "plain loop deliveries/s (no engine)", True, judged=False),
]


def _child_argv(args: argparse.Namespace, src: Path, pg_urls: str | None) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--tree-src", str(src)]
    argv += ["--deliveries", str(args.deliveries), "--partners", str(args.partners)]
    # Tuning only when given: otherwise each tree runs with its own EngineSettings defaults.
    if args.queue_polling_interval_given is not None:
        argv += ["--queue-polling-interval", str(args.queue_polling_interval_given)]
    if args.worker_concurrency_given is not None:
        argv += ["--worker-concurrency", str(args.worker_concurrency_given)]
    argv += ["--pg-urls", pg_urls] if pg_urls else ["--skip-pg"]
    return argv


def _child_env(src: Path, worker_root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src), "BENCH_ENGINE_WORKER_ROOT": str(worker_root)}


def _probe(src: Path, worker_root: Path) -> str | None:
    """None if this driver and ``worker_root``'s test worker can run on the package under
    ``src``; otherwise the one line saying what is missing."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--probe", "--tree-src", str(src)]
    run = subprocess.run(argv, env=_child_env(src, worker_root), capture_output=True, text=True)
    if run.returncode == 0:
        return None
    lines = run.stderr.strip().splitlines()
    return lines[-1] if lines else f"exited {run.returncode}"


def _run_child(
    argv: list[str],
    env: dict[str, str],
    tag: str,
    log: Path,
    running: list[subprocess.Popen[str]],
) -> dict[str, float | None]:
    """One measurement in its own process, on the package its ``PYTHONPATH`` names; echo its
    lines."""
    with log.open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        running.append(proc)
        assert proc.stdout is not None
        last = ""
        for line in proc.stdout:
            last = line.strip()
            if not last.startswith("{"):
                print(f"  [{tag}] {last}", flush=True)
        rc = proc.wait()
        running.remove(proc)
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()
        raise against.AgainstError(f"{tag}: {tail[-1] if tail else f'exited {rc}'}")
    result: dict[str, float | None] = json.loads(last)
    return result


def _stop_children(running: list[subprocess.Popen[str]]) -> None:
    """Let a measurement that is still running clean up its workers and folder (it gets the
    terminal's Ctrl-C too; a signal to this process alone is passed on), then end it."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _scratch(prefix: str) -> Path:
    """A new folder's name under the temporary directory, not yet made: the caller makes it
    inside the ``try`` whose ``finally`` removes it, so a Ctrl-C that lands just after it is
    made (as one with ``mkdtemp`` before the ``try`` could) cannot leave it behind."""
    return Path(tempfile.gettempdir()) / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"


def against_main(args: argparse.Namespace) -> None:
    commit = against.resolve(ROOT, args.against)
    title = f"REV {commit[:10]}" + ("" if commit.startswith(args.against) else f" ({args.against})")
    tmp = _scratch("bench-engine-against-")
    running: list[subprocess.Popen[str]] = []
    cluster = None
    rev_runs: list[dict[str, float | None]] = []
    head_runs: list[dict[str, float | None]] = []
    try:
        tmp.mkdir(mode=0o700)
        worker_files = ("tests/__init__.py", "tests/engine_worker.py")
        rev_src = against.export(ROOT, commit, tmp / "tree", worker_files)
        print(f"{title} exported to {tmp / 'tree'}", flush=True)
        unmet = against.unmet_requirements(against.dependencies(tmp / "tree" / "pyproject.toml"))
        if unmet:
            raise against.AgainstError(
                f"{commit[:10]} depends on what this virtualenv does not have, so the two cannot "
                f"run on the same packages: {'; '.join(unmet)}"
            )
        ours = against.dependencies(ROOT / "pyproject.toml")
        theirs = against.dependencies(tmp / "tree" / "pyproject.toml")
        if ours != theirs:
            print(
                f"note: dependencies differ ({sorted(set(theirs) ^ set(ours))}); "
                "this virtualenv satisfies both"
            )
        rev_worker = ROOT
        problem = _probe(rev_src, ROOT)
        if problem is not None:
            # REV's engine may want an older transport contract than this tree's test worker
            # has: then REV's own test worker (the same folder transport, as it was) serves it.
            own = tmp / "tree"
            if not (own / "tests" / "engine_worker.py").exists() or _probe(rev_src, own):
                raise against.AgainstError(f"{commit[:10]} cannot be measured: {problem}")
            rev_worker = own
            print(f"note: {problem}; REV runs with its own tests/engine_worker.py", flush=True)
        if not args.skip_pg:
            from tests.fixtures.postgres import _start, find_pg_bin

            bin_dir = find_pg_bin()
            if bin_dir is None:
                raise against.AgainstError("PostgreSQL binaries not found (make system-deps)")
            cluster = _start(bin_dir)
        trees = [
            ("REV", rev_src, rev_worker, rev_runs),
            ("HEAD", ROOT / "src", ROOT, head_runs),
        ]
        for rnd in range(args.repeat):  # interleaved, so machine noise hits both alike
            for tag, src, worker_root, runs in trees:
                pg_urls = None
                if cluster is not None:
                    pg_urls = ",".join(
                        cluster.create_database(f"bench_{tag.lower()}_{rnd}_{w}") for w in (1, 3)
                    )
                print(f"round {rnd + 1}/{args.repeat}, {tag}:", flush=True)
                argv = _child_argv(args, src, pg_urls)
                env = _child_env(src, worker_root)
                runs.append(_run_child(argv, env, f"{tag} {rnd + 1}", tmp / "child.log", running))
    finally:
        _stop_children(running)
        if cluster is not None:
            from tests.fixtures.postgres import _stop

            _stop(cluster)
        shutil.rmtree(tmp, ignore_errors=True)
    rows = against.compare(METRICS, rev_runs, head_runs)
    print()
    print(f"{args.deliveries} deliveries, {args.partners} partners, {args.repeat} round(s)")
    for line in against.render(rows, title, "HEAD (working tree)"):
        print(line)
    print(
        json.dumps(
            {
                "against": commit,
                "rev": {r.metric.key: round(r.rev_median, 4) for r in rows},
                "head": {r.metric.key: round(r.head_median, 4) for r in rows},
                "ratio": {r.metric.key: round(r.ratio, 4) for r in rows},
                "no_slower": all(r.no_slower for r in rows if r.metric.judged),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument("--skip-pg", action="store_true", help="SQLite and the plain loop only.")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="SQLite engine runs (and plain loops), the median; with --against: rounds",
    )
    parser.add_argument(
        "--queue-polling-interval",
        type=float,
        default=None,
        help="EngineSettings.queue_polling_interval_s (default: its default)",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="EngineSettings.worker_concurrency (default: its default)",
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        default=None,
        help="also measure git revision REV, interleaved in the same run, and print both",
    )
    # Internal, for the measurements --against starts:
    parser.add_argument("--tree-src", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pg-urls", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.queue_polling_interval_given = args.queue_polling_interval
    args.worker_concurrency_given = args.worker_concurrency
    if args.queue_polling_interval is None:
        args.queue_polling_interval = DEFAULTS.queue_polling_interval_s
    if args.worker_concurrency is None:
        args.worker_concurrency = DEFAULTS.worker_concurrency
    if args.against is None:
        measure(args)
        return
    # A SIGTERM cleans up like Ctrl-C: the finally blocks remove the exported tree.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        against_main(args)
    except against.AgainstError as exc:
        raise SystemExit(f"bench/engine.py --against: {exc}") from None
    except KeyboardInterrupt:
        print("bench/engine.py --against: interrupted (temporary tree removed)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
