#!/usr/bin/env python3
"""Write docs/configuration.md, the configuration reference, from workflow/schemas/config.schema.yaml.

Every key path of the schema gets one row: its type (with the schema's bounds and choices), its default
and its description. Entries keyed by a name of your choice (`corpora.<name>`, `proxies.<name>`,
`mixes.<name>`, a corpus's `splits.<split>`) appear with that placeholder in the path. The output depends
on the schema only (keys in the schema's order), so it is the same on every machine.

    python docs/config_reference.py            # rewrite docs/configuration.md
    python docs/config_reference.py --check    # exit 1 if docs/configuration.md is out of date
    python docs/config_reference.py --stdout   # print it

tests/workflow/test_docs.py fails when the committed page differs from what this script writes: after changing the
schema, run it and commit docs/configuration.md with the schema.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
OUTPUT = REPO / "docs" / "configuration.md"

#: Placeholder in key paths for the entries of a map keyed by a name of the user's choice.
PLACEHOLDERS = {"splits": "<split>"}


# ---------------------------------------------------------------------------------------------- values


def value(v) -> str:
    """A YAML-like rendering of a default or a choice: null, true, 2.0, [a, b], {k: v}."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return v if v and re.fullmatch(r"[\w./{}<>@+-]+", v) and v not in ("no", "yes", "on", "off") \
            else '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{value(k)}: {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot render {v!r}")


def code(v) -> str:
    return "`" + value(v) + "`"


def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def distinct(values: list) -> list:
    """Drop repeats that only differ in spelling (the schema lists 2 and 2.0 for YAML's sake)."""
    out: list = []
    for v in values:
        if not any(same(v, u) for u in out):
            out.append(v)
    return out


def number(v) -> str:
    return repr(v)


# ----------------------------------------------------------------------------------------------- types


def resolve(node: dict, schema: dict) -> dict:
    """``node`` with a local ``$ref`` merged in (the node's own keys win, as for its description)."""
    ref = node.get("$ref")
    if not ref:
        return node
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported: {ref}")
    target = schema
    for part in ref[2:].split("/"):
        target = target[part]
    merged = dict(resolve(target, schema))
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def bounds(node: dict) -> list[str]:
    out = []
    if "minimum" in node:
        out.append(f"≥ {number(node['minimum'])}")
    if "exclusiveMinimum" in node:
        out.append(f"> {number(node['exclusiveMinimum'])}")
    if "maximum" in node:
        out.append(f"≤ {number(node['maximum'])}")
    if "exclusiveMaximum" in node:
        out.append(f"< {number(node['exclusiveMaximum'])}")
    if "pattern" in node:
        out.append(f"matching `{node['pattern']}`")
    if "minProperties" in node:
        n = node["minProperties"]
        out.append(f"at least {n} entr{'y' if n == 1 else 'ies'}")
    names = node.get("propertyNames")
    if isinstance(names, dict) and isinstance(names.get("not"), dict) and "pattern" in names["not"]:
        out.append(f"names not matching `{names['not']['pattern']}`")
    return out


def type_of(node: dict, schema: dict) -> str:
    """The type of a schema node in words: ``integer ≥ 1``, ``one of `a`, `b```, ``array of 2 numbers``."""
    node = resolve(node, schema)
    if "const" in node:
        return code(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(code(v) for v in distinct(node["enum"]))
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(type_of(alt, schema) for alt in node.get("oneOf", node.get("anyOf")))
    kinds = node.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = []
    for kind in kinds:
        if kind == "array":
            words.append(array_type(node, schema))
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict) \
                and not node.get("properties"):
            words.append("map of name → " + type_of(node["additionalProperties"], schema))
        else:
            words.append(kind)
    text = " or ".join(words) if words else "any"
    limits = bounds(node)
    if limits:
        text += " (" + ", ".join(limits) + ")"
    return text


def array_type(node: dict, schema: dict) -> str:
    lo, hi = node.get("minItems"), node.get("maxItems")
    if lo is not None and lo == hi:
        count = f"{lo} "
    elif lo is not None and hi is not None:
        count = f"{lo}–{hi} "
    elif lo is not None:
        count = f"≥ {lo} "
    else:
        count = ""
    items = node.get("items")
    if not items:
        return f"array of {count}items".replace("  ", " ")
    return f"array of {count}({type_of(items, schema)})"


# ------------------------------------------------------------------------------------------------ rows


def cell(text: str) -> str:
    """One table cell on one line. Outside code spans, the characters Markdown would take for markup are
    escaped (`<split>` would be swallowed as an HTML tag); inside them only `|`, which ends a table cell."""
    parts = " ".join(str(text).split()).split("`")
    for i, part in enumerate(parts):
        part = part.replace("|", "\\|")
        if i % 2 == 0:
            part = part.replace("<", "&lt;").replace("*", "\\*")
        parts[i] = part
    return "`".join(parts)


def code_default(path: str):
    """The default of a key of a settings section, from its class in proxyseg.settings (their one home),
    or ``NO_DEFAULT``; a proxy entry's keys default to ``proxy_defaults``."""
    from proxyseg import settings as S

    head, *rest = path.split(".")
    if path.startswith("mixes.<name>."):
        head, rest = "mixes.<name>", rest[1:]
    obj = {**S.SECTIONS, S.Mix.SECTION: S.Mix}[head]() if head in S.SECTIONS or head == S.Mix.SECTION else None
    for key in rest:
        if obj is None or key not in obj.keys():
            return NO_DEFAULT
        obj = obj[key]
    return NO_DEFAULT if hasattr(obj, "as_dict") else obj  # a nested section: its keys have rows


NO_DEFAULT = object()


def rows(path: str, node: dict, schema: dict, required: bool = False) -> list[tuple[str, str, str, str]]:
    """``(path, type, default, description)`` for ``node`` and every key under it, in schema order."""
    node = resolve(node, schema)
    from_code = code_default(path) if "." in path else NO_DEFAULT
    if from_code is not NO_DEFAULT:
        default = code(from_code)
    elif path.startswith("proxies.<name>.") and path.count(".") == 2:
        default = "`proxy_defaults`"
    else:
        default = code(node["default"]) if "default" in node else ("required" if required else "—")
    description = cell(node.get("description", ""))
    out = [(path, cell(type_of(node, schema)), cell(default), description)]
    need = set(node.get("required", []))
    for key, child in (node.get("properties") or {}).items():
        out += rows(f"{path}.{key}", child, schema, key in need)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and node.get("properties") is None:
        extra = resolve(extra, schema)
        if extra.get("properties"):
            leaf = path.rsplit(".", 1)[-1]
            name = PLACEHOLDERS.get(leaf, "<name>")
            need = set(extra.get("required", []))
            # the map's entries: one row for the entry itself, then its keys
            entry = dict(extra)
            entry.pop("properties")
            entry_type = cell(type_of(entry, schema))
            out.append((f"{path}.{name}", entry_type, "—", cell(extra.get("description", ""))))
            for key, child in extra["properties"].items():
                out += rows(f"{path}.{name}.{key}", child, schema, key in need)
    return out


def table(items: list[tuple[str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | description |", "|:--|:--|:--|:--|"]
    lines += [f"| `{p}` | {t} | {d} | {s} |" for p, t, d, s in items]
    return lines


# ---------------------------------------------------------------------------------------------- render


def render(schema_path: Path = SCHEMA) -> str:
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    props = schema["properties"]
    need = set(schema.get("required", []))
    sections = [k for k, v in props.items() if resolve(v, schema).get("type") == "object"]
    scalars = [k for k in props if k not in sections]
    out = [
        "<!-- Generated by docs/config_reference.py from workflow/schemas/config.schema.yaml and the defaults of",
        "     src/proxyseg/settings.py: do not edit; run `python docs/config_reference.py` after changing either",
        "     (tests/workflow/test_docs.py checks). -->",
        "",
        "# Configuration reference",
        "",
        cell(schema.get("description", "")),
        "",
        "A config file (`config.yaml`, or the one given with `--configfile`) is checked against this schema",
        "before any job runs; a key it leaves out takes the default below (the one home of each default is its",
        "settings class in `src/proxyseg/settings.py`). `<name>` and `<split>` in a path",
        "stand for a name of your choice. Types: `≥`, `>`, `≤`, `<` are the schema's bounds. How the",
        "settings are used: [usage.md](usage.md#configuration); what they compute: [method.md](method.md).",
        "",
        "Sections: " + ", ".join(f"[`{k}`](#{slug(k)})" for k in sections) + ".",
        "",
        "## Top-level keys",
        "",
    ]
    out += table([r for k in scalars for r in rows(k, props[k], schema, k in need)]
                 + [(k, cell(type_of(props[k], schema)), cell(code(resolve(props[k], schema)["default"]))
                     if "default" in resolve(props[k], schema) else ("required" if k in need else "—"),
                     f"see [`{k}`](#{slug(k)})") for k in sections])
    for k in sections:
        node = resolve(props[k], schema)
        out += ["", f"## {k}", ""]
        if node.get("description"):
            out += [cell(node["description"]), ""]
        out += table(rows(k, node, schema, k in need)[1:])
    return "\n".join(out) + "\n"


SCHEMA_KEYWORDS = {"$schema", "$defs", "$ref", "type", "default", "description", "enum", "const", "oneOf",
                   "anyOf", "not", "properties", "additionalProperties", "items", "minItems", "maxItems",
                   "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "required",
                   "minProperties", "propertyNames"}


def stray_keys(node, path: str = "", in_schema: bool = True) -> list[str]:
    """Keys of schema nodes that are no JSON-schema keyword this page knows: in a YAML flow mapping an
    unquoted description ends at its first comma, and the rest becomes such a key."""
    out: list[str] = []
    if isinstance(node, dict):
        for key, child in node.items():
            if not in_schema:
                out += stray_keys(child, f"{path}.{key}", True)
            elif key in ("properties", "$defs"):
                out += stray_keys(child, path, False)
            elif key != "default":
                if key not in SCHEMA_KEYWORDS:
                    out.append(f"{path.lstrip('.')}: {key!r}")
                out += stray_keys(child, path, True)
    elif isinstance(node, list):
        for child in node:
            out += stray_keys(child, path, True)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    ap.add_argument("--stdout", action="store_true", help="print the page instead of writing it")
    ap.add_argument("--schema", type=Path, default=SCHEMA)
    ap.add_argument("--output", type=Path, default=OUTPUT)
    args = ap.parse_args(argv)
    for stray in stray_keys(yaml.safe_load(args.schema.read_text(encoding="utf-8"))):
        print(f"warning: {args.schema.name}: {stray} is no schema keyword (a description cut at a comma? "
              "quote it)", file=sys.stderr)
    text = render(args.schema)
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python docs/config_reference.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
