"""Run a few calls on threads at the same moment, for the tests of concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


def all_at_once(
    work: Callable[..., object], calls: Iterable[tuple[object, ...]], timeout: float = 60
) -> list[BaseException]:
    """``work(*args)`` for each ``args`` of ``calls``, each on its own thread, all let go at once
    (a barrier, so that they really overlap); waits up to ``timeout`` s for each thread and
    returns what they raised."""
    arg_lists = list(calls)
    barrier = threading.Barrier(len(arg_lists))
    errors: list[BaseException] = []

    def run(*args: object) -> None:
        try:
            barrier.wait()
            work(*args)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=args) for args in arg_lists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return errors
