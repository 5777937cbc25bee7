"""SFTP transport pieces that need no server: settings, pins, ciphers, errors, budget, naming."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncssh
import pydantic
import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.connection import (
    HostKeyPins,
    InProcessConnectionBudget,
    cpu_has_aes_ni,
    preferred_ciphers,
)
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.throttle import TokenBucket
from consonance_sftp.adapters.sftp.translate import translate
from consonance_sftp.app.operations import apply_recommendations
from consonance_sftp.config.transfer import MAX_OPENSSH_BLOCK, TransferSettings


def test_transfer_settings_defaults_are_the_safe_choice() -> None:
    ts = TransferSettings()
    assert ts.upload_strategy.value == "auto"
    assert ts.overwrite.value == "fail"
    assert ts.set_mtime is False
    assert ts.block_size == MAX_OPENSSH_BLOCK == 261_120
    assert ts.post_action.value == "leave"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"block_size": 262_144}, "block_size"),
        ({"surprise": 1}, "surprise"),
        ({"post_action": "move"}, "processed_folder"),
        ({"temp_prefix": "", "temp_suffix": ""}, "temporary name"),
        ({"overwrite": "sometimes"}, "overwrite"),
    ],
)
def test_transfer_settings_reject(fields: dict[str, object], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        TransferSettings(**fields)  # type: ignore[arg-type]


def test_every_transfer_field_is_described() -> None:
    missing = [n for n, f in TransferSettings.model_fields.items() if not f.description]
    assert missing == []


def test_cipher_preference_follows_aes_ni(tmp_path: Path) -> None:
    with_aes = tmp_path / "aes"
    with_aes.write_text("processor: 0\nflags\t\t: fpu sse2 aes avx2\n")
    without = tmp_path / "noaes"
    without.write_text("processor: 0\nflags\t\t: fpu sse2 avx2 aesx\n")
    assert cpu_has_aes_ni(with_aes) is True
    assert cpu_has_aes_ni(without) is False
    assert preferred_ciphers(["aes256-ctr"]) == ["aes256-ctr"]
    first = preferred_ciphers()[0]
    assert first == (
        "aes128-gcm@openssh.com" if cpu_has_aes_ni() else "chacha20-poly1305@openssh.com"
    )


def test_host_key_pins_parse_every_form() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    kind, blob = key.export_public_key().decode().split()[:2]
    fingerprint = key.get_fingerprint("sha256")
    for pin in (
        f"[sftp.example]:2222 {kind} {blob} comment",
        f"sftp.example,10.0.0.1 {kind} {blob}",
        f"{kind} {blob}",
        fingerprint,
        fingerprint.rstrip("=") + "=",
    ):
        pins = HostKeyPins.parse([pin], partner="p")
        assert pins.matches(key), pin
    other = asyncssh.generate_private_key("ssh-ed25519")
    assert not HostKeyPins.parse([fingerprint], partner="p").matches(other)
    with pytest.raises(errors.ConfigError, match="does not parse"):
        HostKeyPins.parse(["ssh-ed25519 AAAAnotbase64!!"], partner="p")
    with pytest.raises(errors.HostKeyMismatch, match="no host key is pinned"):
        HostKeyPins.parse([], partner="p")


def test_pins_ask_for_their_own_key_types_first() -> None:
    from consonance_sftp.config.hostkeys import KEY_TYPES

    ed = asyncssh.generate_private_key("ssh-ed25519")
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    ed_fp, rsa_fp = (str(k.get_fingerprint("sha256")).rstrip("=") for k in (ed, rsa))
    typed = HostKeyPins.parse([f"ssh-rsa {rsa_fp}"], partner="p")
    assert typed.key_types() == ["ssh-rsa"]  # nothing else could match
    assert typed.matches(rsa) and not typed.matches(ed)
    mixed = HostKeyPins.parse([f"ssh-rsa {rsa_fp}", ed_fp], partner="p")
    order = mixed.key_types()
    # the named type first, then (for the bare fingerprint) every type, ed25519 before RSA
    assert order[:2] == ["ssh-rsa", "ssh-ed25519"] and sorted(order) == sorted(KEY_TYPES)
    assert mixed.key_types("ssh-ed25519")[0] == "ssh-ed25519"  # the type that matched last
    assert mixed.matches(ed) and mixed.matches(rsa)
    with pytest.raises(errors.ConfigError, match="unknown host key type"):
        HostKeyPins.parse([f"ssh-dss {rsa_fp}"], partner="p")


@pytest.mark.parametrize(
    ("exc", "cls", "retryable"),
    [
        (asyncssh.SFTPNoSuchFile("gone"), errors.RemotePathNotFound, False),
        (asyncssh.SFTPPermissionDenied("no"), errors.RemotePermissionDenied, False),
        (asyncssh.SFTPFailure("No space left on device"), errors.RemoteDiskFull, False),
        (asyncssh.SFTPFailure("Disk quota exceeded"), errors.RemoteDiskFull, False),
        (asyncssh.SFTPOpUnsupported("nope"), errors.UnsupportedOperation, False),
        (asyncssh.SFTPConnectionLost("bye"), errors.ConnectionLost, True),
        (asyncssh.ConnectionLost("reset"), errors.ConnectionLost, True),
        (asyncssh.PermissionDenied("auth"), errors.AuthenticationFailed, False),
        (asyncssh.HostKeyNotVerifiable("key"), errors.HostKeyMismatch, False),
        (ConnectionRefusedError(111, "Connection refused"), errors.ConnectionLost, True),
        (TimeoutError(), errors.TransferTimeout, True),
    ],
)
def test_translate(exc: BaseException, cls: type[errors.TransportError], retryable: bool) -> None:
    out = translate(exc, partner="printer", path="/in/a.pdf")
    assert type(out) is cls
    assert out.retryable is retryable
    assert "printer" in str(out) and "/in/a.pdf" in str(out)


def test_translate_unwraps_task_groups_and_adds_the_partner() -> None:
    group = ExceptionGroup("tg", [ExceptionGroup("inner", [asyncssh.SFTPNoSuchFile("x")])])
    assert isinstance(translate(group, partner="p", path="a"), errors.RemotePathNotFound)
    bare = errors.IntegrityError("remote file ended at 10 bytes", path=".a.part")
    out = translate(bare, partner="printer")
    assert isinstance(out, errors.IntegrityError)
    assert str(out) == "remote file ended at 10 bytes (partner 'printer', .a.part)"


def _fs(tmp_path: Path, **transfer: object) -> SftpRemoteFS:
    ep = SftpEndpoint(
        partner="p",
        host="h",
        user="u",
        host_keys=("SHA256:" + "A" * 43,),
        transfer=TransferSettings(**transfer),  # type: ignore[arg-type]
    )
    return SftpRemoteFS(ep, state_dir=tmp_path)


def test_temp_names(tmp_path: Path) -> None:
    assert _fs(tmp_path).temp_name("/in/a.pdf") == "/in/.a.pdf.part"
    assert _fs(tmp_path).temp_name("a.pdf") == ".a.pdf.part"
    assert _fs(tmp_path, temp_prefix="", temp_suffix=".tmp").temp_name("/in/a") == "/in/a.tmp"
    assert _fs(tmp_path, temp_folder="/tmp").temp_name("/in/a.pdf") == "/tmp/.a.pdf.part"


async def test_budget_caps_and_wakes_waiters() -> None:
    budget = InProcessConnectionBudget()
    assert await budget.acquire("p", 2)
    assert await budget.acquire("p", 2)
    assert not await budget.acquire("p", 2, wait=False)
    assert await budget.acquire("other", 2, wait=False)  # per partner
    waiter = asyncio.create_task(budget.acquire("p", 2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await budget.release("p")
    assert await asyncio.wait_for(waiter, 1)
    assert budget.in_use("p") == 2
    async with budget.slot("q", 1):
        assert budget.in_use("q") == 1
    assert budget.in_use("q") == 0


async def test_token_bucket_paces() -> None:
    bucket = TokenBucket(1_000_000)
    started = time.monotonic()
    for _ in range(5):
        await bucket.consume(100_000)  # 0.25 MB burst, then 0.25 MB more at 1 MB/s
    assert time.monotonic() - started >= 0.2


def test_apply_recommendations_keeps_comments(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '# top comment\n[partners.printer]\nhost = "h"  # inline comment\n'
        '\n[partners.printer.transfer]\n# keep me\noverwrite = "replace"\n'
        '\n[partners.other]\nhost = "o"\n'
    )
    apply_recommendations(config, "printer", {"upload_strategy": "rename", "set_mtime": False})
    apply_recommendations(config, "other", {"checksum": "none"})
    text = config.read_text()
    for kept in ("# top comment", "# inline comment", "# keep me", 'overwrite = "replace"'):
        assert kept in text
    assert 'upload_strategy = "rename"' in text and "set_mtime = false" in text
    assert "[partners.other.transfer]" in text and 'checksum = "none"' in text
    with pytest.raises(errors.ConfigError, match="ghost"):
        apply_recommendations(config, "ghost", {"checksum": "none"})


def test_reference_documents_every_transfer_setting() -> None:
    text = (Path(__file__).parents[2] / "docs" / "reference" / "transfer.md").read_text()
    missing = [name for name in TransferSettings.model_fields if f"| `{name}` |" not in text]
    assert missing == []


async def _in_order_digest(
    tmp_path: Path, data: bytes, writes: list[tuple[int, int]], **kwargs: int
) -> tuple[str | None, list[object]]:
    """Write ``data`` to a file piece by piece as ``writes`` says, telling an InOrderSha256;
    its digest, and what it handed its thread (bytes from memory or (start, end) ranges)."""
    import os
    import queue

    from consonance_sftp.adapters.sftp.checksums import InOrderSha256

    staging = tmp_path / "staging"
    staging.write_bytes(b"")
    hasher = InOrderSha256(staging, len(data), **kwargs)
    handed: list[object] = []

    class Recording(queue.SimpleQueue[object]):
        def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
            handed.append(item)
            super().put(item, block, timeout)

    hasher._queue = Recording()
    hashing = hasher.start()
    fd = os.open(staging, os.O_WRONLY)
    try:
        for start, end in writes:
            os.pwrite(fd, data[start:end], start)
            hasher.written(start, memoryview(data)[start:end])
    finally:
        os.close(fd)
    hasher.finish()
    return await asyncio.wait_for(hashing, 5), handed


async def test_in_order_hash_takes_bytes_in_order_from_memory(tmp_path: Path) -> None:
    import hashlib
    import os

    data = os.urandom(10_007)
    pieces = [(i, min(i + 1000, len(data))) for i in range(0, len(data), 1000)]
    digest, handed = await _in_order_digest(tmp_path, data, pieces)
    assert digest == hashlib.sha256(data).hexdigest()
    assert not any(isinstance(h, tuple) for h in handed)  # nothing read back from the file


async def test_in_order_hash_reads_back_what_came_after_a_gap(tmp_path: Path) -> None:
    import hashlib
    import os

    data = os.urandom(6_000)
    # Two sessions: 3000.. arrives before ..3000 is complete; a short piece splits a block.
    writes = [(0, 1000), (3000, 4000), (4000, 4500), (1000, 2000), (4500, 6000), (2000, 3000)]
    digest, handed = await _in_order_digest(tmp_path, data, writes)
    assert digest == hashlib.sha256(data).hexdigest()
    # 3000..6000 arrived out of order, merged into one range and read back from the file.
    assert [h for h in handed if isinstance(h, tuple)] == [(3000, 6000)]


async def test_in_order_hash_reads_back_past_its_memory_bound(tmp_path: Path) -> None:
    import hashlib
    import os

    data = os.urandom(8_000)
    pieces = [(i, i + 1000) for i in range(0, len(data), 1000)]
    digest, handed = await _in_order_digest(tmp_path, data, pieces, memory=0)
    assert digest == hashlib.sha256(data).hexdigest()
    assert not any(isinstance(h, bytes | memoryview) for h in handed)  # none from memory
    assert [h for h in handed if isinstance(h, tuple)] == pieces  # each read back in turn


async def test_in_order_hash_gives_none_for_a_hole_or_bytes_written_twice(
    tmp_path: Path,
) -> None:
    import os

    data = os.urandom(3_000)
    hole, _ = await _in_order_digest(tmp_path, data, [(0, 1000), (2000, 3000)])
    assert hole is None
    twice, _ = await _in_order_digest(tmp_path, data, [(0, 2000), (1000, 2000), (2000, 3000)])
    assert twice is None


async def test_in_order_hash_starts_with_a_resumed_downloads_segments(tmp_path: Path) -> None:
    import hashlib
    import os

    from consonance_sftp.adapters.sftp.checksums import InOrderSha256

    data = os.urandom(5_000)
    staging = tmp_path / "staging"
    staging.write_bytes(data[:2000] + bytes(3000))  # an earlier attempt wrote 0..2000
    hasher = InOrderSha256(staging, len(data))
    hasher.on_disk(0, 2000)
    hashing = hasher.start()
    fd = os.open(staging, os.O_WRONLY)
    try:
        for start in (2000, 3000, 4000):
            os.pwrite(fd, data[start : start + 1000], start)
            hasher.written(start, data[start : start + 1000])
    finally:
        os.close(fd)
    hasher.finish()
    assert await asyncio.wait_for(hashing, 5) == hashlib.sha256(data).hexdigest()

    stopped = InOrderSha256(staging, len(data))
    waiting = stopped.start()
    stopped.written(0, data[:1000])
    stopped.stop()
    assert await asyncio.wait_for(waiting, 5) is None
