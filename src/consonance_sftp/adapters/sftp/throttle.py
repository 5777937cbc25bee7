"""Per-partner bandwidth limit: SFTP session wrappers that draw from a ``TokenBucket``
(``adapters.transfer_common``, shared with the FTP adapter).

The wrappers stand in for ``asyncssh.SFTPClient`` in the segmented transfer, which only opens
files and reads or writes blocks: each block waits for its bytes' worth of tokens first, so all
connections of one partner share one budget of bytes per second.
"""

from __future__ import annotations

from typing import Any

from consonance_sftp.adapters.transfer_common import TokenBucket

__all__ = ["ThrottledSFTP", "TokenBucket"]  # TokenBucket: shared with the FTP adapter


class _ThrottledFile:
    def __init__(self, inner: Any, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    async def __aenter__(self) -> _ThrottledFile:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.__aexit__(*exc)

    async def write(self, data: bytes, offset: int) -> int:
        await self._bucket.consume(len(data))
        written: int = await self._inner.write(data, offset)
        return written

    async def stat(self) -> Any:
        return await self._inner.stat()

    async def read(self, size: int, offset: int) -> bytes:
        await self._bucket.consume(size)
        data: bytes = await self._inner.read(size, offset)
        return data

    def __getattr__(self, name: str) -> Any:
        # Everything that moves no payload (close, fsync, truncate...) goes straight through.
        return getattr(self._inner, name)


class ThrottledSFTP:
    """Wraps an SFTP session so that file reads and writes respect a shared ``TokenBucket``."""

    def __init__(self, inner: Any, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    async def open(self, path: str, *args: Any, **kwargs: Any) -> _ThrottledFile:
        return _ThrottledFile(await self._inner.open(path, *args, **kwargs), self._bucket)
