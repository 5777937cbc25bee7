"""Load the TOML config file into ``Settings``, reporting every problem at once.

A user fixing a config file should see the whole list in one go, each problem with the TOML
path of the field (``partners.printer.host_keys: required``), not one error per run. Pydantic's
errors are translated into those paths and into plain sentences; a few checks that span
sections (a flow naming an unknown partner or folder) run on the raw data so they are reported
alongside the field errors.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from consonance_sftp.config.flows import FLOW_MODELS
from consonance_sftp.config.settings import Settings
from consonance_sftp.errors import ConfigError, ConfigProblem

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_DISCRIMINATORS = ("kind", "type")

_HOST_KEYS_REQUIRED = (
    "required: pin at least one host key (a known_hosts line or a SHA256:... fingerprint)"
)

Loc = tuple[int | str, ...]


def load_settings(path: Path | str) -> Settings:
    """Read and validate the config file; raise one ``ConfigError`` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found",
            hint="Create one with 'consonance-sftp init', or point --config at yours.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    return parse_settings(text, source=path)


def parse_settings(text: str, *, source: Path) -> Settings:
    """Validate TOML text; relative paths in it resolve against ``source``'s folder."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        reason = _TOML_POSITION.sub("", message).strip()
        position = f"line {where.group(1)}, column {where.group(2)}" if where else "syntax"
        raise ConfigError(
            f"{source} is not valid TOML",
            [ConfigProblem(position, reason)],
            hint="Fix the TOML syntax at that position (quotes, brackets, '=').",
        ) from exc
    base_dir = source.resolve().parent
    problems = cross_check(data)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems.extend(problem_from(error) for error in exc.errors(include_url=False))
    if problems or settings is None:
        problems = _dedupe(problems)
        count = len(problems)
        raise ConfigError(
            f"{source}: {count} problem{'s' if count != 1 else ''} in the config",
            sorted(problems, key=lambda p: p.path),
        )
    return settings.with_source(source)


# --- pydantic errors -> TOML paths and sentences --------------------------------------------


def problem_from(error: ErrorDetails) -> ConfigProblem:
    """One pydantic error as a ``ConfigProblem`` with a TOML path and a friendly message."""
    loc = tuple(error["loc"])
    parts, model = _walk(loc)
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    message = error["msg"]

    if kind == "missing":
        message = "required"
        if parts and parts[-1] == "host_keys":
            message = _HOST_KEYS_REQUIRED
    elif kind == "extra_forbidden":
        message = "unknown field"
        if model is not None and isinstance(loc[-1], str):
            allowed = sorted(model.model_fields)
            close = difflib.get_close_matches(loc[-1], allowed, n=1)
            message += f" (did you mean {close[0]!r}?)" if close else ""
            message += f"; allowed here: {', '.join(allowed)}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "kind")).strip("'")
        parts.append(field)
        valid = _valid_tags(field)
        if kind == "union_tag_not_found":
            message = f"required; one of: {valid}"
        else:
            noun = "flow kind" if field == "kind" else field
            message = f"unknown {noun} {ctx.get('tag')!r}; valid {noun}s: {valid}"
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        message = f"expected a whole number, got {_show(value)}"
    elif kind in ("float_parsing", "float_type"):
        message = f"expected a number, got {_show(value)}"
    elif kind in ("bool_parsing", "bool_type"):
        message = f"expected true or false, got {_show(value)}"
    elif kind == "string_type":
        got = type(value).__name__ if value is not None else "nothing"
        message = f"expected a string in quotes, got {got}"
    elif kind in ("list_type", "tuple_type"):
        message = 'expected a list, e.g. ["a", "b"]'
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "expected a table (a [section] or { key = value })"
    elif kind == "too_short":
        minimum = ctx.get("min_length", 1)
        message = "must not be empty" if minimum == 1 else f"needs at least {minimum} entries"
        if parts and parts[-1] == "host_keys":
            message = _HOST_KEYS_REQUIRED
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }
        bound = next(iter(ctx.values()), "?")
        message = f"must be {words[kind]} {bound}, got {_show(value)}"
    elif kind == "literal_error":
        message = f"expected one of {ctx.get('expected', '?')}, got {_show(value)}"
    elif kind == "string_pattern_mismatch":
        message = "names use lower-case letters, digits, '-' and '_' (at most 64 characters)"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    if loc and loc[-1] == "[key]":
        message = f"bad name: {message}"
    return ConfigProblem(_join(parts), message)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    return repr(value) if isinstance(value, int | float | bool) else type(value).__name__


def _walk(loc: Loc) -> tuple[list[str], type[BaseModel] | None]:
    """TOML path parts for a pydantic loc, and the model the last part sits in.

    Pydantic puts the chosen member of a discriminated union (``production``) into the loc;
    it is not part of the TOML path, so it is dropped while walking the types.
    """
    parts: list[str] = []
    current: Any = Settings
    owner: type[BaseModel] | None = None
    for element in loc:
        current = _unwrap(current)
        if element == "[key]":
            continue
        members = _union_members(current)
        if members is not None:
            chosen = _member_for_tag(members, element)
            if chosen is not None:
                current = chosen
                continue
            current = None
        if isinstance(element, int):
            parts[-1:] = [f"{parts[-1]}[{element}]"] if parts else [f"[{element}]"]
            current = _item_type(current)
            continue
        parts.append(element)
        if _is_model(current):
            owner = current
            field = current.model_fields.get(element)
            current = field.annotation if field is not None else None
        elif get_origin(current) in (dict, Mapping):
            current = get_args(current)[1]
        else:
            current = None
    return parts, owner


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    members = _union_members(annotation)
    if members is not None and len(members) == 1:
        return _unwrap(members[0])
    return annotation


def _union_members(annotation: Any) -> list[Any] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        return [_unwrap_annotated(a) for a in get_args(annotation) if a is not type(None)]
    return None


def _unwrap_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _member_for_tag(members: Sequence[Any], tag: int | str) -> type[BaseModel] | None:
    for member in members:
        if not _is_model(member):
            continue
        for field in _DISCRIMINATORS:
            info = member.model_fields.get(field)
            if (
                info is not None
                and get_origin(info.annotation) is Literal
                and tag in get_args(info.annotation)
            ):
                return member  # type: ignore[no-any-return]
    return None


def _item_type(annotation: Any) -> Any:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (list, tuple, Sequence):
        return get_args(annotation)[0]
    return None


def _valid_tags(field: str) -> str:
    if field == "kind":
        return ", ".join(kind.value for kind in FLOW_MODELS)
    return "log, email, webhook"


def toml_path(parts: Iterable[str]) -> str:
    """``partners.printer.auth.key`` from its parts, quoting keys TOML needs quoted."""
    return _join(parts)


def _join(parts: Iterable[str]) -> str:
    out: list[str] = []
    for part in parts:
        name, bracket, rest = part.partition("[")
        quoted = name if not name or _BARE_KEY.match(name) else f'"{name}"'
        out.append(quoted + bracket + rest)
    return ".".join(out)


def _dedupe(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[tuple[str, str]] = set()
    out: list[ConfigProblem] = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            out.append(problem)
    return out


# --- checks across sections -----------------------------------------------------------------


def cross_check(data: Mapping[str, Any]) -> list[ConfigProblem]:
    """Problems that involve two sections: flows naming unknown partners or folders."""
    problems: list[ConfigProblem] = []
    partners = data.get("partners")
    flows = data.get("flows")
    if not isinstance(partners, Mapping):
        partners = {}
    if not isinstance(flows, Mapping):
        return problems
    known = sorted(str(name) for name in partners)
    for flow_name, flow in flows.items():
        if not isinstance(flow, Mapping):
            continue
        where = _join(["flows", str(flow_name)])
        names = flow.get("partners", [])
        if not isinstance(names, list):
            continue
        for name in names:
            if isinstance(name, str) and name not in partners:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(
                    ConfigProblem(
                        f"{where}.partners",
                        f"unknown partner {name!r}; {hint}known partners: "
                        f"{', '.join(known) or 'none'}",
                    )
                )
        problems += _delivery_target(where, flow, partners, known)
        folder = flow.get("folder", _default_folder(flow.get("kind")))
        if not isinstance(folder, str):
            continue
        for name in names:
            partner = partners.get(name) if isinstance(name, str) else None
            if not isinstance(partner, Mapping):
                continue
            folders = partner.get("folders", {})
            if isinstance(folders, Mapping) and folder not in folders:
                problems.append(
                    ConfigProblem(
                        f"{where}.folder",
                        f"partner {name!r} has no folder {folder!r}; add it to "
                        f"{_join(['partners', name, 'folders'])} or set this flow's folder",
                    )
                )
    return problems


def _delivery_target(
    where: str, flow: Mapping[str, Any], partners: Mapping[str, Any], known: list[str]
) -> list[ConfigProblem]:
    """Partners a flow sends to besides ``partners``, each a known partner with the folder
    named: a sales_in flow's ``deliver_to`` (``deliver_folder``); a finance_out flow's
    payees, agents, finance copy and statements inbox (each ``partner`` and ``folder``)."""
    targets: list[tuple[str, Any, Any, str]] = []  # (where, partner, folder, folder key)
    if "deliver_to" in flow:
        targets.append((where, flow["deliver_to"], flow.get("deliver_folder", "send"), "deliver"))
    for table in ("payees", "agents"):
        routes = flow.get(table)
        for key, route in routes.items() if isinstance(routes, Mapping) else ():
            if isinstance(route, Mapping) and route.get("partner") is not None:
                at = _join(["flows", where.split(".", 1)[1], table, str(key)])
                targets.append((at, route["partner"], route.get("folder", "send"), ""))
    for table, default in (("finance_copy", "send"), ("statements_from", "receive")):
        entry = flow.get(table)
        if isinstance(entry, Mapping) and "partner" in entry:
            targets.append((f"{where}.{table}", entry["partner"], entry.get("folder", default), ""))
    problems: list[ConfigProblem] = []
    for at, name, folder, prefix in targets:
        if not isinstance(name, str):
            continue
        partner = partners.get(name)
        if not isinstance(partner, Mapping):
            problems.append(
                ConfigProblem(
                    f"{at}.{prefix}_to" if prefix else f"{at}.partner",
                    f"unknown partner {name!r}; known partners: {', '.join(known) or 'none'}",
                )
            )
            continue
        folders = partner.get("folders", {})
        if isinstance(folder, str) and isinstance(folders, Mapping) and folder not in folders:
            setting = f"{prefix}_folder" if prefix else "folder"
            problems.append(
                ConfigProblem(
                    f"{at}.{setting}",
                    f"partner {name!r} has no folder {folder!r}; add it to "
                    f"{_join(['partners', name, 'folders'])} or set {setting}",
                )
            )
    return problems


def _default_folder(kind: Any) -> str | None:
    for flow_kind, model in FLOW_MODELS.items():
        if flow_kind.value == kind:
            default = model.model_fields["folder"].default
            return default if isinstance(default, str) else None
    return None
