"""Full ONIX feeds of generated products: generation and validation time, products/s, peak RSS.

Each size runs in a fresh process (so its peak RSS is its own): a synthetic catalogue is
streamed through ``write_feed`` (filter, serialise, hash, write to a file) while a second
process validates the same bytes against the unmodified EDItEUR XSD bundled with onixcheck.
The peer, measured in the same run, is onixcheck itself validating the 10,000-product file
(it loads the whole document).

    .venv/bin/python bench/onix.py                    # 10,000 and 100,000 products
    .venv/bin/python bench/onix.py --sizes 2000       # quick look
    .venv/bin/python bench/onix.py --no-peer
    .venv/bin/python bench/onix.py --lean             # typical ~2.5 KB records

Each size also prints CPU-ms per product, writer (its CPU in ``write_feed`` less generating
the catalogue) and validator (its whole process), which load disturbs far less than wall time,
and the load average when the size finished.

The last line is one JSON object: products_per_s_100k, seconds_100k, peak_rss_mb (the sum of
both processes' peaks, 100k run), writer_cpu_ms_per_product_100k,
validator_cpu_ms_per_product_100k, and the same for 10k, plus the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def one(size: int, path: Path, lean: bool) -> dict[str, float]:
    """Generate and validate one full feed of ``size`` products (runs in its own process)."""
    from consonance_sftp.formats.onix import MessageHeader, RecipientRules, write_feed
    from consonance_sftp.formats.onix.synthetic import synthetic_works

    header = MessageHeader(sender_name="Bench Books", sent_at=datetime(2026, 3, 1, tzinfo=UTC))
    # What making the catalogue alone costs (in production works come from Consonance instead):
    # measured first, then subtracted from the writer's CPU to show the feed's own cost.
    cpu = time.process_time()
    generated = sum(len(w.products) for w in synthetic_works(size, lean=lean))
    generation_cpu = time.process_time() - cpu
    assert generated == size
    started = time.perf_counter()
    feed_cpu = time.process_time()
    with path.open("wb") as sink:
        result = write_feed(
            synthetic_works(size, lean=lean),
            sink,
            rules=RecipientRules(),
            header=header,
            kind="full",
            validate="process",
        )
    seconds = time.perf_counter() - started
    feed_cpu = time.process_time() - feed_cpu
    if not result.report.ok:
        raise SystemExit(f"feed invalid: {result.report.problems[:3]}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    writer_rss = usage.ru_maxrss / 1024
    return {
        "products": result.report.products,
        "seconds": round(seconds, 2),
        "products_per_s": round(size / seconds),
        "bytes": result.bytes,
        "bytes_per_product": round(result.bytes / size),
        "writer_cpu_s": round(usage.ru_utime + usage.ru_stime - generation_cpu, 2),
        "generation_cpu_s": round(generation_cpu, 2),
        "validator_cpu_s": result.report.cpu_seconds,
        # per product: the writer's CPU in write_feed less making the catalogue; the whole
        # validator process (with its start, about 0.3 s: imports and the XSD)
        "writer_cpu_ms_per_product": round((feed_cpu - generation_cpu) / size * 1000, 4),
        "validator_cpu_ms_per_product": round(result.report.cpu_seconds / size * 1000, 4),
        "writer_rss_mb": round(writer_rss, 1),
        "validator_rss_mb": result.report.peak_rss_mb,
        "peak_rss_mb": round(writer_rss + result.report.peak_rss_mb, 1),
    }


def peer(path: Path) -> dict[str, float]:
    """onixcheck validating the same file, whole document in memory (in its own process)."""
    code = (
        "import json, resource, sys, time, onixcheck\n"
        "t = time.perf_counter()\n"
        "messages = onixcheck.validate(sys.argv[1])\n"
        "s = time.perf_counter() - t\n"
        "r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "out = {'seconds': round(s, 2), 'rss_mb': round(r, 1), 'messages': len(messages)}\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--lean", action="store_true", help="typical minimal records (~2.5 KB) instead of full"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.path, args.lean)))
        return

    load_start = os.getloadavg()
    figures: dict[str, object] = {
        "profile": "lean" if args.lean else "full",
        "cpus": os.cpu_count(),
        "load_avg_start": load_start,
    }
    with tempfile.TemporaryDirectory(prefix="onix-bench-") as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"feed-{size}.xml"
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--path", str(path)]
                + (["--lean"] if args.lean else []),
                capture_output=True,
                text=True,
                check=True,
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            label = f"{size // 1000}k" if size % 1000 == 0 else str(size)
            load = os.getloadavg()
            print(
                f"{size:>7} products: {run['seconds']:>6} s (load {load[0]:.2f}), "
                f"{run['products_per_s']:>6} products/s, "
                f"{run['bytes'] / 1e6:.0f} MB ({run['bytes_per_product']} B/product), "
                f"cpu: generating {run['generation_cpu_s']} s, "
                f"writer {run['writer_cpu_s']} s (incl. generating) "
                f"+ validator {run['validator_cpu_s']} s, "
                f"peak RSS writer {run['writer_rss_mb']} MB "
                f"+ validator {run['validator_rss_mb']} MB\n"
                f"         CPU per product: writer {run['writer_cpu_ms_per_product']} ms "
                f"(catalogue generation excluded), "
                f"validator {run['validator_cpu_ms_per_product']} ms"
            )
            figures[f"products_per_s_{label}"] = run["products_per_s"]
            figures[f"seconds_{label}"] = run["seconds"]
            figures[f"peak_rss_mb_{label}"] = run["peak_rss_mb"]
            figures[f"bytes_per_product_{label}"] = run["bytes_per_product"]
            figures[f"writer_cpu_s_{label}"] = run["writer_cpu_s"]
            figures[f"validator_cpu_s_{label}"] = run["validator_cpu_s"]
            figures[f"generation_cpu_s_{label}"] = run["generation_cpu_s"]
            figures[f"writer_cpu_ms_per_product_{label}"] = run["writer_cpu_ms_per_product"]
            figures[f"validator_cpu_ms_per_product_{label}"] = run["validator_cpu_ms_per_product"]
            figures[f"load_avg_{label}"] = load
            if size == 10_000 and not args.no_peer:
                theirs = peer(path)
                print(
                    f"  peer onixcheck.validate on the same file: {theirs['seconds']} s, "
                    f"{theirs['rss_mb']} MB peak, {theirs['messages']} messages"
                )
                figures["peer_onixcheck_seconds_10k"] = theirs["seconds"]
                figures["peer_onixcheck_rss_mb_10k"] = theirs["rss_mb"]
                figures["rss_ratio_peer_over_ours_10k"] = round(
                    theirs["rss_mb"] / run["validator_rss_mb"], 1
                )
            path.unlink(missing_ok=True)
    figures["load_avg_end"] = os.getloadavg()
    largest = max(args.sizes)
    label = f"{largest // 1000}k" if largest % 1000 == 0 else str(largest)
    figures["peak_rss_mb"] = figures[f"peak_rss_mb_{label}"]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
