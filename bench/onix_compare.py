"""``onix compare`` on a generated file against itself: seconds, products/s, peak RSS.

    .venv/bin/python bench/onix_compare.py               # 5,000 products
    .venv/bin/python bench/onix_compare.py --size 1000   # quick look

The file is written with ``OnixWriter`` from ``synthetic_works`` (not timed); then
``compare_files`` reads it twice and compares every product facet by facet. The last line is
one JSON object: products, megabytes, seconds, products_per_s, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from consonance_sftp.formats.onix import MessageHeader, OnixWriter
from consonance_sftp.formats.onix.compare import compare_files
from consonance_sftp.formats.onix.synthetic import synthetic_works


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000)
    size = parser.parse_args().size
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feed.xml"
        header = MessageHeader(sender_name="Bench", sent_at=datetime.now(UTC))
        with path.open("wb") as sink, OnixWriter(sink, header) as writer:
            for work in synthetic_works(size):
                for product in work.products:
                    writer.write(work, product)
        started = time.perf_counter()
        comparison = compare_files(path, path)
        seconds = time.perf_counter() - started
        assert comparison.ok and len(comparison.products) == size
        print(
            json.dumps(
                {
                    "products": size,
                    "megabytes": round(path.stat().st_size / 1e6, 1),
                    "seconds": round(seconds, 2),
                    "products_per_s": round(size / seconds),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            )
        )


if __name__ == "__main__":
    main()
