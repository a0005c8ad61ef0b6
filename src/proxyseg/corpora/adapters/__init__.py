"""Corpus layouts on disk -> one description per split that label harmonisation consumes.

Users point the workflow at corpora as they have them (AragonRadio, DIHARD III's LDC release, any folder
of audio with RTTM, a pyannote.database protocol, a plain folder of unlabelled audio); each *adapter* knows
one layout and turns a corpus entry of the config into a :class:`SplitSource`: the split's URIs, the audio
of each, the RTTM and UEM files to read, the per-file domain where the corpus has one, whether the RTTM
name field holds classes or speakers, and which classes the corpus annotates (none for a folder corpus).
``harmonise`` then maps that to the four classes. Resolving only reads small index files (lists, tables,
YAML), so Snakemake calls it at parse time to stop at once, naming the missing file, before any job runs.

One module per adapter (:mod:`.aragon`, :mod:`.dihard`, :mod:`.folder`, :mod:`.generic`, :mod:`.pyannote`: its
``LABELS``, ``DESCRIPTION``, ``LAYOUT_HINT`` and ``resolve``), what they share in :mod:`.common`; here the
registry, resolving and checking a corpus's splits, and reading their RTTM and UEM files.

This package depends on the standard library, PyYAML and the RTTM/list readers only: the Snakefile
imports it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from proxyseg.core.errors import InputError
from proxyseg.core.rttm import read_rttm, read_uem_lines
from proxyseg.corpora.adapters import aragon, dihard, folder, generic, pyannote
from proxyseg.corpora.adapters.common import SplitSource, corpus_error, read_domains, read_table, uri_problem

log = logging.getLogger(__name__)

UNLISTED = ("error", "warn")  # what an RTTM URI in no split of the corpus is

_MODULES = {"aragon": aragon, "dihard": dihard, "folder": folder, "generic": generic, "pyannote": pyannote}
#: adapter name -> (label kind or None when chosen in config, one-line description of the layout)
ADAPTERS = {name: (module.LABELS, module.DESCRIPTION) for name, module in _MODULES.items()}
#: former adapter names, kept so existing configs work: both are the generic layout
ALIASES = generic.ALIASES

_LAYOUT_HINT = {name: module.LAYOUT_HINT for name, module in _MODULES.items()}
_RESOLVERS = {**{name: module.resolve for name, module in _MODULES.items()},
              **{alias: generic.resolve for alias in ALIASES}}


# ----------------------------------------------------------------------------------------------- public


def resolve_split(corpus: str, spec: dict, split: str) -> SplitSource:
    """Resolve one split of a corpus entry of the config; raises InputError naming the bad file or key."""
    adapter = spec.get("adapter")
    if adapter not in _RESOLVERS:
        raise corpus_error(corpus, None, f"adapter {adapter!r} unknown; choose one of {sorted(ADAPTERS)}")
    splits = spec.get("splits") or {}
    if split not in splits:
        raise corpus_error(corpus, None, f"no split {split!r} in config (has {sorted(splits)})")
    if splits[split] is not None and not isinstance(splits[split], dict):
        raise corpus_error(corpus, split, "a split must be a mapping (list, rttm, uem, root, portion, subset)")
    if (spec.get("unlisted") or "error") not in UNLISTED:
        raise corpus_error(corpus, None, f"`unlisted` must be error or warn, got {spec['unlisted']!r}")
    source = _RESOLVERS[adapter](corpus, split, spec)
    for uri in source.uris:
        problem = uri_problem(uri)
        if problem:
            path, line = source.where(uri)
            raise InputError(path, f"URI {uri!r} {problem}, but URIs name output files and HDF5 datasets: "
                                   f"rename the audio file {source.audio[uri]} to a plain name, and the URI "
                                   "here and in the RTTM/UEM", line=line)
    return source


def check_corpus(corpus: str, spec: dict, shared_files_ok: bool | None = None) -> dict[str, SplitSource]:
    """Resolve every split and check that the files it names exist (audio is checked by harmonise), and
    that no file is in two splits (:func:`check_disjoint`; allowed by ``shared_files_ok``, by default the
    corpus's ``shared_files``)."""
    out = {}
    for split in spec.get("splits") or {}:
        source = resolve_split(corpus, spec, split)
        for path in source.inputs:
            if not Path(path).is_file():
                kind = {".rttm": "RTTM (speaker turns or class segments)", ".uem": "UEM (scored regions)"}.get(
                    Path(path).suffix, "annotation")
                raise corpus_error(corpus, split, f"file not found; it should be the {kind} of the split's recordings; "
                                                  f"the corpus root should be {_LAYOUT_HINT[source.adapter]}",
                                   path=path)
        out[split] = source
    if shared_files_ok is None:
        shared_files_ok = bool(spec.get("shared_files"))
    if not shared_files_ok:
        check_disjoint(corpus, out)
    return out


def check_disjoint(corpus: str, sources: dict[str, SplitSource]) -> None:
    """A file in two splits (say train and test) would be scored on what it was trained on: name the URI and
    both splits, and where each lists it."""
    seen: dict[str, str] = {}
    for split, source in sources.items():
        for uri in source.uris:
            if uri in seen:
                other = sources[seen[uri]]
                path, line = source.where(uri)
                first, first_line = other.where(uri)
                raise corpus_error(corpus, None, f"{uri!r} is in split {seen[uri]!r} ({first}"
                                                 f"{f':{first_line}' if first_line else ''}) and in split {split!r} "
                                                 f"({path}{f':{line}' if line else ''}); a file may be in one split "
                                                 "only: remove it from one, or set `shared_files: true` for the "
                                                 "corpus if that is meant")
            seen[uri] = split


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
    (a warning with ``unlisted: warn``); a listed file without any segment is a warning, unless the split
    has no RTTM and annotates no class (a folder corpus): it has no labels by design.
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
    empty = [u for u in source.uris if u not in segments] if source.rttm or source.annotated else []
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


__all__ = ["ADAPTERS", "ALIASES", "SplitSource", "check_corpus", "check_disjoint", "read_domains", "read_regions", "read_segments",
           "read_table", "resolve_split", "describe", "uri_problem"]
