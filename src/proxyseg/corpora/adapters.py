"""Corpus layouts on disk -> one description per split that label harmonisation consumes.

Users point the workflow at corpora as they have them (AragonRadio, DIHARD III's LDC release, any folder
of audio with RTTM, a pyannote.database protocol); each *adapter* here knows one layout and turns a
corpus entry of the config into a :class:`SplitSource`: the split's URIs, the audio of each, the RTTM and
UEM files to read, the per-file domain where the corpus has one, whether the RTTM name field holds
classes or speakers, and which classes the corpus annotates. ``harmonise`` then maps that to the four
classes. Resolving only reads small index files (lists, tables, YAML), so Snakemake calls it at parse
time to stop at once, naming the missing file, before any job runs.

This module depends on the standard library, PyYAML and the RTTM/list readers only: the Snakefile
imports it.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from proxyseg.core.errors import InputError
from proxyseg.core.rttm import read_list_lines, read_rttm, read_text, read_uem_lines, text_lines

log = logging.getLogger(__name__)

CLASS_NAMES = ("speech", "noise", "music", "overlap")  # == frames.CLASSES (not imported: keeps numpy out)
LABEL_KINDS = ("classes", "speakers")
UNLISTED = ("error", "warn")  # what an RTTM URI in no split of the corpus is

#: adapter name -> (label kind or None when chosen in config, one-line description of the layout)
ADAPTERS = {
    "aragon": ("classes", "AragonRadio: audio, RTTM with the class in the name field (sp, mu, no), list files "
                          "per split; overlapped speech not annotated"),
    "dihard": ("speakers", "DIHARD III LDC release: data/flac, data/rttm, data/uem*, docs/recordings.tbl; "
                           "speech and overlap from the speaker turns, domains kept, official UEMs scored"),
    "generic": (None, "any folder of audio with RTTM (speaker turns or class labels, `labels:` in config), "
                      "optional UEM and list files"),
    "pyannote": (None, "a pyannote.database database.yml protocol (subsets with uri/annotation/annotated files)"),
}
#: former adapter names, kept so existing configs work: both are the generic layout
ALIASES = {"class_rttm": "classes", "speaker_rttm": "speakers"}

ARAGON_LABEL_MAP = {"sp": "speech", "mu": "music", "no": "noise"}
ARAGON_DEFAULTS = {"audio": "audio/{uri}.wav", "list": "lists/{split}.lst", "rttm": "rttm/{split}.rttm"}

DIHARD_PARTITIONS = ("core", "full")
DIHARD_AUDIO = "data/flac/{uri}.flac"
DIHARD_RTTM = "data/rttm/{uri}.rttm"
#: where the official scoring UEM of a partition lies in the LDC releases (first found is used)
DIHARD_UEMS = ("data/uem_scoring/{partition}/all.uem", "data/uem/{partition}/all.uem", "data/uem/{partition}.uem")
DIHARD_TABLE = "docs/recordings.tbl"

PYANNOTE_SUBSETS = {"dev": "development"}  # our split name -> pyannote subset, where they differ

_LAYOUT_HINT = {
    "aragon": "the AragonRadio folder holding audio/<uri>.wav, rttm/<split>.rttm (name field sp/mu/no) and "
              "lists/<split>.lst (or set audio/list/rttm of the corpus and its splits)",
    "dihard": "a DIHARD III LDC release folder (LDC2020E12 dev or LDC2021E02 eval) holding data/flac/<uri>.flac, "
              "data/rttm/<uri>.rttm, data/uem_scoring/{core,full}/all.uem and docs/recordings.tbl",
    "generic": "the corpus folder that the relative audio/list/rttm/uem paths of this corpus start from",
    "pyannote": "the folder of the database.yml",
}


@dataclass
class SplitSource:
    """Everything harmonisation needs about one split, with every path resolved."""

    corpus: str
    split: str
    adapter: str
    labels: str                              # "classes" (name field = class) or "speakers" (speaker turns)
    label_map: dict[str, str | None]         # classes only: native label -> class or None (dropped)
    annotated: set[str]
    uris: list[str]
    audio: dict[str, Path]
    rttm: list[Path]                         # files to read; each may hold several URIs
    uem: list[Path] | None                   # None: whole files are scored
    domains: dict[str, str] | None = None
    #: uri -> where it was listed, for every URI the split's index names (also those `portion` leaves out)
    origin: dict[str, tuple[Path, int | None]] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)  # every index/annotation file read
    rttm_owner: dict[Path, str] = field(default_factory=dict)  # one-RTTM-per-recording layouts: file -> URI

    def where(self, uri: str) -> tuple[Path | None, int | None]:
        return self.origin.get(uri, (None, None))


# ----------------------------------------------------------------------------------------------- helpers


def _err(corpus: str, split: str | None, message: str, path=None, line=None) -> InputError:
    where = f"corpus {corpus!r}" + (f", split {split!r}" if split else "")
    return InputError(path, f"{where}: {message}", line=line)


def _base(spec: dict, split_spec: dict) -> Path | None:
    root = split_spec.get("root") or spec.get("root")
    return Path(root) if root else None


def _path(base: Path | None, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() or base is None else base / path


def _need_root(corpus, split, adapter, base: Path | None) -> Path:
    if base is None:
        raise _err(corpus, split, f"the {adapter} adapter needs `root`: {_LAYOUT_HINT[adapter]}")
    if not base.is_dir():
        raise _err(corpus, split, f"root folder not found; it should be {_LAYOUT_HINT[adapter]}", path=base)
    return base


def _is_template(value: str) -> bool:
    return "{uri}" in value


def _check_template(corpus, split, key: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise _err(corpus, split, f"`{key}` must be a path")
    try:
        value.format(uri="x", split="x", partition="x")
    except (KeyError, IndexError, ValueError):
        raise _err(corpus, split, f"`{key}` {value!r} may only use the placeholders {{uri}}, {{split}}"
                                  ", {partition}") from None
    return value


def read_table(path: Path, need: tuple[str, ...], what: str) -> list[dict[str, str]]:
    """Rows of a table with a header line (tab- or whitespace-separated), requiring the ``need`` columns.

    Used for DIHARD's ``docs/recordings.tbl`` (``uri``, ``in_core``, ``lang``, ``domain``, ``source``, ...)
    and for the generic adapter's optional domain table (``uri``, ``domain``).
    """
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    rows: list[dict[str, str]] = []
    lines = [(n, raw.rstrip("\r\n")) for n, raw in text_lines(path, what)]
    lines = [(n, text) for n, text in lines if text.strip() and not text.lstrip().startswith("#")]
    if not lines:
        raise InputError(path, f"{what} is empty; expected a header line naming the columns {list(need)}")
    split = (lambda s: s.split("\t")) if "\t" in lines[0][1] else (lambda s: s.split())
    header = [h.strip() for h in split(lines[0][1])]
    missing = [c for c in need if c not in header]
    if missing:
        raise InputError(path, f"{what}: header {header} lacks the column(s) {missing}", line=lines[0][0])
    for n, text in lines[1:]:
        cells = [c.strip() for c in split(text)]
        if len(cells) != len(header):
            raise InputError(path, f"{what}: {len(cells)} fields, the header has {len(header)}", line=n)
        row = dict(zip(header, cells))
        row["_line"] = str(n)
        rows.append(row)
    return rows


def read_domains(path: Path) -> dict[str, str]:
    """URI -> domain from a table with ``uri`` and ``domain`` columns (header line first)."""
    rows = read_table(path, ("uri", "domain"), "domain table")
    _no_duplicates(path, [(r["uri"], int(r["_line"])) for r in rows])
    return {r["uri"]: r["domain"] for r in rows}


def _no_duplicates(path: Path, uris: list[tuple[str, int]]) -> None:
    """A URI given twice would be harmonised twice (or take the last of two values): name both lines."""
    first: dict[str, int] = {}
    for uri, line in uris:
        if uri in first:
            raise InputError(path, f"URI {uri!r} is on lines {first[uri]} and {line}; each file must appear once",
                             line=line)
        first[uri] = line


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot name output files (``probs/<uri>.h5``, HDF5 datasets, ...), or None if it can."""
    for sep in ("/", "\\"):
        if sep in uri:
            return f"contains '{sep}' (a path, not a file name)"
    if uri.startswith("."):
        return "starts with '.' (a hidden file, or a parent folder '..')"
    if any(c.isspace() for c in uri):
        return "contains whitespace"
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in uri):
        return "contains a control character"
    return None


def _select_portion(corpus, split, uris: list[str], domains: dict[str, str] | None, portion) -> list[str]:
    """Files whose rank within their domain (in listed order) falls in [a, b) of the domain's count.

    Complementary portions ([0, 0.8] and [0.8, 1]) split a release into disjoint, domain-stratified parts
    deterministically, without writing list files.
    """
    if portion is None:
        return uris
    if (not isinstance(portion, (list, tuple)) or len(portion) != 2
            or not all(isinstance(v, (int, float)) for v in portion) or not 0 <= portion[0] < portion[1] <= 1):
        raise _err(corpus, split, f"`portion` must be [a, b] with 0 <= a < b <= 1, got {portion!r}")
    groups: dict[str, list[str]] = {}
    for uri in uris:
        groups.setdefault((domains or {}).get(uri, ""), []).append(uri)
    keep = set()
    for members in groups.values():
        n = len(members)
        keep.update(members[math.floor(portion[0] * n + 1e-9):math.floor(portion[1] * n + 1e-9)])
    chosen = [u for u in uris if u in keep]
    if not chosen:
        raise _err(corpus, split, f"`portion` {list(portion)} selects no file of {len(uris)}")
    return chosen


def _annotated(corpus, spec: dict, labels: str, label_map: dict) -> set[str]:
    if spec.get("annotated"):
        bad = set(spec["annotated"]) - set(CLASS_NAMES)
        if bad:
            raise _err(corpus, None, f"`annotated` names unknown classes {sorted(bad)}; use {list(CLASS_NAMES)}")
        return set(spec["annotated"])
    if labels == "speakers":
        return {"speech", "overlap"}
    return {v for v in label_map.values() if v is not None}


def _label_map(corpus, spec: dict, labels: str, default: dict[str, str]) -> dict[str, str | None]:
    label_map = dict(spec.get("label_map") or default)
    for key, value in label_map.items():
        if not isinstance(key, str):
            raise _err(corpus, None, f"label_map key {key!r} is not a string; YAML reads bare no/yes/on/off as "
                                     "booleans, so quote the label (\"no\": noise)")
        if value is not None and value not in CLASS_NAMES:
            raise _err(corpus, None, f"label_map maps {key!r} to unknown class {value!r}; use "
                                     f"{list(CLASS_NAMES)} or null")
    if labels == "speakers" and spec.get("label_map"):
        raise _err(corpus, None, "label_map applies to class labels; speaker-turn corpora derive speech and "
                                 "overlap from the turns (remove label_map or set labels: classes)")
    return label_map


def _uris_from(corpus, split, base, split_spec, rttm_value, uem_value, audio_value):
    """The split's URIs and where each was listed: list file, else UEM, else RTTM, else the audio folder."""
    if split_spec.get("list"):
        path = _path(base, _check_template(corpus, split, "list", split_spec["list"]).format(split=split))
        lines = read_list_lines(path)
        if not lines:
            raise InputError(path, "list file names no URI; a split needs at least one file")
        return list(lines), {u: (path, n) for u, n in lines.items()}, [path]
    if uem_value and not _is_template(uem_value):
        path = _path(base, uem_value)
        regions = read_uem_lines(path)
        return list(regions), {u: (path, spans[0][2]) for u, spans in regions.items()}, []
    if rttm_value and not _is_template(rttm_value):
        path = _path(base, rttm_value)
        segments = read_rttm(path)
        return list(segments), {u: (path, segs[0].line) for u, segs in segments.items()}, []
    pattern = str(_path(base, audio_value))
    regex = re.compile("^" + re.escape(pattern).replace(re.escape("{uri}"), "(?P<uri>[^/]+)") + "$")
    found = sorted(m.group("uri") for p in glob.glob(pattern.replace("{uri}", "*"))
                   if (m := regex.match(p)))
    if not found:
        raise _err(corpus, split, f"no `list` given and no audio file matches {pattern}")
    return found, {u: (Path(pattern.replace("{uri}", u)), None) for u in found}, []


# ----------------------------------------------------------------------------------------------- adapters


def _files_layout(corpus, split, spec, adapter, labels, label_map_default, defaults) -> SplitSource:
    """aragon and generic: audio template, per split a list (optional), an RTTM and an optional UEM.

    RTTM and UEM paths are one file for the split, or a template with ``{uri}`` (one file per recording).
    """
    split_spec = spec["splits"][split] or {}
    base = _base(spec, split_spec)
    if adapter == "aragon":
        _need_root(corpus, split, adapter, base)
    elif base is not None and not base.is_dir():
        raise _err(corpus, split, f"root folder not found; it should be {_LAYOUT_HINT[adapter]}", path=base)
    audio = spec.get("audio") or defaults.get("audio")
    if not audio:
        raise _err(corpus, split, "`audio` is required: the path template of a file's audio with {uri}")
    audio = _check_template(corpus, split, "audio", audio)
    if not _is_template(audio):
        raise _err(corpus, split, f"`audio` {audio!r} must contain {{uri}}")
    split_spec = {**({"list": defaults["list"]} if "list" in defaults else {}), **split_spec}
    rttm = split_spec.get("rttm") or defaults.get("rttm")
    if not rttm:
        raise _err(corpus, split, "`rttm` is required: the split's RTTM file, or a template with {uri}")
    rttm = _check_template(corpus, split, "rttm", rttm).replace("{split}", split)
    uem = split_spec.get("uem")
    uem = _check_template(corpus, split, "uem", uem).replace("{split}", split) if uem else None
    label_map = _label_map(corpus, spec, labels, label_map_default)
    domains_path = _path(base, spec["domains"]) if spec.get("domains") else None
    domains = read_domains(domains_path) if domains_path else None

    uris, origin, inputs = _uris_from(corpus, split, base, split_spec, rttm, uem, audio)
    uris = _select_portion(corpus, split, uris, domains, split_spec.get("portion"))
    owner = {_path(base, rttm.format(uri=u)): u for u in uris} if _is_template(rttm) else {}
    rttm_files = list(owner) if owner else [_path(base, rttm)]
    uem_files = None
    if uem:
        uem_files = [_path(base, uem.format(uri=u)) for u in uris] if _is_template(uem) else [_path(base, uem)]
    if domains is not None:
        missing = [u for u in uris if u not in domains]
        if missing:
            raise _err(corpus, split, f"the domain table has no row for {missing[:5]}", path=domains_path)
        inputs.append(domains_path)
    return SplitSource(
        corpus=corpus, split=split, adapter=adapter, labels=labels, label_map=label_map,
        annotated=_annotated(corpus, spec, labels, label_map), uris=uris,
        audio={u: _path(base, audio.format(uri=u)) for u in uris}, rttm=rttm_files, uem=uem_files,
        domains={u: domains[u] for u in uris} if domains is not None else None, origin=origin,
        inputs=inputs + rttm_files + (uem_files or []), rttm_owner=owner)


def _aragon(corpus, split, spec) -> SplitSource:
    return _files_layout(corpus, split, spec, "aragon", "classes", ARAGON_LABEL_MAP, ARAGON_DEFAULTS)


def _generic(corpus, split, spec) -> SplitSource:
    adapter = spec["adapter"]
    labels = ALIASES.get(adapter) or spec.get("labels")
    if labels not in LABEL_KINDS:
        raise _err(corpus, None, f"the generic adapter needs `labels`: `speakers` (RTTM name field = speaker, "
                                 "speech and overlap derived) or `classes` (name field = class, see label_map)")
    identity = {c: c for c in CLASS_NAMES} if labels == "classes" else {}
    return _files_layout(corpus, split, spec, "generic", labels, identity, {})


def _dihard(corpus, split, spec) -> SplitSource:
    """DIHARD III: URIs and domains from docs/recordings.tbl (core partition: rows with in_core True)."""
    split_spec = spec["splits"][split] or {}
    root = _need_root(corpus, split, "dihard", _base(spec, split_spec))
    partition = spec.get("partition", "core")
    if partition not in DIHARD_PARTITIONS:
        raise _err(corpus, None, f"`partition` must be one of {list(DIHARD_PARTITIONS)}, got {partition!r}")
    table_path = root / DIHARD_TABLE
    if not table_path.is_file():
        raise _err(corpus, split, "DIHARD III table of recordings not found; it should list every recording "
                                  "(tab-separated, header `uri in_core lang domain source ...`)", path=table_path)
    need = ("uri", "domain") + (("in_core",) if partition == "core" else ())
    rows = read_table(table_path, need, "DIHARD recordings table")
    if partition == "core":
        for r in rows:
            if r["in_core"] not in ("True", "False"):
                raise InputError(table_path, f"in_core must be True or False, got {r['in_core']!r}",
                                 line=int(r["_line"]))
        rows = [r for r in rows if r["in_core"] == "True"]
    _no_duplicates(table_path, [(r["uri"], int(r["_line"])) for r in rows])
    rows.sort(key=lambda r: r["uri"])
    domains = {r["uri"]: r["domain"] for r in rows}
    origin = {r["uri"]: (table_path, int(r["_line"])) for r in rows}
    uris = [r["uri"] for r in rows]
    inputs = [table_path]
    if split_spec.get("list"):
        list_path = _path(root, split_spec["list"])
        lines = read_list_lines(list_path)
        unknown = [u for u in lines if u not in domains]
        if unknown:
            raise InputError(list_path, f"{unknown[0]} is not a {partition}-partition recording of {table_path}",
                             line=lines[unknown[0]])
        uris = list(lines)
        inputs.append(list_path)
    uris = _select_portion(corpus, split, uris, domains, split_spec.get("portion"))
    if not uris:
        raise _err(corpus, split, f"no recording of the {partition} partition", path=table_path)
    for sub in ("data/flac", "data/rttm"):
        if not (root / sub).is_dir():
            raise _err(corpus, split, f"folder {sub}/ not found; it should hold one "
                                      f"{'FLAC' if 'flac' in sub else 'RTTM'} file per recording", path=root / sub)
    templates = [spec["uem"]] if spec.get("uem") else list(DIHARD_UEMS)
    candidates = [_path(root, t.replace("{partition}", partition)) for t in templates]
    uem = next((p for p in candidates if p.is_file()), None)
    if uem is None:
        raise _err(corpus, split, f"no scoring UEM for the {partition} partition; expected one of "
                                  f"{[str(p) for p in candidates]} (the release's official UEM, `uri channel "
                                  "start end` per line), or set `uem`", path=candidates[0])
    rttm = [root / DIHARD_RTTM.format(uri=u) for u in uris]
    return SplitSource(
        corpus=corpus, split=split, adapter="dihard", labels="speakers", label_map={},
        annotated=_annotated(corpus, spec, "speakers", {}), uris=uris,
        audio={u: root / DIHARD_AUDIO.format(uri=u) for u in uris}, rttm=rttm, uem=[uem],
        domains={u: domains[u] for u in uris}, origin=origin, inputs=inputs + rttm + [uem],
        rttm_owner=dict(zip(rttm, uris)))


def _pyannote(corpus, split, spec) -> SplitSource:
    """A ``database.yml`` protocol, read with PyYAML (pyannote.database itself is not needed).

    ``Databases.<db>`` gives the audio template(s) (relative to the YAML's folder); the protocol's subset
    gives ``uri`` (list), ``annotation`` (RTTM), optional ``annotated`` (UEM) and optional ``domain`` (a
    ``uri domain`` mapping file).
    """
    import yaml

    split_spec = spec["splits"][split] or {}
    if not spec.get("database") or not spec.get("protocol"):
        raise _err(corpus, None, "the pyannote adapter needs `database` (path of database.yml) and `protocol` "
                                 "(Database.Task.Protocol)")
    yml = Path(spec["database"])
    if not yml.is_file():
        raise _err(corpus, split, "database.yml not found; it should define Databases (audio templates with "
                                  "{uri}) and Protocols (subsets with uri/annotation/annotated files)", path=yml)
    try:
        db = yaml.safe_load(read_text(yml, "database.yml")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise InputError(yml, f"not valid YAML ({exc})", line=None if line is None else line + 1) from None
    parts = str(spec["protocol"]).split(".")
    if len(parts) != 3:
        raise _err(corpus, None, f"`protocol` must be Database.Task.Protocol, got {spec['protocol']!r}")
    name, task, proto = parts
    if name == "X":
        raise _err(corpus, None, "meta-protocols (X.*) combine corpora; declare each corpus as its own entry "
                                 "of `corpora` instead")
    protocols = db.get("Protocols") if isinstance(db, dict) else None
    try:
        entry = protocols[name][task][proto]
    except (KeyError, TypeError):
        known = [f"{d}.{t}.{p}" for d, ts in (protocols or {}).items() if isinstance(ts, dict)
                 for t, ps in ts.items() if isinstance(ps, dict) for p in ps]
        raise InputError(yml, f"corpus {corpus!r}: protocol {spec['protocol']!r} not found under Protocols "
                              f"(found {known})") from None
    subset = split_spec.get("subset") or PYANNOTE_SUBSETS.get(split, split)
    files = entry.get(subset) if isinstance(entry, dict) else None
    if not isinstance(files, dict):
        raise InputError(yml, f"corpus {corpus!r}: protocol {spec['protocol']} has no subset {subset!r} "
                              f"(split {split!r}; set splits.{split}.subset)")
    base = yml.parent
    for key in ("uri", "annotation"):
        if not files.get(key):
            raise InputError(yml, f"corpus {corpus!r}: {spec['protocol']}.{subset} lacks `{key}` "
                                  "(uri: list file, annotation: RTTM)")
    audio = spec.get("audio")
    templates = [audio] if audio else db.get("Databases", {}).get(name)
    if isinstance(templates, str):
        templates = [templates]
    if not templates or not all(isinstance(t, str) and "{uri}" in t for t in templates):
        raise InputError(yml, f"corpus {corpus!r}: Databases.{name} must give the audio path template(s) "
                              "with {uri}")
    labels = spec.get("labels") or {"SpeakerDiarization": "speakers", "Segmentation": "classes"}.get(task)
    if labels not in LABEL_KINDS:
        raise _err(corpus, None, f"task {task!r}: set `labels` to speakers or classes")
    label_map = _label_map(corpus, spec, labels, {c: c for c in entry.get("classes", CLASS_NAMES)
                                                  if c in CLASS_NAMES} if labels == "classes" else {})
    list_path = _path(base, files["uri"])
    lines = read_list_lines(list_path)
    uris = list(lines)
    domains = None
    inputs = [yml, list_path]
    if files.get("domain"):
        map_path = _path(base, files["domain"])
        domains = _read_mapping(map_path)
        inputs.append(map_path)
    uris = _select_portion(corpus, split, uris, domains, split_spec.get("portion"))
    audio_paths = {}
    for uri in uris:
        paths = [_path(base, t.format(uri=uri)) for t in templates]
        audio_paths[uri] = next((p for p in paths if p.is_file()), paths[0])
    rttm = [_path(base, files["annotation"])]
    uem = [_path(base, files["annotated"])] if files.get("annotated") else None
    if domains is not None:
        missing = [u for u in uris if u not in domains]
        if missing:
            raise InputError(inputs[-1], f"no domain for {missing[:5]}")
    return SplitSource(
        corpus=corpus, split=split, adapter="pyannote", labels=labels, label_map=label_map,
        annotated=_annotated(corpus, spec, labels, label_map), uris=uris, audio=audio_paths, rttm=rttm, uem=uem,
        domains={u: domains[u] for u in uris} if domains is not None else None,
        origin={u: (list_path, n) for u, n in lines.items()}, inputs=inputs + rttm + (uem or []))


def _read_mapping(path: Path) -> dict[str, str]:
    """pyannote.database ``.map`` file: ``uri value`` per line."""
    if not path.is_file():
        raise InputError(path, "mapping file not found (expected `uri value` per line)")
    out, lines = {}, []
    for n, raw in text_lines(path, "mapping file"):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(path, f"expected `uri value`, got {raw.strip()!r}", line=n)
        out[fields[0]] = fields[1]
        lines.append((fields[0], n))
    _no_duplicates(path, lines)
    return out


_RESOLVERS = {"aragon": _aragon, "dihard": _dihard, "generic": _generic, "pyannote": _pyannote,
              "class_rttm": _generic, "speaker_rttm": _generic}


# ----------------------------------------------------------------------------------------------- public


def resolve_split(corpus: str, spec: dict, split: str) -> SplitSource:
    """Resolve one split of a corpus entry of the config; raises InputError naming the bad file or key."""
    adapter = spec.get("adapter")
    if adapter not in _RESOLVERS:
        raise _err(corpus, None, f"adapter {adapter!r} unknown; choose one of {sorted(ADAPTERS)}")
    splits = spec.get("splits") or {}
    if split not in splits:
        raise _err(corpus, None, f"no split {split!r} in config (has {sorted(splits)})")
    if splits[split] is not None and not isinstance(splits[split], dict):
        raise _err(corpus, split, "a split must be a mapping (list, rttm, uem, root, portion, subset)")
    if (spec.get("unlisted") or "error") not in UNLISTED:
        raise _err(corpus, None, f"`unlisted` must be error or warn, got {spec['unlisted']!r}")
    source = _RESOLVERS[adapter](corpus, split, spec)
    for uri in source.uris:
        problem = uri_problem(uri)
        if problem:
            path, line = source.where(uri)
            raise InputError(path, f"URI {uri!r} {problem}, but URIs name output files and HDF5 datasets: "
                                   f"rename the audio file {source.audio[uri]} to a plain name, and the URI "
                                   "here and in the RTTM/UEM", line=line)
    return source


def check_corpus(corpus: str, spec: dict) -> dict[str, SplitSource]:
    """Resolve every split and check that the files it names exist (audio is checked by harmonise)."""
    out = {}
    for split in spec.get("splits") or {}:
        source = resolve_split(corpus, spec, split)
        for path in source.inputs:
            if not Path(path).is_file():
                kind = {".rttm": "RTTM (speaker turns or class segments)", ".uem": "UEM (scored regions)"}.get(
                    Path(path).suffix, "annotation")
                raise _err(corpus, split, f"file not found; it should be the {kind} of the split's recordings; "
                                          f"the corpus root should be {_LAYOUT_HINT[source.adapter]}", path=path)
        out[split] = source
    return out


def read_segments(source: SplitSource, spec: dict | None = None) -> tuple[dict[str, list], dict[str, Path]]:
    """Segments per URI from the split's RTTM files, and the file each URI's segments came from.

    Checks the RTTM's URIs against the split's (see :func:`_check_segment_uris`); ``spec``, the corpus's
    entry of the config, gives the other splits, which may share the RTTM.
    """
    out: dict[str, list] = {}
    where: dict[str, Path] = {}
    for path in source.rttm:
        for uri, segments in read_rttm(path).items():
            owner = source.rttm_owner.get(path)
            if owner is not None and uri != owner:
                raise InputError(path, f"holds segments of {uri}, but this file is the RTTM of {owner}",
                                 line=segments[0].line)
            out.setdefault(uri, []).extend(segments)
            where[uri] = path
    _check_segment_uris(source, spec or {}, out, where)
    return out, where


def _check_segment_uris(source: SplitSource, spec: dict, segments: dict[str, list], where: dict[str, Path]):
    """An RTTM URI that no split lists, or a listed file without segments, is most likely a typo.

    Ignored, such a URI would leave its file labelled "no event" on every frame (negative, not unknown).
    Hence: a URI listed only in another spelling is an error; one in no split of the corpus is an error
    (a warning with ``unlisted: warn``); a listed file without any segment is a warning.
    """
    stray = [u for u in segments if u not in source.origin]
    others: dict[str, tuple[Path, int | None]] = {}
    for name in (spec.get("splits") or {}) if stray else ():
        if name != source.split:
            others.update(resolve_split(source.corpus, spec, name).origin)
    known = {**others, **source.origin}
    folded = {u.casefold(): u for u in [*others, *source.origin]}  # this split's spelling wins
    unlisted = []
    for uri in stray:
        if uri in others:
            continue
        listed = folded.get(uri.casefold())
        if listed is not None:
            path, line = known[listed]
            raise InputError(where[uri], f"URI {uri!r} is listed as {listed!r} ({path}{f':{line}' if line else ''})"
                                         "; URIs are case-sensitive: fix the spelling", line=segments[uri][0].line)
        unlisted.append(uri)
    if unlisted:
        first = unlisted[0]
        more = f" (nor are {unlisted[1:11]}{' ...' if len(unlisted) > 11 else ''})" if len(unlisted) > 1 else ""
        message = (f"URI {first!r} is in no split of corpus {source.corpus!r}{more}, so its segments are "
                   "ignored; fix the URI, list the file in a split, or set `unlisted: warn` for the corpus")
        if (spec.get("unlisted") or "error") == "error":
            raise InputError(where[first], message, line=segments[first][0].line)
        log.warning("%s:%s: %s", where[first], segments[first][0].line, message)
    empty = [u for u in source.uris if u not in segments]
    if empty:
        files = sorted({str(p) for p, u in source.rttm_owner.items() if u in empty}) or list(map(str, source.rttm))
        log.warning("corpus %r, split %r: no segment for %d listed file(s) %s%s in %s; they are labelled without "
                    "any of the classes %s on every frame (check the URIs' spelling if they have some)",
                    source.corpus, source.split, len(empty), empty[:10], " ..." if len(empty) > 10 else "",
                    ", ".join(files[:3]) + (" ..." if len(files) > 3 else ""), sorted(source.annotated))


Region = tuple[float, float, Path, int]  # start, end, the UEM file and line that give it


def read_regions(source: SplitSource) -> tuple[dict[str, list[Region]], Path] | tuple[None, None]:
    """Scored regions per URI from the split's UEM files, and the file to name in errors; (None, None) if none.

    Each region keeps its file and line: whether it fits the audio is only known once harmonise reads it.
    """
    if not source.uem:
        return None, None
    regions: dict[str, list[Region]] = {}
    for path in source.uem:
        for uri, spans in read_uem_lines(path).items():
            regions.setdefault(uri, []).extend((start, end, path, line) for start, end, line in spans)
    return regions, source.uem[0] if len(source.uem) == 1 else Path(os.path.commonpath(source.uem))


def describe() -> str:
    """One line per adapter, for help texts."""
    return "\n".join(f"{name}: {text}" for name, (_, text) in ADAPTERS.items())


__all__ = ["ADAPTERS", "ALIASES", "SplitSource", "check_corpus", "read_domains", "read_regions", "read_segments",
           "read_table", "resolve_split", "describe", "uri_problem"]
