"""The cross-process connection budget on PostgreSQL: the cap holds across sessions, and a
killed holder gives its slots back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

from consonance_sftp.engine.budget import PostgresConnectionBudget

pytestmark = pytest.mark.postgres


async def test_cap_holds_across_sessions_and_is_used_fully(pg_url: str) -> None:
    budgets = [PostgresConnectionBudget(pg_url, poll_interval_s=0.01) for _ in range(3)]
    active = peak = 0
    done = 0

    async def connect(budget: PostgresConnectionBudget) -> None:
        nonlocal active, peak, done
        async with budget.slot("printer", 2):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
        done += 1

    await asyncio.gather(*(connect(budgets[i % 3]) for i in range(30)))
    assert done == 30 and peak == 2
    # Another partner has its own slots.
    assert await budgets[0].acquire("other", 1, wait=False)
    assert not await budgets[1].acquire("other", 1, wait=False)
    await budgets[0].release("other")
    assert await budgets[1].acquire("other", 1, wait=False)
    for b in budgets:
        await b.close()


async def test_slots_of_a_killed_process_come_back(pg_url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import asyncio, time
                from consonance_sftp.engine.budget import PostgresConnectionBudget
                async def main():
                    b = PostgresConnectionBudget({pg_url!r})
                    await b.acquire("printer", 2)
                    await b.acquire("printer", 2)
                    print("HELD", flush=True)
                    time.sleep(60)
                asyncio.run(main())
                """
            ),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"HELD"
        budget = PostgresConnectionBudget(pg_url)
        assert not await budget.acquire("printer", 2, wait=False)  # both slots are taken
        holder.kill()
        holder.wait(10)
        start = time.monotonic()
        await asyncio.wait_for(budget.acquire("printer", 2), 10)
        assert await budget.acquire("printer", 2, wait=False)
        assert budget.in_use("printer") == 2
        assert time.monotonic() - start < 5
        await budget.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
