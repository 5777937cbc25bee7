"""Structured logging: JSON lines when not on a terminal, readable lines on one.

Context (run, flow, partner) is carried in context variables so every log line emitted while a
flow runs names it without passing loggers around. Secrets are redacted twice: values the config
loader registered as secret are replaced wherever they appear, and fields whose name looks like a
credential are masked.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039
_secrets: set[str] = set()
_SECRET_KEY = re.compile(r"(pass(word|phrase)?|secret|token|authorization|api[_-]?key)", re.I)
_TOKEN_IN_TEXT = re.compile(r"((?:Bearer|Token)\s+)[A-Za-z0-9._~+/=-]{8,}", re.I)
REDACTED = "[REDACTED]"


def register_secret(value: str) -> None:
    """Remember a secret value so it never reaches a log line."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return _TOKEN_IN_TEXT.sub(r"\1" + REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    return value


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Attach fields (run, flow, partner, ...) to every log line inside the block."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items()}})
    try:
        yield
    finally:
        _context.reset(token)


_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **_context.get(),
        }
        for key, value in _extra(record).items():
            out[key] = _redact_value(key, value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {**_context.get(), **{k: _redact_value(k, v) for k, v in _extra(record).items()}}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname.lower():7} {redact(record.getMessage())}"
        if tail:
            line = f"{line}  [{tail}]"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def setup_logging(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """Configure the root logger once; JSON unless stderr is a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # asyncssh logs every channel open, httpx every HTTP request (each page of a catalogue
    # read) at INFO: they would bury the service's own one line per outcome. Warnings only,
    # unless debugging.
    for chatty in ("asyncssh", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
