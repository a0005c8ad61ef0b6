"""DIHARD III (LDC release): URIs and domains from docs/recordings.tbl, speaker-turn RTTMs, official UEMs.

Speech and overlap come from the speaker turns; the core or full partition's scoring UEM is scored.
"""

from __future__ import annotations

from proxyseg.core.errors import InputError
from proxyseg.core.rttm import read_list_lines
from proxyseg.corpora.adapters.common import (SplitSource, annotated_classes, corpus_error, need_root, no_duplicates,
                                              path_in, read_table, select_portion, split_root)

LABELS = "speakers"
DESCRIPTION = ("DIHARD III LDC release: data/flac, data/rttm, data/uem*, docs/recordings.tbl; speech and overlap "
               "from the speaker turns, domains kept, official UEMs scored")
LAYOUT_HINT = ("a DIHARD III LDC release folder (LDC2020E12 dev or LDC2021E02 eval) holding data/flac/<uri>.flac, "
               "data/rttm/<uri>.rttm, data/uem_scoring/{core,full}/all.uem and docs/recordings.tbl")

DIHARD_PARTITIONS = ("core", "full")
DIHARD_AUDIO = "data/flac/{uri}.flac"
DIHARD_RTTM = "data/rttm/{uri}.rttm"
#: where the official scoring UEM of a partition lies in the LDC releases (first found is used)
DIHARD_UEMS = ("data/uem_scoring/{partition}/all.uem", "data/uem/{partition}/all.uem", "data/uem/{partition}.uem")
DIHARD_TABLE = "docs/recordings.tbl"


def resolve(corpus, split, spec) -> SplitSource:
    """DIHARD III: URIs and domains from docs/recordings.tbl (core partition: rows with in_core True)."""
    split_spec = spec["splits"][split] or {}
    root = need_root(corpus, split, "dihard", split_root(spec, split_spec), LAYOUT_HINT)
    partition = spec.get("partition", "core")
    if partition not in DIHARD_PARTITIONS:
        raise corpus_error(corpus, None, f"`partition` must be one of {list(DIHARD_PARTITIONS)}, got {partition!r}")
    table_path = root / DIHARD_TABLE
    if not table_path.is_file():
        raise corpus_error(corpus, split, "DIHARD III table of recordings not found; it should list every recording "
                                          "(tab-separated, header `uri in_core lang domain source ...`)",
                           path=table_path)
    need = ("uri", "domain") + (("in_core",) if partition == "core" else ())
    rows = read_table(table_path, need, "DIHARD recordings table")
    if partition == "core":
        for r in rows:
            if r["in_core"] not in ("True", "False"):
                raise InputError(table_path, f"in_core must be True or False, got {r['in_core']!r}",
                                 line=int(r["_line"]))
        rows = [r for r in rows if r["in_core"] == "True"]
    no_duplicates(table_path, [(r["uri"], int(r["_line"])) for r in rows])
    rows.sort(key=lambda r: r["uri"])
    domains = {r["uri"]: r["domain"] for r in rows}
    origin = {r["uri"]: (table_path, int(r["_line"])) for r in rows}
    uris = [r["uri"] for r in rows]
    inputs = [table_path]
    if split_spec.get("list"):
        list_path = path_in(root, split_spec["list"])
        lines = read_list_lines(list_path)
        unknown = [u for u in lines if u not in domains]
        if unknown:
            raise InputError(list_path, f"{unknown[0]} is not a {partition}-partition recording of {table_path}",
                             line=lines[unknown[0]])
        uris = list(lines)
        inputs.append(list_path)
    uris = select_portion(corpus, split, uris, domains, split_spec.get("portion"))
    if not uris:
        raise corpus_error(corpus, split, f"no recording of the {partition} partition", path=table_path)
    for sub in ("data/flac", "data/rttm"):
        if not (root / sub).is_dir():
            raise corpus_error(corpus, split, f"folder {sub}/ not found; it should hold one "
                                              f"{'FLAC' if 'flac' in sub else 'RTTM'} file per recording",
                               path=root / sub)
    templates = [spec["uem"]] if spec.get("uem") else list(DIHARD_UEMS)
    candidates = [path_in(root, t.replace("{partition}", partition)) for t in templates]
    uem = next((p for p in candidates if p.is_file()), None)
    if uem is None:
        raise corpus_error(corpus, split, f"no scoring UEM for the {partition} partition; expected one of "
                                          f"{[str(p) for p in candidates]} (the release's official UEM, `uri channel "
                                          "start end` per line), or set `uem`", path=candidates[0])
    rttm = [root / DIHARD_RTTM.format(uri=u) for u in uris]
    return SplitSource(
        corpus=corpus, split=split, adapter="dihard", labels="speakers", label_map={},
        annotated=annotated_classes(corpus, spec, "speakers", {}), uris=uris,
        audio={u: root / DIHARD_AUDIO.format(uri=u) for u in uris}, rttm=rttm, uem=[uem],
        domains={u: domains[u] for u in uris}, origin=origin, inputs=inputs + rttm + [uem],
        rttm_owner=dict(zip(rttm, uris)))
