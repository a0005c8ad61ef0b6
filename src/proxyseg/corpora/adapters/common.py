"""What the corpus adapters share: the split description they produce, path and template checks, table readers.

Each adapter module (:mod:`.aragon`, :mod:`.dihard`, :mod:`.folder`, :mod:`.generic`, :mod:`.pyannote`) resolves
one layout into a :class:`SplitSource` with these helpers; :mod:`proxyseg.corpora.adapters` dispatches to them.
Standard library and the RTTM/list readers only: the Snakefile imports the package at parse time.
"""

from __future__ import annotations

import glob
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from proxyseg.core.errors import InputError
from proxyseg.core.rttm import read_list_lines, read_rttm, read_uem_lines, text_lines

CLASS_NAMES = ("speech", "noise", "music", "overlap")  # == frames.CLASSES (not imported: keeps numpy out)
LABEL_KINDS = ("classes", "speakers")


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


def corpus_error(corpus: str, split: str | None, message: str, path=None, line=None) -> InputError:
    """An InputError naming the corpus (and split), and the file and line where given."""
    where = f"corpus {corpus!r}" + (f", split {split!r}" if split else "")
    return InputError(path, f"{where}: {message}", line=line)


def split_root(spec: dict, split_spec: dict) -> Path | None:
    """The folder relative paths start from: the split's `root`, else the corpus's; None if neither."""
    root = split_spec.get("root") or spec.get("root")
    return Path(root) if root else None


def path_in(base: Path | None, value: str) -> Path:
    """``value`` as a path under ``base``, unless it is absolute or there is no base."""
    path = Path(value)
    return path if path.is_absolute() or base is None else base / path


def need_root(corpus, split, adapter, base: Path | None, hint: str) -> Path:
    """``base``, which must be given and be a folder; ``hint`` says what the adapter's root folder holds."""
    if base is None:
        raise corpus_error(corpus, split, f"the {adapter} adapter needs `root`: {hint}")
    if not base.is_dir():
        raise corpus_error(corpus, split, f"root folder not found; it should be {hint}", path=base)
    return base


def is_template(value: str) -> bool:
    """Whether a path names one file per recording (holds ``{uri}``)."""
    return "{uri}" in value


def check_template(corpus, split, key: str, value) -> str:
    """``value`` of config key ``key``: a path using no placeholder but {uri}, {split} and {partition}."""
    if not isinstance(value, str) or not value:
        raise corpus_error(corpus, split, f"`{key}` must be a path")
    try:
        value.format(uri="x", split="x", partition="x")
    except (KeyError, IndexError, ValueError):
        raise corpus_error(corpus, split, f"`{key}` {value!r} may only use the placeholders {{uri}}, {{split}}"
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
    no_duplicates(path, [(r["uri"], int(r["_line"])) for r in rows])
    return {r["uri"]: r["domain"] for r in rows}


def no_duplicates(path: Path, uris: list[tuple[str, int]]) -> None:
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


def select_portion(corpus, split, uris: list[str], domains: dict[str, str] | None, portion) -> list[str]:
    """Files whose rank within their domain (in listed order) falls in [a, b) of the domain's count.

    Complementary portions ([0, 0.8] and [0.8, 1]) split a release into disjoint, domain-stratified parts
    deterministically, without writing list files.
    """
    if portion is None:
        return uris
    if (not isinstance(portion, (list, tuple)) or len(portion) != 2
            or not all(isinstance(v, (int, float)) for v in portion) or not 0 <= portion[0] < portion[1] <= 1):
        raise corpus_error(corpus, split, f"`portion` must be [a, b] with 0 <= a < b <= 1, got {portion!r}")
    groups: dict[str, list[str]] = {}
    for uri in uris:
        groups.setdefault((domains or {}).get(uri, ""), []).append(uri)
    keep = set()
    for members in groups.values():
        n = len(members)
        keep.update(members[math.floor(portion[0] * n + 1e-9):math.floor(portion[1] * n + 1e-9)])
    chosen = [u for u in uris if u in keep]
    if not chosen:
        raise corpus_error(corpus, split, f"`portion` {list(portion)} selects no file of {len(uris)}")
    return chosen


def annotated_classes(corpus, spec: dict, labels: str, label_map: dict) -> set[str]:
    """The classes the corpus annotates: its `annotated`, else what its labels (or label map) give."""
    if spec.get("annotated"):
        bad = set(spec["annotated"]) - set(CLASS_NAMES)
        if bad:
            raise corpus_error(corpus, None, f"`annotated` names unknown classes {sorted(bad)}; "
                                             f"use {list(CLASS_NAMES)}")
        return set(spec["annotated"])
    if labels == "speakers":
        return {"speech", "overlap"}
    return {v for v in label_map.values() if v is not None}


def check_label_map(corpus, spec: dict, labels: str, default: dict[str, str]) -> dict[str, str | None]:
    """The corpus's `label_map` (else ``default``), checked: string keys, known classes or null values."""
    label_map = dict(spec.get("label_map") or default)
    for key, value in label_map.items():
        if not isinstance(key, str):
            raise corpus_error(corpus, None, f"label_map key {key!r} is not a string; YAML reads bare no/yes/on/off as "
                                             "booleans, so quote the label (\"no\": noise)")
        if value is not None and value not in CLASS_NAMES:
            raise corpus_error(corpus, None, f"label_map maps {key!r} to unknown class {value!r}; use "
                                             f"{list(CLASS_NAMES)} or null")
    if labels == "speakers" and spec.get("label_map"):
        raise corpus_error(corpus, None, "label_map applies to class labels; speaker-turn corpora derive speech and "
                                         "overlap from the turns (remove label_map or set labels: classes)")
    return label_map


def uris_from(corpus, split, base, split_spec, rttm_value, uem_value, audio_value):
    """The split's URIs and where each was listed: list file, else UEM, else RTTM, else the audio folder."""
    if split_spec.get("list"):
        path = path_in(base, check_template(corpus, split, "list", split_spec["list"]).format(split=split))
        lines = read_list_lines(path)
        if not lines:
            raise InputError(path, "list file names no URI; a split needs at least one file")
        return list(lines), {u: (path, n) for u, n in lines.items()}, [path]
    if uem_value and not is_template(uem_value):
        path = path_in(base, uem_value)
        regions = read_uem_lines(path)
        return list(regions), {u: (path, spans[0][2]) for u, spans in regions.items()}, []
    if rttm_value and not is_template(rttm_value):
        path = path_in(base, rttm_value)
        segments = read_rttm(path)
        return list(segments), {u: (path, segs[0].line) for u, segs in segments.items()}, []
    pattern = str(path_in(base, audio_value))
    regex = re.compile("^" + re.escape(pattern).replace(re.escape("{uri}"), "(?P<uri>[^/]+)") + "$")
    found = sorted(m.group("uri") for p in glob.glob(pattern.replace("{uri}", "*"))
                   if (m := regex.match(p)))
    if not found:
        raise corpus_error(corpus, split, f"no `list` given and no audio file matches {pattern}")
    return found, {u: (Path(pattern.replace("{uri}", u)), None) for u in found}, []


# ----------------------------------------------------------------------------------------------- files layout


def files_layout(corpus, split, spec, adapter, hint, labels, label_map_default, defaults,
                 root_required=False) -> SplitSource:
    """aragon and generic: audio template, per split a list (optional), an RTTM and an optional UEM.

    RTTM and UEM paths are one file for the split, or a template with ``{uri}`` (one file per recording).
    ``hint`` says what the root folder holds; ``defaults`` gives the adapter's audio/list/rttm templates.
    """
    split_spec = spec["splits"][split] or {}
    base = split_root(spec, split_spec)
    if root_required:
        need_root(corpus, split, adapter, base, hint)
    elif base is not None and not base.is_dir():
        raise corpus_error(corpus, split, f"root folder not found; it should be {hint}", path=base)
    audio = spec.get("audio") or defaults.get("audio")
    if not audio:
        raise corpus_error(corpus, split, "`audio` is required: the path template of a file's audio with {uri}")
    audio = check_template(corpus, split, "audio", audio).replace("{split}", split)
    if not is_template(audio):
        raise corpus_error(corpus, split, f"`audio` {audio!r} must contain {{uri}}")
    split_spec = {**({"list": defaults["list"]} if "list" in defaults else {}), **split_spec}
    rttm = split_spec.get("rttm") or defaults.get("rttm")
    if not rttm:
        raise corpus_error(corpus, split, "`rttm` is required: the split's RTTM file, or a template with {uri}")
    rttm = check_template(corpus, split, "rttm", rttm).replace("{split}", split)
    uem = split_spec.get("uem")
    uem = check_template(corpus, split, "uem", uem).replace("{split}", split) if uem else None
    label_map = check_label_map(corpus, spec, labels, label_map_default)
    domains_path = path_in(base, spec["domains"]) if spec.get("domains") else None
    domains = read_domains(domains_path) if domains_path else None

    uris, origin, inputs = uris_from(corpus, split, base, split_spec, rttm, uem, audio)
    uris = select_portion(corpus, split, uris, domains, split_spec.get("portion"))
    owner = {path_in(base, rttm.format(uri=u)): u for u in uris} if is_template(rttm) else {}
    rttm_files = list(owner) if owner else [path_in(base, rttm)]
    uem_files = None
    if uem:
        uem_files = [path_in(base, uem.format(uri=u)) for u in uris] if is_template(uem) else [path_in(base, uem)]
    if domains is not None:
        missing = [u for u in uris if u not in domains]
        if missing:
            raise corpus_error(corpus, split, f"the domain table has no row for {missing[:5]}", path=domains_path)
        inputs.append(domains_path)
    return SplitSource(
        corpus=corpus, split=split, adapter=adapter, labels=labels, label_map=label_map,
        annotated=annotated_classes(corpus, spec, labels, label_map), uris=uris,
        audio={u: path_in(base, audio.format(uri=u)) for u in uris}, rttm=rttm_files, uem=uem_files,
        domains={u: domains[u] for u in uris} if domains is not None else None, origin=origin,
        inputs=inputs + rttm_files + (uem_files or []), rttm_owner=owner)
