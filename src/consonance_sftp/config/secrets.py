"""Secret references in the config: ``{env = "NAME"}`` or ``{file = "path"}``, never literals.

A secret field is validated by resolving its reference at load time into a ``SecretStr`` (so
``repr()`` and ``str()`` never show it) and registering the value with the log redactor. A
literal string is refused: a password pasted into the TOML file ends up in backups, diffs and
screenshots. Relative ``file`` paths resolve against the config file's folder, which the loader
passes in the validation context as ``base_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr, ValidationInfo
from pydantic_core import PydanticCustomError

from consonance_sftp.logs import register_secret

SECRET_HINT = 'use a reference: {env = "NAME"} or {file = "path"}'  # noqa: S105


def base_dir_of(info: ValidationInfo) -> Path | None:
    """The config file's folder, when the loader passed one."""
    context = info.context
    if isinstance(context, dict):
        base = context.get("base_dir")
        if isinstance(base, Path):
            return base
    return None


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths in the config mean "relative to the config file", not to the cwd."""
    base = base_dir_of(info)
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        return base / value
    return value


def _resolve(value: Any, info: ValidationInfo) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        # The value itself is never echoed: it is the secret we refuse to keep.
        raise PydanticCustomError(
            "secret_literal",
            "a literal secret is not allowed here; " + SECRET_HINT,
        )
    if not isinstance(value, dict):
        raise PydanticCustomError("secret_type", "expected a secret reference; " + SECRET_HINT)
    keys = set(value)
    if keys == {"env"} and isinstance(value["env"], str) and value["env"]:
        name = value["env"]
        resolved = os.environ.get(name)
        if resolved is None:
            raise PydanticCustomError(
                "secret_missing_env",
                "environment variable {name} is not set",
                {"name": name},
            )
    elif keys == {"file"} and isinstance(value["file"], str) and value["file"]:
        path = resolve_path(Path(value["file"]), info)
        try:
            resolved = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PydanticCustomError(
                "secret_missing_file",
                "cannot read secret file {path}: {reason}",
                {"path": str(path), "reason": exc.strerror or type(exc).__name__},
            ) from None
    else:
        raise PydanticCustomError(
            "secret_reference",
            "a secret reference has exactly one key, env or file; " + SECRET_HINT,
        )
    if not resolved:
        raise PydanticCustomError("secret_empty", "the referenced secret is empty")
    register_secret(resolved)
    return SecretStr(resolved)


def _resolve_optional(value: Any, info: ValidationInfo) -> SecretStr | None:
    return None if value is None else _resolve(value, info)


Secret = Annotated[SecretStr, BeforeValidator(_resolve)]
"""A required secret: ``{env = "NAME"}`` or ``{file = "path"}`` in TOML."""

OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_resolve_optional)]
"""An optional secret reference."""
