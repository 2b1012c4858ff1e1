"""``BACKLIGHT_*`` environment variables over the config file: pydantic-settings' environment source.

``Settings``' config (prefix ``BACKLIGHT_``, ``__`` between levels, case-insensitive) lets
pydantic-settings read each variable that names a key through tables. Each is first resolved
against the model here, for what pydantic-settings cannot express: list items by index
(``BACKLIGHT_SOURCES__0__TOPIC``) merged into the file's list, the next index appending one (it
would make a table ``{"0": ...}`` replacing the list); names that are not config keys ignored and
logged by name, never value (it would pass them on, for the model to refuse); a key that cannot
be set (an index past the next free one, a list addressed by name, a value under a single value,
bad JSON) a ``ValueError`` naming the variable (it names only the top-level key).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import types
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

import structlog
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource

ENV_PREFIX = "BACKLIGHT_"
NOT_CONFIG = frozenset({"BACKLIGHT_CACHE", "BACKLIGHT_LOG_FORMAT"})
"""``BACKLIGHT_*`` variables that Backlight reads itself, outside the config; never warned about."""
ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("backlight_environ", default=None)
"""The environment ``config.load`` reads (else ``os.environ``): pydantic-settings builds the
sources inside the model, where no argument of ``load`` reaches."""
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
log = structlog.stdlib.get_logger("backlight.config")

Path = tuple[int | str, ...]


@dataclass(frozen=True)
class _Kind:
    models: tuple[type[BaseModel], ...] = ()
    item: Any = None  # the item type when a list or tuple is accepted
    value: Any = None  # the value type when a dict is accepted
    anything: bool = False

    @property
    def container(self) -> bool:
        return bool(self.models) or self.item is not None or self.value is not None or self.anything

    @property
    def sequence(self) -> bool:
        return self.item is not None and not self.models and self.value is None


def _kind(tp: Any) -> _Kind:
    """What a key of type ``tp`` may hold: tables (models, dicts), lists, or only scalars."""
    if tp is Any:
        return _Kind(anything=True)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [_kind(a) for a in get_args(tp) if a is not type(None)]
        return _Kind(tuple(m for p in parts for m in p.models),
                     next((p.item for p in parts if p.item is not None), None),
                     next((p.value for p in parts if p.value is not None), None),
                     any(p.anything for p in parts))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _Kind(models=(tp,))
    if origin in (tuple, list):
        args = get_args(tp)
        return _Kind(item=args[0] if args else Any)
    if origin is dict:
        args = get_args(tp)
        return _Kind(value=args[1] if len(args) == 2 else Any)
    return _Kind()


def _fields(models: tuple[type[BaseModel], ...]) -> dict[str, FieldInfo]:
    out: dict[str, FieldInfo] = {}
    for m in models:
        for name, info in m.model_fields.items():
            out[(info.alias or name).lower()] = info
    return out


def _default_list(info: FieldInfo | None) -> list[Any]:
    """A list key absent from the file starts from its default, when that is a list of scalars."""
    if info is None:
        return []
    default = info.get_default(call_default_factory=True)
    if isinstance(default, tuple | list) and all(isinstance(v, str | int | float | bool)
                                                 for v in default):
        return list(default)
    return []


def _order(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort shorter paths first (a whole list before its items) and indexes as numbers."""
    return tuple((0, int(p)) if p.isdigit() else (1, p)
                 for p in name[len(ENV_PREFIX):].lower().split("__"))


def _dotted(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "the top level"


def _json(kind: _Kind, value: str, name: str) -> Any:
    """``value`` decoded when the key holds a list or table and it reads as JSON, else as is."""
    if kind.container and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"environment {name}: not valid JSON ({exc.msg} at character "
                             f"{exc.pos}); a list is written like [\"a\", \"b\"]") from None
    return value


@dataclass(frozen=True)
class Variable:
    """A ``BACKLIGHT_*`` variable resolved against the model: the key it sets, and its value."""

    name: str
    path: Path
    value: Any
    seeds: tuple[list[Any], ...]
    """Per level, what a list that is in neither the file nor the environment starts from."""


def resolve(name: str, value: str, model: type[BaseModel]) -> Variable | str:
    """The key ``name`` sets, or why it is not a config key (raises ValueError when it is one
    but cannot be set)."""
    parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
    if not all(parts):
        return "an empty level in the name (a single _ where __ was meant?)"
    kind = _Kind(models=(model,))
    path: list[int | str] = []
    seeds: list[list[Any]] = []
    for i, part in enumerate(parts):
        where = _dotted(tuple(path))
        info: FieldInfo | None = None
        key: int | str
        if kind.anything or kind.value is not None:
            key, tp = part, (Any if kind.anything else kind.value)
        elif kind.models:
            fields = _fields(kind.models)
            if part not in fields:
                near = difflib.get_close_matches(part, list(fields), n=1)
                return f"{where} has no key {part}" + (f"; did you mean {near[0]}?" if near else "")
            key, info = part, fields[part]
            tp = info.annotation
        elif kind.item is not None:
            if not part.isdigit():
                above = ENV_PREFIX + "__".join(parts[:i]).upper()
                raise ValueError(f"environment {name}: {where} is a list; name an item by its "
                                 f"index ({above}__0__...) or set the whole list as JSON")
            key, tp = int(part), kind.item
        else:
            raise ValueError(f"environment {name}: {where} is a single value, not a table")
        path.append(key)
        kind = _kind(tp)
        seeds.append(_default_list(info) if kind.sequence else [])
    return Variable(name, tuple(path), _json(kind, value, name), tuple(seeds))


def _set(data: dict[str, Any], file: dict[str, Any], var: Variable) -> None:
    """Set a variable's list item in ``data`` (the environment's tables); a list that is not
    there yet is copied from the file (or the key's default) first, so the item lands in it."""
    node: Any = data
    base: Any = file  # the file's value at ``node``'s place, until a list is copied from it
    for i, key in enumerate(var.path):
        where = _dotted(var.path[:i])
        if isinstance(key, int) != isinstance(node, list) or not isinstance(node, dict | list):
            raise ValueError(f"environment {var.name}: {where} is not a "
                             f"{'list' if isinstance(key, int) else 'table'} in the file")
        slot: Any = node  # a list indexed by int, or a table by str (checked above)
        if isinstance(key, int) and key > len(slot):
            raise ValueError(f"environment {var.name}: {where} has {len(slot)} item(s); "
                             f"the next one is index {len(slot)}, not {key}")
        if isinstance(key, int) and key == len(slot):
            slot.append(None)
        if i == len(var.path) - 1:
            slot[key] = var.value
            return
        below = base.get(key) if isinstance(base, dict) else None
        current = slot[key] if isinstance(key, int) else slot.get(key)
        if current is None:
            if isinstance(var.path[i + 1], int):
                current = copy.deepcopy(below) if below is not None else list(var.seeds[i])
            else:
                current = {}
            slot[key] = current
        node, base = current, below


class EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, given only the variables that are config keys
    outside lists; list items by index are set after it has read those."""

    def __init__(self, settings_cls: type[BaseSettings], file: dict[str, Any]) -> None:
        self.file = file
        self.items: list[Variable] = []
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = ENVIRON.get()
        env = os.environ if env is None else env
        names = [n for n in env if n.upper().startswith(ENV_PREFIX) and n.upper() not in NOT_CONFIG]
        plain: dict[str, str | None] = {}
        stray: list[tuple[str, str]] = []
        for name in sorted(names, key=_order):
            var = resolve(name, env[name], self.settings_cls)
            if isinstance(var, str):
                stray.append((name, var))
            elif any(isinstance(p, int) for p in var.path):
                self.items.append(var)
            else:
                plain[name.lower()] = env[name]
        wanted = referenced([self.file, list(plain.values()), [v.value for v in self.items]])
        for name, why in stray:
            if name not in wanted:  # ``token = "${BACKLIGHT_TOKEN_ALICE}"`` is not stray
                log.warning("environment variable ignored: not a config key", variable=name, why=why)
        return plain

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        # A value not written as JSON stays a string, for the model to accept (a calendar's
        # weekdays = "Mon-Fri") or refuse naming the key (pydantic-settings would fail on it).
        return json.loads(value) if value.lstrip()[:1] in ("[", "{") else value

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for var in self.items:
            _set(data, self.file, var)
        return data


def origin(loc: tuple[int | str, ...], env: Mapping[str, str]) -> str | None:
    """The variable that set ``loc`` or a key above it, if one did."""
    names = {n.upper(): n for n in env}
    for n in range(len(loc), 0, -1):
        name = names.get(ENV_PREFIX + "__".join(str(p) for p in loc[:n]).upper())
        if name is not None:
            return name
    return None


def referenced(value: Any) -> set[str]:
    """The names the config refers to as ``${NAME}`` (those are not stray variables)."""
    if isinstance(value, dict):
        return set().union(*(referenced(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(referenced(v) for v in value))
    if isinstance(value, str):
        return set(REFERENCE.findall(value))
    return set()
