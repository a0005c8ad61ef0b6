"""The machinery of settings objects (the sections themselves are in :mod:`proxyseg.settings`).

A section is a frozen dataclass: its fields are the section's keys with their one default and, through
:func:`setting`, their bounds and choices. :meth:`Settings.parse` turns a mapping (a config section, a
``--settings`` JSON) into the object: defaults filled in, integers given where floats are expected made
floats, an unknown key refused with the nearest valid ones, every type, bound and choice checked, each
problem reported as ``InputError`` with the key path. The object reads like a mapping too (``s["gamma"]``,
``dict(s)``), and :meth:`Settings.as_dict` gives the plain JSON-ready dict (nested sections included).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, ClassVar, Literal, Mapping

from proxyseg.core.errors import InputError

__all__ = ["MOVED", "Settings", "setting"]

_MISSING = dataclasses.MISSING


def setting(default: Any = _MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, keys: tuple | None = None,
            items: dict | None = None) -> Any:
    """A field with its default and checks: ``ge``/``gt``/``le``/``lt`` bound a number (or every number of a
    list or dict value); ``keys`` lists the keys a dict may have; ``items`` are bounds for list items only.
    Mutable defaults (dicts, lists) are copied for each object."""
    metadata = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, keys=keys, items=items).items() if v is not None}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    if isinstance(default, Settings):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class _Invalid(Exception):
    pass


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return {list: "a list", tuple: "a [low, high] pair", dict: "a mapping"}.get(origin, str(tp))
    if isinstance(tp, type) and issubclass(tp, Settings):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping",
            list: "a list"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, path: str):
    """``value`` as type ``tp`` (ints to floats, JSON lists to tuples' lists), or ``_Invalid``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, path)
            except _Invalid:
                pass
        raise _Invalid(f"{path}: {value!r} is not {_describe(tp)}")
    if origin is Literal:  # an integer matches a float choice (YAML's 2 for 2.0)
        for a in typing.get_args(tp):
            if value == a and (type(value) is type(a) or (type(a) is float and type(value) is int)):
                return a
        raise _Invalid(f"{path}: {value!r} is not one of {list(typing.get_args(tp))}")
    if tp is type(None):
        if value is None:
            return None
        raise _Invalid(f"{path}: {value!r} is not null")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list or tp is list:
        if isinstance(value, (list, tuple)):
            (arg,) = typing.get_args(tp) or (Any,)
            return [_coerce(v, arg, f"{path}[{i}]") for i, v in enumerate(value)]
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return [_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
    elif origin is dict or tp is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            _, arg = typing.get_args(tp) or (str, Any)
            return {k: _coerce(v, arg, f"{path}.{k}") for k, v in value.items()}
    elif isinstance(tp, type) and issubclass(tp, Settings):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.parse(value, path)
    raise _Invalid(f"{path}: {value!r} is not {_describe(tp)}")


def _numbers(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return []


def _check_bounds(value, meta: Mapping, path: str) -> None:
    if "keys" in meta and isinstance(value, dict):
        bad = sorted(set(value) - set(meta["keys"]))
        if bad:
            raise _Invalid(f"{path}: unknown key(s) {bad}; known: {list(meta['keys'])}")
    bounds = [(meta, _numbers(value))]
    if "items" in meta and isinstance(value, list):
        bounds.append((meta["items"], _numbers(value)))
    for limits, numbers in bounds:
        for n in numbers:
            for op, ok in (("ge", n >= limits.get("ge", -math.inf)), ("gt", "gt" not in limits or n > limits["gt"]),
                           ("le", n <= limits.get("le", math.inf)), ("lt", "lt" not in limits or n < limits["lt"])):
                if not ok:
                    sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op]
                    raise _Invalid(f"{path}: {value!r} must be {sign} {limits[op]}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base class of a config section's settings (see the module docstring)."""

    #: the config key the section is read from (``proxy_defaults``, ``teacher``...), for messages and tests
    SECTION: ClassVar[str] = ""

    @classmethod
    def parse(cls, values: Mapping | Settings | None = None, where: str | None = None):
        """The settings of ``values`` (a mapping, or already an object of this class) over the defaults."""
        if isinstance(values, cls):
            return values
        where = where or cls.SECTION or cls.__name__
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise InputError(None, f"{where}: expected a mapping of settings, got {values!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        unknown = [k for k in values if k not in fields]
        if unknown:
            hints_text = "; ".join(f"{k!r}" + (f" (did you mean {', '.join(near)}?)" if (near := difflib.get_close_matches(
                str(k), list(fields), n=3)) else "") for k in unknown)
            raise InputError(None, f"{where}: unknown setting(s) {hints_text}; known: {', '.join(fields)}")
        kwargs = {}
        for name, value in values.items():
            try:
                value = _coerce(value, hints[name], f"{where}.{name}")
                _check_bounds(value, fields[name].metadata, f"{where}.{name}")
            except _Invalid as err:
                raise InputError(None, str(err)) from None
            kwargs[name] = value
        obj = cls(**kwargs)
        try:
            obj.check()
        except _Invalid as err:
            raise InputError(None, f"{where}: {err}") from None
        return obj

    def check(self) -> None:
        """Checks that involve several fields (subclasses override): ``raise self.invalid("KEY: why")``."""

    @staticmethod
    def invalid(message: str) -> Exception:
        return _Invalid(message)

    def as_dict(self) -> dict:
        """Plain data (nested sections as dicts), ready for JSON."""
        return {f.name: (v.as_dict() if isinstance(v := getattr(self, f.name), Settings) else v)
                for f in dataclasses.fields(self)}

    # read like a mapping: s["gamma"], dict(s), {**s}
    def keys(self):
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def get(self, key: str, default=None):
        return getattr(self, key) if key in self.keys() else default


#: keys moved out of a section (2026-11-30): a config written for an older proxyseg is told the new place
MOVED = {"features.device": "runtime.device", "features.batch_size": "runtime.feature_batch_size",
         "teacher.device": "runtime.device", "teacher.num_workers": "runtime.num_workers",
         "teacher.preload_mb": "runtime.preload_mb", "teacher.dump_batch_size": "runtime.inference_batch_size",
         "teacher.dump_step": "inference.step", "nmf.device": "runtime.device", "saliency.device": "runtime.device",
         "proxy_defaults.device": "runtime.device", "proxy_defaults.num_workers": "runtime.num_workers",
         "proxy_defaults.preload_mb": "runtime.preload_mb"}
