"""pyannote.database protocols: a ``database.yml`` giving audio templates (Databases) and, per protocol, subsets
with list, RTTM, optional UEM and optional domain files (Protocols)."""

from __future__ import annotations

from pathlib import Path

from proxyseg.core.errors import InputError
from proxyseg.core.rttm import read_list_lines, read_text, text_lines
from proxyseg.corpora.adapters.common import (CLASS_NAMES, LABEL_KINDS, SplitSource, annotated_classes,
                                              check_label_map, corpus_error, no_duplicates, path_in, select_portion)

LABELS = None  # chosen in config, else from the protocol's task
DESCRIPTION = "a pyannote.database database.yml protocol (subsets with uri/annotation/annotated files)"
LAYOUT_HINT = "the folder of the database.yml"

PYANNOTE_SUBSETS = {"dev": "development"}  # our split name -> pyannote subset, where they differ


def resolve(corpus, split, spec) -> SplitSource:
    """A ``database.yml`` protocol, read with PyYAML (pyannote.database itself is not needed).

    ``Databases.<db>`` gives the audio template(s) (relative to the YAML's folder); the protocol's subset
    gives ``uri`` (list), ``annotation`` (RTTM), optional ``annotated`` (UEM) and optional ``domain`` (a
    ``uri domain`` mapping file).
    """
    import yaml

    split_spec = spec["splits"][split] or {}
    if not spec.get("database") or not spec.get("protocol"):
        raise corpus_error(corpus, None, "the pyannote adapter needs `database` (path of database.yml) and `protocol` "
                                         "(Database.Task.Protocol)")
    yml = Path(spec["database"])
    if not yml.is_file():
        raise corpus_error(corpus, split, "database.yml not found; it should define Databases (audio templates with "
                                          "{uri}) and Protocols (subsets with uri/annotation/annotated files)",
                           path=yml)
    try:
        db = yaml.safe_load(read_text(yml, "database.yml")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise InputError(yml, f"not valid YAML ({exc})", line=None if line is None else line + 1) from None
    parts = str(spec["protocol"]).split(".")
    if len(parts) != 3:
        raise corpus_error(corpus, None, f"`protocol` must be Database.Task.Protocol, got {spec['protocol']!r}")
    name, task, proto = parts
    if name == "X":
        raise corpus_error(corpus, None, "meta-protocols (X.*) combine corpora; declare each corpus as its own entry "
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
        raise corpus_error(corpus, None, f"task {task!r}: set `labels` to speakers or classes")
    label_map = check_label_map(corpus, spec, labels, {c: c for c in entry.get("classes", CLASS_NAMES)
                                                       if c in CLASS_NAMES} if labels == "classes" else {})
    list_path = path_in(base, files["uri"])
    lines = read_list_lines(list_path)
    uris = list(lines)
    domains = None
    inputs = [yml, list_path]
    if files.get("domain"):
        map_path = path_in(base, files["domain"])
        domains = _read_mapping(map_path)
        inputs.append(map_path)
    uris = select_portion(corpus, split, uris, domains, split_spec.get("portion"))
    audio_paths = {}
    for uri in uris:
        paths = [path_in(base, t.format(uri=uri)) for t in templates]
        audio_paths[uri] = next((p for p in paths if p.is_file()), paths[0])
    rttm = [path_in(base, files["annotation"])]
    uem = [path_in(base, files["annotated"])] if files.get("annotated") else None
    if domains is not None:
        missing = [u for u in uris if u not in domains]
        if missing:
            raise InputError(inputs[-1], f"no domain for {missing[:5]}")
    return SplitSource(
        corpus=corpus, split=split, adapter="pyannote", labels=labels, label_map=label_map,
        annotated=annotated_classes(corpus, spec, labels, label_map), uris=uris, audio=audio_paths, rttm=rttm, uem=uem,
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
    no_duplicates(path, lines)
    return out
