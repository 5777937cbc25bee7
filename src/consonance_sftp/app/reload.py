"""``serve`` follows its config file: on SIGHUP and when the file changes, validated first.

An operator changes the config while ``serve`` runs (``partner trust`` rewrites a host-key pin,
``partner probe --apply`` a partner's transfer settings, or an edit by hand). ``ConfigWatcher``
looks at the file every few seconds (its modification time and size, then a SHA-256 of its
bytes, so a rewrite with the same contents does nothing) and on SIGHUP. The new file is
validated exactly as at start-up; an invalid one is logged once as an error with its problems,
and the config in force stays. A valid one replaces the config in force (``App.reload``): each
partner's connections are opened anew with the new settings, the flows' schedules are declared
again, and the poller reconnects if ``[consonance]`` changed. ``[database]``, ``[engine]`` and
``state_dir`` cannot change under a running engine: they are kept, with a warning.

A plain ``stat`` poll needs no new dependency and works on every filesystem (inotify does not
see edits through some bind mounts and network filesystems).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from consonance_sftp.config import Settings, load_settings
from consonance_sftp.errors import ConfigError
from consonance_sftp.logs import get_logger

log = get_logger(__name__)

RESTART_ONLY = ("database", "engine", "state_dir")
"""Sections a running engine cannot switch: kept until ``serve`` restarts."""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What a valid new config changes (names of partners and flows added, removed or
    changed; other sections changed; sections kept until a restart)."""

    partners: tuple[str, ...] = ()
    flows: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.partners or self.flows or self.sections or self.kept)

    def summary(self) -> str:
        parts = []
        if self.partners:
            parts.append(f"partners {', '.join(self.partners)}")
        if self.flows:
            parts.append(f"flows {', '.join(self.flows)}")
        if self.sections:
            parts.append(f"[{'], ['.join(self.sections)}]")
        return "changed " + "; ".join(parts) if parts else "no changes"


def _changed_names(old: dict[str, object], new: dict[str, object]) -> tuple[str, ...]:
    return tuple(sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n)))


def compare(old: Settings, new: Settings) -> ConfigChange:
    """What switching from ``old`` to ``new`` changes."""
    skip = {"partners", "flows", *RESTART_ONLY}
    sections = tuple(
        sorted(
            name
            for name in type(new).model_fields
            if name not in skip and getattr(old, name) != getattr(new, name)
        )
    )
    kept = tuple(n for n in RESTART_ONLY if getattr(old, n) != getattr(new, n))
    return ConfigChange(
        partners=_changed_names(dict(old.partners), dict(new.partners)),
        flows=_changed_names(dict(old.flows), dict(new.flows)),
        sections=sections,
        kept=kept,
    )


def in_force(old: Settings, new: Settings) -> Settings:
    """``new``, except the sections a running engine keeps until it restarts."""
    return new.model_copy(update={n: getattr(old, n) for n in RESTART_ONLY})


class ConfigWatcher:
    """Reloads the config file into a running service (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        current: Callable[[], Settings],
        apply: Callable[[Settings, ConfigChange], Awaitable[None]],
        *,
        interval_s: float = 5.0,
    ) -> None:
        self.path = path
        self.current = current
        self.apply = apply
        self.interval_s = interval_s
        self._stat = self._look()
        self._digest = self._hash()  # of the file behind the config in force, or last refused

    def _look(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _hash(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    async def run(self, stop: asyncio.Event, sighup: asyncio.Event) -> None:
        """Until ``stop``: reload on ``sighup`` (always) and when the file's contents change
        (checked every ``interval_s``; 0 checks only on SIGHUP)."""
        while not stop.is_set():
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(sighup.wait())]
            timeout = self.interval_s if self.interval_s > 0 else None
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w
            if stop.is_set():
                return
            try:
                if sighup.is_set():
                    sighup.clear()
                    await self.reload("SIGHUP")
                elif self.interval_s > 0:
                    await self._check_file()
            except Exception:
                # A long-running loop: one failed reload must not end the watching.
                log.exception("reloading the config failed unexpectedly")

    async def _check_file(self) -> None:
        seen = await asyncio.to_thread(self._look)
        if seen == self._stat:
            return
        self._stat = seen
        digest = await asyncio.to_thread(self._hash)
        if digest is None or digest == self._digest:
            return  # gone for a moment (an editor's save), or rewritten with the same bytes
        await self.reload("the file changed")

    async def reload(self, why: str) -> bool:
        """Validate the file and, if valid, switch to it; return whether it switched."""
        self._stat = await asyncio.to_thread(self._look)
        self._digest = await asyncio.to_thread(self._hash)
        try:
            new = await asyncio.to_thread(load_settings, self.path)
        except ConfigError as exc:
            log.error(
                "config not reloaded (%s): %s; the service keeps the config in force",
                why,
                exc,
                extra={"problems": [str(p) for p in exc.problems]},
            )
            return False
        old = self.current()
        change = compare(old, new)
        if change.kept:
            log.warning(
                "config: %s changed; a running service keeps them until 'serve' restarts",
                ", ".join(change.kept),
            )
        await self.apply(in_force(old, new), change)
        log.info("config reloaded (%s) from %s: %s", why, self.path, change.summary())
        return True
