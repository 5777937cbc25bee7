"""A userspace TCP relay on loopback that adds latency: every chunk is held DELAY ms each way.

The benchmark's "long fat link": this kernel has no ``netem`` queueing discipline, so a relay
between client and server holds every chunk it reads for ``--delay-ms`` before writing it on,
in both directions (50 ms each way is a 100 ms round trip). It emulates latency only: no loss,
no reordering, no bandwidth cap (up to ``--max-buffer`` bytes may be in flight per direction,
far more than any SSH window, so the relay itself never limits a transfer's window).

It is built on asyncio protocols (no streams, no per-chunk tasks: one timer per direction) to
keep its own cost low: on the 2-core development machine it moved 180-600 MiB/s of raw TCP
depending on the load, above the 15-140 MiB/s the WAN transfers reach. ``measure_relay`` (used
by ``bench/transfer.py`` in every run) measures that raw rate through a plain socket pipe, and
the benchmark warns when a transfer comes close to it. ``spawn_relay`` runs it as a child
process, so it does not share the benchmark's interpreter.

Run alone:  python bench/latency_relay.py --target 127.0.0.1:2222 --delay-ms 50
It prints ``listening on 127.0.0.1:PORT`` once ready, then relays until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_BUFFER = 256 * 1024 * 1024


class _Direction:
    """One way of one relayed connection: a queue of (due time, chunk) and one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, max_buffer: int) -> None:
        self.loop = loop
        self.delay = delay
        self.max_buffer = max_buffer
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reading_paused = False
        self.eof = False

    def push(self, data: bytes) -> None:
        self.queue.append((self.loop.time() + self.delay, data))
        self.queued += len(data)
        if self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)
        self._throttle()

    def finish(self) -> None:
        """The source sent EOF or closed: pass it on once the queued data has gone out."""
        self.eof = True
        if not self.queue:
            self._close_dst()

    def flush(self) -> None:
        self.timer = None
        now = self.loop.time()
        out = []
        # Everything due within the next half millisecond goes in one write: timers fire late
        # by about that much anyway, and batching keeps the relay's per-chunk cost low.
        while self.queue and self.queue[0][0] <= now + 0.0005:
            _, data = self.queue.popleft()
            self.queued -= len(data)
            out.append(data)
        if out and self.dst is not None and not self.dst.is_closing():
            self.dst.writelines(out) if len(out) > 1 else self.dst.write(out[0])
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)
        elif self.eof:
            self._close_dst()
        self._throttle()

    def _throttle(self) -> None:
        if self.src is None:
            return
        pending = self.queued + (self.dst.get_write_buffer_size() if self.dst else 0)
        if not self.reading_paused and pending > self.max_buffer:
            self.src.pause_reading()
            self.reading_paused = True
        elif self.reading_paused and pending <= self.max_buffer // 2:
            self.src.resume_reading()
            self.reading_paused = False

    def _close_dst(self) -> None:
        if self.dst is not None and not self.dst.is_closing():
            if self.dst.can_write_eof():
                self.dst.write_eof()
            else:
                self.dst.close()


class _Side(asyncio.Protocol):
    """One socket of a relayed pair; feeds its direction and is the sink of the other."""

    def __init__(self, outgoing: _Direction, incoming: _Direction) -> None:
        self.outgoing = outgoing  # data read from this socket
        self.incoming = incoming  # data written to this socket
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.outgoing.src = transport
        self.incoming.dst = transport

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def eof_received(self) -> bool:
        self.outgoing.finish()
        return True  # keep our write half open until the other side finishes too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.outgoing.finish()

    def resume_writing(self) -> None:
        self.incoming._throttle()

    def pause_writing(self) -> None:
        pass


async def _relay_connection(
    client_side: _Side, target: tuple[str, int], up: _Direction, down: _Direction
) -> None:
    loop = asyncio.get_running_loop()
    assert client_side.transport is not None
    try:
        await loop.create_connection(lambda: _Side(down, up), *target)
    except OSError:
        client_side.transport.close()
        return
    client_side.transport.resume_reading()


async def start_relay(
    target: tuple[str, int],
    delay: float,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> asyncio.Server:
    """Start a relay to ``target`` holding each chunk ``delay`` seconds per direction."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def factory() -> asyncio.Protocol:
        up = _Direction(loop, delay, max_buffer)  # client -> server
        down = _Direction(loop, delay, max_buffer)  # server -> client
        side = _Side(up, down)
        original = side.connection_made

        def connection_made(transport: asyncio.BaseTransport) -> None:
            original(transport)
            # Hold the client's bytes in the kernel until the server side exists.
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()
            task = loop.create_task(_relay_connection(side, target, up, down))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        side.connection_made = connection_made  # type: ignore[method-assign]
        return side

    return await loop.create_server(factory, host, port)


# --- used by bench/transfer.py ----------------------------------------------------------


@dataclass
class RelayProcess:
    """A relay running as a child process (so it has its own interpreter and core time)."""

    process: subprocess.Popen[str]
    port: int
    banner: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)


def spawn_relay(target_port: int, delay_ms: float) -> RelayProcess:
    """Start ``python latency_relay.py`` towards 127.0.0.1:target_port; returns once listening."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--target",
            f"127.0.0.1:{target_port}",
            "--delay-ms",
            str(delay_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline().strip()
    if not banner.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"latency relay did not start: {banner!r}")
    port = int(banner.split()[2].rsplit(":", 1)[1])
    return RelayProcess(process, port, banner)


def measure_relay(delay_ms: float, nbytes: int) -> tuple[float, float]:
    """Raw TCP throughput (MiB/s) and round trip (ms) through a relay to a plain socket sink."""
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen()
    received = [0]

    def serve() -> None:
        conn, _ = sink.accept()
        with conn:
            buf = memoryview(bytearray(1 << 20))
            conn.recv(1)
            conn.sendall(b"p")  # answer the round-trip probe
            while n := conn.recv_into(buf):
                received[0] += n
            conn.sendall(b"x")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    relay = spawn_relay(sink.getsockname()[1], delay_ms)
    try:
        with socket.create_connection(("127.0.0.1", relay.port)) as sock:
            t = time.perf_counter()
            sock.sendall(b"p")
            sock.recv(1)
            rtt = (time.perf_counter() - t) * 1000
            chunk = bytes(1 << 20)
            t = time.perf_counter()
            for _ in range(nbytes >> 20):
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)
            elapsed = time.perf_counter() - t
    finally:
        relay.stop()
        sink.close()
    thread.join(5)
    assert received[0] == (nbytes >> 20) << 20, "relay lost bytes"
    return ((nbytes >> 20) / elapsed, rtt)


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    server = await start_relay(
        (host, int(port)),
        args.delay_ms / 1000,
        host=args.listen_host,
        port=args.listen_port,
        max_buffer=args.max_buffer,
    )
    bound = server.sockets[0].getsockname()
    print(
        f"listening on {bound[0]}:{bound[1]} -> {args.target}, holding every chunk "
        f"{args.delay_ms:g} ms each way (emulates latency, not loss)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="hold per direction")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--max-buffer", type=int, default=DEFAULT_MAX_BUFFER)
    args = parser.parse_args(argv)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
