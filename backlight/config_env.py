"""``BACKLIGHT_*`` environment variables laid over the config file, guided by the settings' schema.

The conventions are pydantic-settings' (prefix ``BACKLIGHT_``, ``__`` between levels, names
case-insensitive, JSON for list and table values) plus what it lacks: list items by index,
merged into the file's list (``BACKLIGHT_SOURCES__0__TOPIC``), and the next index appends an
item. Each variable is resolved against the ``Settings`` model, not guessed from its name:

- a path the model has is set (tables created as needed; ``[``/``{`` values parsed as JSON
  where the key holds a list, table or either);
- a name that is not a config key (``BACKLIGHT_VERSION``, ``BACKLIGHT_HOME``, a misspelt
  section, or an unknown key inside a real section) is *ignored*, and returned so that the
  caller can log its name (never its value);
- a path that is a config key but cannot be applied (an index past the next free one, a list
  addressed by name, a value under a scalar, bad JSON) raises ``ValueError`` naming the variable.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

ENV_PREFIX = "BACKLIGHT_"
NOT_CONFIG = frozenset({"BACKLIGHT_CACHE", "BACKLIGHT_LOG_FORMAT"})
"""``BACKLIGHT_*`` variables that Backlight reads itself, outside the config; never warned about."""
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Path = tuple[int | str, ...]


@dataclass
class Applied:
    """What the environment did: the keys it set (path -> variable) and the names it ignored."""

    origins: dict[Path, str] = field(default_factory=dict)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    """(variable, why) for each ``BACKLIGHT_*`` variable that is not a config key."""

    def origin(self, loc: tuple[int | str, ...]) -> str | None:
        """The variable that set ``loc`` or a table above it, if one did."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origins:
                return self.origins[loc[:n]]
        return None


@dataclass(frozen=True)
class _Kind:
    models: tuple[type[BaseModel], ...] = ()
    item: Any = None  # the item type when a list or tuple is accepted
    value: Any = None  # the value type when a dict is accepted
    anything: bool = False

    @property
    def container(self) -> bool:
        return bool(self.models) or self.item is not None or self.value is not None or self.anything


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


def _leaf(kind: _Kind, value: str, name: str) -> Any:
    if kind.container and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"environment {name}: not valid JSON ({exc.msg} at character "
                             f"{exc.pos}); a list is written like [\"a\", \"b\"]") from None
    return value


def apply_env(data: dict[str, Any], env: dict[str, str], model: type[BaseModel]) -> Applied:
    """Lay the ``BACKLIGHT_*`` variables of ``env`` over ``data`` (the parsed file), in place."""
    applied = Applied()
    names = [n for n in env if n.startswith(ENV_PREFIX) and n not in NOT_CONFIG]
    for name in sorted(names, key=_order):
        why = _apply_one(data, name, env[name], model, applied)
        if why is not None:
            applied.ignored.append((name, why))
    return applied


def _put(container: dict[str, Any] | list[Any], key: int | str, value: Any) -> None:
    if isinstance(container, list):
        container[int(key)] = value
    else:
        container[str(key)] = value


def _dotted(path: list[int | str]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "the top level"


def _apply_one(data: dict[str, Any], name: str, value: str, model: type[BaseModel],
               applied: Applied) -> str | None:
    """Apply one variable; return why it is not a config key, or None once it is applied."""
    parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
    if not all(parts):
        return "an empty level in the name (a single _ where __ was meant?)"
    node: Any = data
    kind = _Kind(models=(model,))
    path: list[int | str] = []
    for i, part in enumerate(parts):
        where = _dotted(path)
        key: int | str
        info: FieldInfo | None = None
        if kind.anything or kind.value is not None:
            key, child_tp = part, (Any if kind.anything else kind.value)
        elif kind.models:
            fields = _fields(kind.models)
            if part not in fields:
                near = difflib.get_close_matches(part, list(fields), n=1)
                return f"{where} has no key {part}" + (f"; did you mean {near[0]}?" if near else "")
            key, info = part, fields[part]
            child_tp = info.annotation
        elif kind.item is not None:
            if not part.isdigit():
                above = ENV_PREFIX + "__".join(parts[:i]).upper()
                raise ValueError(f"environment {name}: {where} is a list; name an item by its "
                                 f"index ({above}__0__...) or set the whole list as JSON")
            key, child_tp = int(part), kind.item
        else:
            raise ValueError(f"environment {name}: {where} is a single value, not a table")
        container: dict[str, Any] | list[Any] = node
        if isinstance(key, int) != isinstance(container, list) or not isinstance(node, dict | list):
            raise ValueError(f"environment {name}: {where} is not a "
                             f"{'list' if isinstance(key, int) else 'table'} in the file")
        path.append(key)
        child = _kind(child_tp)
        current: Any
        if isinstance(container, list):
            assert isinstance(key, int)
            if key > len(container):
                raise ValueError(f"environment {name}: {where} has {len(container)} item(s); "
                                 f"the next one is index {len(container)}, not {key}")
            if key == len(container):
                container.append(None)
            current = container[key]
        else:
            assert isinstance(key, str)
            current = container.get(key)
        if i == len(parts) - 1:
            _put(container, key, _leaf(child, value, name))
            applied.origins[tuple(path)] = name
            return None
        if current is None:
            sequence = child.item is not None and not child.models and child.value is None
            current = _default_list(info) if sequence else {}
            _put(container, key, current)
        node, kind = current, child
    return None


def referenced(value: Any) -> set[str]:
    """The names the config refers to as ``${NAME}`` (those are not stray variables)."""
    if isinstance(value, dict):
        return set().union(*(referenced(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(referenced(v) for v in value))
    if isinstance(value, str):
        return set(_VAR.findall(value))
    return set()
