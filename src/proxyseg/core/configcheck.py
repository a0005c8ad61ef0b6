"""Short messages for an invalid workflow config: each problem's key path and reason, never the schema.

Snakemake's own ``validate`` stops at the first problem and prints jsonschema's full report, which embeds the
(sub)schema that failed: hundreds of lines for a misspelt proxy setting, thousands for a misspelt top-level
key. :func:`check_config` lists every problem (up to ``limit``) in one line each, with the nearest valid keys
for an unknown key and the config file that set the value.
"""

from __future__ import annotations

import difflib
import os
import re
import reprlib
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from proxyseg.core.names import NAME_PATTERN, NAME_RULE
from proxyseg.core.settings import MOVED

__all__ = ["ConfigError", "check_config", "config_problems", "load_schema"]

MAX_PROBLEMS = 10


class _AnyName:
    """Stands for any key of a mapping of named entries (corpora, proxies, ...) in a schema path."""

    def __str__(self) -> str:
        return "<name>"


_ANY_NAME = _AnyName()
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean (true/false)", "null": "null"}

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxdict = _short.maxlist = 4
_short.maxlevel = 2


class ConfigError(ValueError):
    """The config does not match the schema; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str], total: int | None = None, sources: Sequence[str] = ()):
        self.problems = list(problems)
        total = len(self.problems) if total is None else total
        head = f"invalid config ({total} problem{'s' if total != 1 else ''})"
        if sources:
            head += " in " + ", ".join(map(str, sources))
        lines = [head + ":"] + [f"  {p}" for p in self.problems]
        if total > len(self.problems):
            lines.append(f"  ... and {total - len(self.problems)} more")
        lines.append("Every setting and its default: docs/configuration.md (defaults: src/proxyseg/settings.py).")
        super().__init__("\n".join(lines))


def load_schema(path: str | os.PathLike) -> dict:
    with open(path) as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def key_path(path: Iterable[Any]) -> str:
    """``('proxies', 'spec_fixedW', 'gama')`` -> ``proxies.spec_fixedW.gama``; list items as ``[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, _AnyName) or isinstance(part, str) and _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


def _value(instance: Any) -> str:
    return _short.repr(instance)


def _compact(message: str, instance: Any) -> str:
    """jsonschema's message with a long repr of the value at its start shortened."""
    full = repr(instance)
    if message.startswith(full) and len(full) > 60:
        message = _value(instance) + message[len(full):]
    return message if len(message) <= 300 else message[:297] + "..."


def _describe(schema: Any) -> str | None:
    """One branch of a oneOf/anyOf in words: ``'all'``, ``a list``, ``one of 'a', 'b'``."""
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    return None


def _valid_keys_elsewhere(schema: Mapping, key: str) -> list[str]:
    """Where in the schema ``key`` is a declared property (``teacher``, ``proxies.<name>``)."""
    found: list[str] = []

    def walk(node: Any, where: list[str], depth: int) -> None:
        if not isinstance(node, Mapping) or depth > 8:
            return
        props = node.get("properties")
        if isinstance(props, Mapping):
            if key in props:
                found.append(key_path(where) if where else "the top level")
            for name, sub in props.items():
                walk(sub, [*where, name], depth + 1)
        if isinstance(node.get("additionalProperties"), Mapping):
            walk(node["additionalProperties"], [*where, _ANY_NAME], depth + 1)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            walk(schema.get("$defs", {}).get(ref.rsplit("/", 1)[1]), where, depth + 1)

    walk(schema, [], 0)
    return found


def _unknown_keys(error, root_schema: Mapping) -> list[tuple[list, str]]:
    """One (path, reason) per key that additionalProperties: false rejects."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    props = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    extras = [k for k in instance if k not in props and not any(re.search(p, str(k)) for p in patterns)]
    out = []
    section = [("proxy_defaults" if p == "proxies" else p) for p in list(error.absolute_path)[:1]]
    for key in extras:
        reason = f"unknown key {key!r}"
        moved = MOVED.get(".".join([*section, str(key)]))
        if moved:
            out.append(([*error.absolute_path, key], f"{reason}: it moved to {moved}"))
            continue
        names = [p for p in props if isinstance(p, str)]
        close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.6)
        if not close:
            close = [p for p in names if p.lower() == str(key).lower()]
        if close:
            reason += "; did you mean " + " or ".join(map(repr, close)) + "?"
        else:
            elsewhere = _valid_keys_elsewhere(root_schema, str(key))
            here = key_path(error.absolute_path) if error.absolute_path else "the top level"
            elsewhere = [w for w in elsewhere if w != here]
            if elsewhere:
                reason += f"; it is a setting of {', '.join(elsewhere[:3])}, not of {here}"
        valid = ", ".join(names)
        if patterns:
            valid += (", or " if valid else "") + "keys matching " + ", ".join(patterns)
        if valid:
            reason += (" " if close else "; ") + f"valid keys here: {valid}"
        out.append(([*error.absolute_path, key], reason))
    return out


def _problems(error, root_schema: Mapping) -> list[tuple[list, str]]:
    """(path, one-line reason) for one jsonschema error, descending into oneOf/anyOf."""
    path = list(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.schema, Mapping) \
            and error.schema.get("additionalProperties") is False:
        found = _unknown_keys(error, root_schema)
        if found:
            return found
    if kind == "required":
        missing = re.match(r"^'(.*)' is a required property$", error.message)
        if missing:
            return [([*path, missing.group(1)], "required key missing")]
    if kind in ("oneOf", "anyOf") and error.context:
        from jsonschema.exceptions import best_match

        deeper = [e for e in error.context if len(e.absolute_path) > len(path)]
        if deeper:  # a branch of the right type failed inside: that is the relevant error
            return _problems(best_match(deeper), root_schema)
        words = [_describe(branch) for branch in error.validator_value]
        if all(words):
            return [(path, f"{_value(error.instance)} is not valid here; expected {' or '.join(words)}")]
        return _problems(best_match(error.context), root_schema)
    if "propertyNames" in error.schema_path:  # the instance is the offending key itself
        rule = NAME_RULE if error.validator == "pattern" and error.validator_value == NAME_PATTERN \
            else _describe_not(error)
        return [([*path, error.instance], f"the name {_value(error.instance)} is not allowed here ({rule})")]
    if kind == "pattern" and error.validator_value == NAME_PATTERN:
        return [(path, f"{_value(error.instance)} is not allowed here ({NAME_RULE})")]
    return [(path, _compact(error.message, error.instance))]


def _describe_not(error) -> str:
    value = error.validator_value
    if error.validator == "not" and isinstance(value, Mapping) and "pattern" in value:
        return f"it must not match {value['pattern']!r}"
    return _compact(error.message, error.instance)


def _source(path: Sequence, sources: Sequence[tuple[str, Any]]) -> str | None:
    """The last config source (file, or --config) that sets ``path`` or its deepest existing parent."""
    best, depth = None, 0
    for name, data in sources:
        node, d = data, 0
        for part in path:
            if isinstance(node, Mapping) and part in node:
                node, d = node[part], d + 1
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node, d = node[part], d + 1
            else:
                break
        if d and d >= depth:
            best, depth = name, d
    return best


def config_problems(config: Mapping, schema: Mapping) -> list[tuple[list, str]]:
    """Every problem of ``config`` against ``schema`` as (key path, reason), in the config's order."""
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    validator = cls(schema)
    problems: list[tuple[list, str]] = []
    for error in validator.iter_errors(config):
        problems.extend(_problems(error, schema))
    return sorted(problems, key=lambda problem: _position(config, problem[0]))


def _position(config: Any, path: Sequence) -> list[int]:
    """Where ``path`` is in ``config`` (the order of its keys; a missing key after its siblings)."""
    out, node = [], config
    for part in path:
        if isinstance(node, Mapping):
            keys = list(node)
            out.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if 0 <= part < len(node) else None
        else:
            out.append(0)
            node = None
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key twice in one mapping (PyYAML keeps the last one in silence: a
    second ``teacher:`` section replaced the first)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the schema reports it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key `{key}` appears twice (first at line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def duplicate_keys(configfiles: Sequence[str | os.PathLike]) -> list[str]:
    """``file:line: key `teacher` appears twice (first at line N)``, one per file that has such a key."""
    out = []
    for file in configfiles:
        try:
            text = Path(file).read_text()
        except OSError:
            continue  # Snakemake reports a missing file itself
        try:
            yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
        except yaml.constructor.ConstructorError as err:
            if err.problem and "appears twice" in err.problem:
                out.append(f"{file}:{err.problem_mark.line + 1}: {err.problem}")
        except yaml.YAMLError:
            continue  # Snakemake reports a syntax error itself
    return out


def results_problem(results: Any, anywhere: bool = False, cwd: str | os.PathLike | None = None) -> str | None:
    """Why ``results`` may not receive the workflow's outputs, or None: it must be a folder below or beside
    the working directory (not '', '.', '/', the working directory's parent, nor a path outside that
    parent), since jobs replace folders under it; ``results_anywhere: true`` lifts the rule."""
    if not isinstance(results, str):
        return None  # the schema reports the type
    if not results.strip():
        return "is empty; name a folder, e.g. results"
    cwd = os.path.abspath(cwd or os.getcwd())
    path = os.path.normpath(os.path.join(cwd, results))
    if path == os.path.dirname(path):
        return f"{results!r} is the file-system root; name a folder, e.g. results"
    if anywhere:
        return None
    parent = os.path.dirname(cwd)
    if path == cwd or not path.startswith(parent.rstrip(os.sep) + os.sep):
        return (f"{results!r} is {'the working directory' if path == cwd else path}, not a folder below or "
                "beside the working directory: outputs and the folders the jobs replace would be written there. "
                "Use e.g. results or ../results-run2, or set results_anywhere: true if you mean it")
    return None


def check_config(config: Mapping, schema: Mapping | str | os.PathLike,
                 configfiles: Sequence[str | os.PathLike] = (), overrides: Mapping | None = None,
                 limit: int = MAX_PROBLEMS, cwd: str | os.PathLike | None = None) -> None:
    """Raise :class:`ConfigError` naming each problem of ``config`` (at most ``limit``) if it breaks the schema,
    if a config file sets a key twice (:func:`duplicate_keys`) or if ``results`` is no place for outputs
    (:func:`results_problem`, relative to ``cwd``, default the working directory).

    ``configfiles`` (in the order Snakemake merged them) and ``overrides`` (``--config``) also serve to say
    which one set a wrong value. ``config`` is not modified (defaults are not filled in).
    """
    if not isinstance(schema, Mapping):
        schema = load_schema(schema)
    problems = config_problems(config, schema)
    if isinstance(config, Mapping) and "results" in config:
        why = results_problem(config["results"], config.get("results_anywhere") is True, cwd)
        if why:
            problems.insert(0, (["results"], why))
    duplicates = duplicate_keys(configfiles)
    if not problems and not duplicates:
        return
    sources: list[tuple[str, Any]] = []
    for file in configfiles:
        try:
            sources.append((str(file), yaml.safe_load(Path(file).read_text())))
        except Exception:  # noqa: BLE001 - only used to point at the file; Snakemake has read it already
            continue
    if overrides:
        sources.append(("--config", overrides))
    lines = list(duplicates)
    for path, reason in problems[:limit]:
        where = _source(path, sources) if len(sources) > 1 else None
        line = f"{key_path(path)}: {reason}" + (f" (set in {where})" if where else "")
        lines.append(textwrap.fill(line, width=110, subsequent_indent="      ", break_on_hyphens=False,
                                   break_long_words=False))
    named = [str(f) for f in configfiles] + (["--config"] if overrides else [])
    raise ConfigError(lines, total=len(problems) + len(duplicates), sources=named)
