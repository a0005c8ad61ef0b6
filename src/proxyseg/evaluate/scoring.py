"""Evaluation (METHOD §6): frame scores -> segments -> pyannote detection P/R/F1 per class, and tables.

Decisions are a plain per-class threshold (0.5 by default) with no median filter and no minimum duration
(METHOD §3), so the scores measure the model, not post-processing. Scoring uses pyannote.metrics'
``DetectionPrecisionRecallFMeasure`` per class inside the UEM, on only the classes the corpus annotates,
with components (durations) summed over every file of the split before precision, recall and F1 are
computed: a time-weighted micro average, as in the paper.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from proxyseg.core.atomic import atomic_open
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, HOP, SAMPLE_RATE, WIN
from proxyseg.core.rttm import Segment, read_rttm, read_uem, write_rttm

DEFAULT_THRESHOLD = 0.5

Threshold = float | Mapping[str, float]


# --------------------------------------------------------------------------------------------- decisions


def _thresholds(threshold: Threshold) -> np.ndarray:
    """One threshold per class in CLASSES order; a mapping may omit classes (they get 0.5)."""
    if isinstance(threshold, Mapping):
        unknown = set(threshold) - set(CLASSES)
        if unknown:
            raise ValueError(f"threshold names unknown classes {sorted(unknown)}; use {list(CLASSES)}")
        values = [float(threshold.get(c, DEFAULT_THRESHOLD)) for c in CLASSES]
    else:
        values = [float(threshold)] * len(CLASSES)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"threshold must be finite, got {values}")
    return np.asarray(values)


def binarize(probs: np.ndarray, threshold: Threshold = DEFAULT_THRESHOLD) -> dict[str, list[tuple[float, float]]]:
    """Segments (seconds) per class where ``probs >= threshold``, on the shared frame grid.

    Frame ``i`` stands for the 20 ms around its centre (``frames.frame_centers``), i.e. samples
    ``[320 i + 40, 320 i + 360)``: consecutive frames tile time without gaps or overlaps, so a run of
    frames ``i..j`` becomes ``[centre_i - 0.01, centre_j + 0.01)``. Computed from integer sample counts so
    the boundaries are exact multiples of 20 ms offset by 2.5 ms.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(CLASSES):
        raise ValueError(f"probs must have shape (T, {len(CLASSES)}), got {probs.shape}")
    if np.isnan(probs).any():
        raise ValueError("probs contain NaN")
    active = probs >= _thresholds(threshold)[None, :]
    offset = WIN // 2 - HOP // 2  # first sample of frame 0's 20 ms
    out: dict[str, list[tuple[float, float]]] = {}
    for k, name in enumerate(CLASSES):
        # run starts/ends from the edges of the 0/1 sequence padded with zeros
        edges = np.diff(np.concatenate([[0], active[:, k].astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # ends are exclusive
        out[name] = [((HOP * int(s) + offset) / SAMPLE_RATE, (HOP * int(e) + offset) / SAMPLE_RATE)
                     for s, e in zip(starts, ends)]
    return out


def decisions_rttm(probs_h5: str | os.PathLike, out_rttm: str | os.PathLike, threshold: Threshold = DEFAULT_THRESHOLD,
                   dataset: str = "probs", logits: bool = False) -> int:
    """Threshold stored scores into an RTTM of ``speech``/``noise``/``music``/``overlap`` segments.

    ``probs_h5`` holds one group per URI with a ``(T, 4)`` dataset named ``dataset``. Keeping scores and
    decisions apart lets users re-threshold without re-running a model. ``logits=True`` applies the
    sigmoid first (e.g. the teacher dump's ``logits``). Returns the number of segments written.
    """
    import h5py

    from proxyseg.teacher.dumpfile import known_classes

    path = Path(probs_h5)
    if not path.is_file():
        raise InputError(path, "score file not found; run the inference stage first")
    segments: list[Segment] = []
    with h5py.File(path, "r", locking=False) as h5:
        # a black-box teacher and its proxies decide only the classes the teacher knows
        known = known_classes(h5)
        columns = [CLASSES.index(c) for c in known]
        for uri in h5:
            group = h5[uri]
            if not isinstance(group, h5py.Group) or dataset not in group:
                raise InputError(path, f"{uri!r} has no dataset {dataset!r}; expected one group per URI "
                                       f"holding {dataset!r} of shape (T, {len(CLASSES)})")
            scores = np.asarray(group[dataset][()], dtype=np.float64)
            if scores.ndim != 2 or scores.shape[1] != len(CLASSES):
                raise InputError(path, f"{uri}/{dataset} has shape {scores.shape}, expected (T, {len(CLASSES)})")
            if np.isnan(scores[:, columns]).any():
                raise InputError(path, f"{uri}/{dataset} contains NaN; the model that wrote it diverged")
            scores = np.nan_to_num(scores, nan=-np.inf if logits else 0.0)
            if logits:
                scores = 1.0 / (1.0 + np.exp(-scores))
            for name, spans in binarize(scores, threshold).items():
                if name in known:
                    segments.extend(Segment(uri, start, end, name) for start, end in spans)
    with atomic_open(out_rttm) as handle:
        write_rttm(segments, handle)
    return len(segments)


# --------------------------------------------------------------------------------------------- scoring


def _annotated_classes(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "annotated.json not found; run the label harmonisation stage first")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg})", line=err.lineno) from None
    classes = info.get("classes") if isinstance(info, dict) else None
    if not isinstance(classes, dict):
        raise InputError(path, 'expected {"classes": {"speech": true, ...}}')
    unknown = set(classes) - set(CLASSES)
    if unknown:
        raise InputError(path, f"unknown classes {sorted(unknown)}; use {list(CLASSES)}")
    return [c for c in CLASSES if classes.get(c) is True]


def _annotation(uri: str, segments: list[Segment], path):
    """pyannote Annotation of our segments; labels must be one of the four classes."""
    from pyannote.core import Annotation
    from pyannote.core import Segment as PSegment

    ann = Annotation(uri=uri)
    for i, s in enumerate(segments):
        if s.label not in CLASSES:
            raise InputError(path, f"label {s.label!r} is not one of {list(CLASSES)}; score harmonised "
                                   "references (results/labels/...) and proxyseg decisions", line=s.line)
        if s.end > s.start:
            ann[PSegment(s.start, s.end), i] = s.label
    return ann


def score_split(reference_rttm: str | os.PathLike, uem_file: str | os.PathLike, annotated_json: str | os.PathLike,
                hypothesis_rttm: str | os.PathLike, collar: float = 0.0,
                domains: Mapping[str, str] | None = None, only=None) -> pd.DataFrame:
    """Detection precision/recall/F1 per annotated class over every file of the UEM.

    One pyannote metric per class, called once per UEM file (a file with no reference or no hypothesis
    segment still adds its false negatives or false alarms), so ``abs(metric)``-style values come from
    the summed components. ``collar`` is pyannote's: total width around each reference boundary.
    Returns one row per annotated class: ``class, precision, recall, f1, hours`` (reference hours inside
    the UEM, no collar), the summed ``true_positive, false_positive, false_negative`` (seconds) and
    ``files``. With ``domains`` (URI -> domain, e.g. DIHARD III's eleven) a ``domain`` column is added:
    empty on the corpus totals, followed by one row per domain and class with the components summed over
    that domain's files only. ``only``: score only these of the annotated classes (a black-box
    teacher's, :mod:`proxyseg.teacher.blackbox`); None: every annotated class.
    """
    from pyannote.core import Segment as PSegment
    from pyannote.core import Timeline
    from pyannote.metrics.detection import (DFS_PRECISION_RETRIEVED, DFS_RECALL_RELEVANT, DFS_RELEVANT_RETRIEVED,
                                            DetectionPrecisionRecallFMeasure)

    if not (math.isfinite(collar) and collar >= 0):
        raise ValueError(f"collar must be >= 0 seconds, got {collar}")
    classes = _annotated_classes(annotated_json)
    if only is not None:
        classes = [c for c in classes if c in set(only)]
    regions = read_uem(uem_file)
    reference = read_rttm(reference_rttm)
    hypothesis = read_rttm(hypothesis_rttm)
    for name, path, found in (("reference", reference_rttm, reference), ("hypothesis", hypothesis_rttm, hypothesis)):
        extra = sorted(set(found) - set(regions))
        if extra:
            raise InputError(path, f"{name} has files that the UEM {uem_file} does not list "
                                   f"({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''}); wrong split?")

    if domains is not None:
        missing = sorted(set(regions) - set(domains))
        if missing:
            raise InputError(uem_file, f"no domain for {', '.join(missing[:5])}; the manifest's domain column "
                                       "must cover every scored file")
    groups = [""] + (sorted({domains[u] for u in regions}) if domains is not None else [])
    metrics = {(g, c): DetectionPrecisionRecallFMeasure(collar=collar) for g in groups for c in classes}
    ref_seconds = dict.fromkeys(metrics, 0.0)
    files = dict.fromkeys(groups, 0)
    for uri, spans in regions.items():
        uem = Timeline([PSegment(s, e) for s, e in spans if e > s], uri=uri).support()
        ref = _annotation(uri, reference.get(uri, []), reference_rttm)
        hyp = _annotation(uri, hypothesis.get(uri, []), hypothesis_rttm)
        mine = [""] + ([domains[uri]] if domains is not None else [])
        for g in mine:
            files[g] += 1
        for c in classes:
            ref_c, hyp_c = ref.subset([c]), hyp.subset([c])
            seconds = ref_c.get_timeline().support().crop(uem, mode="intersection").duration()
            for g in mine:
                metrics[g, c](ref_c, hyp_c, uem=uem, uri=uri)
                ref_seconds[g, c] += seconds

    rows = []
    for (g, c), metric in metrics.items():
        precision, recall, f1 = metric.compute_metrics()  # from the accumulated (summed) components
        tp = metric[DFS_RELEVANT_RETRIEVED]
        rows.append({"class": c, "precision": float(precision), "recall": float(recall), "f1": float(f1),
                     "hours": ref_seconds[g, c] / 3600.0, "true_positive": tp,
                     "false_positive": metric[DFS_PRECISION_RETRIEVED] - tp,
                     "false_negative": metric[DFS_RECALL_RELEVANT] - tp, "files": files[g], "domain": g})
    columns = ["class", "precision", "recall", "f1", "hours", "true_positive", "false_positive", "false_negative",
               "files"]
    return pd.DataFrame(rows, columns=columns + (["domain"] if domains is not None else []))


# --------------------------------------------------------------------------------------------- tables


def _wide_f1(rows: pd.DataFrame, systems: list[str], index: list[str], columns: list[str]) -> pd.DataFrame:
    """F1 in percent (one decimal) with ``index`` as rows and ``columns`` joined as headers."""
    wide = rows.pivot_table(index=index, columns=columns, values="f1", aggfunc="first", sort=False)
    wide = wide.map(lambda v: "–" if pd.isna(v) else f"{100 * v:.1f}")
    wide.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in wide.columns]
    wide = wide.reset_index()
    wide["system"] = pd.Categorical(wide["system"], categories=systems, ordered=True)
    if "domain" in index:  # the corpus total ("all") first, then the domains alphabetically
        domains = sorted(set(wide["domain"]) - {"all"})
        wide["domain"] = pd.Categorical(wide["domain"], categories=["all", *domains], ordered=True)
    return wide.sort_values(index, kind="stable").astype({c: str for c in index})


def _markdown(table: pd.DataFrame, labels: int) -> str:
    """Markdown with the first ``labels`` columns left-aligned and the F1 columns right-aligned."""
    align = ("left",) * labels + ("right",) * (table.shape[1] - labels)
    return table.to_markdown(index=False, disable_numparse=True, colalign=align)


#: The name of the constant-output floor in the segmentation table (not a possible proxy or corpus name).
CONSTANT = "constant output"


def _floor_rows(system: str, corpus: str, segments, labels_dir, collar: float, only) -> pd.DataFrame:
    """Score a floor's ``segments`` against a scored split's labels folder, as :func:`score_split` scores a
    system (segments of files the UEM leaves out are dropped)."""
    import tempfile

    labels_dir = Path(labels_dir)
    scored = set(read_uem(labels_dir / "uem.uem"))
    with tempfile.TemporaryDirectory() as tmp:
        hyp = Path(tmp) / "floor.rttm"
        with open(hyp, "w") as f:
            write_rttm([g for g in segments if g.uri in scored], f)
        rows = score_split(labels_dir / "reference.rttm", labels_dir / "uem.uem", labels_dir / "annotated.json",
                           hyp, collar, only=only)
    rows.insert(0, "corpus", corpus)
    rows.insert(0, "system", system)
    return rows


def constant_floor(corpus: str, labels_dir: str | os.PathLike, collar: float = 0.0, only=None) -> pd.DataFrame:
    """Score rows of the trivial floor: every annotated class decided on every frame of the UEM (recall 1,
    precision the class's share of the scored time), scored like any system."""
    classes = _annotated_classes(Path(labels_dir) / "annotated.json")
    segments = [Segment(uri, a, b, c) for uri, spans in read_uem(Path(labels_dir) / "uem.uem").items()
                for a, b in spans if b > a for c in classes]
    return _floor_rows(CONSTANT, corpus, segments, labels_dir, collar, only)


#: The name of the energy-threshold floor in the segmentation table.
ENERGY = "energy threshold"


def frame_energy_db(spectrograms_h5) -> dict[str, np.ndarray]:
    """Each file's frame energy (dB, at the file's own level) from a spectrogram cache (X = log(1 + |S|^2))."""
    import h5py

    out = {}
    with h5py.File(spectrograms_h5, "r") as h5:
        for uri in h5:
            X = np.asarray(h5[uri][()], dtype=np.float64)
            gain = float(h5[uri].attrs.get("gain", 1.0))
            out[uri] = 10.0 * np.log10(np.expm1(X).sum(axis=1) / gain ** 2 + 1e-10)
    return out


def energy_floor(corpus: str, dev_spectrograms, dev_targets, test_spectrograms, labels_dir,
                 collar: float = 0.0, only=None, candidates: int = 101) -> pd.DataFrame:
    """Score rows of an energy detector: a class is decided where the frame energy exceeds a threshold,
    one per class, the one (among ``candidates`` quantiles of the dev energies) with the best frame F1
    on the dev split's labels; then scored on the test split like any system."""
    from proxyseg.explain.relevance import read_targets

    dev_e, targets = frame_energy_db(dev_spectrograms), read_targets(dev_targets)
    uris = [u for u in dev_e if u in targets]
    if not uris:
        raise InputError(dev_targets, f"no file in common with {dev_spectrograms}")
    e = np.concatenate([dev_e[u][:len(targets[u])] for u in uris])
    t = np.concatenate([targets[u][:len(dev_e[u])] for u in uris])
    grid = np.unique(np.quantile(e, np.linspace(0.0, 1.0, candidates)))
    thresholds = {}
    for c, name in enumerate(CLASSES):
        known = t[:, c] >= 0
        pos = t[known, c] == 1
        if not pos.any():
            continue
        ek = e[known]
        tp = np.array([(pos & (ek > g)).sum() for g in grid], dtype=np.float64)
        decided = np.array([(ek > g).sum() for g in grid], dtype=np.float64)
        f1 = 2 * tp / np.maximum(decided + pos.sum(), 1)
        thresholds[name] = float(grid[int(np.argmax(f1))])
    classes = [c for c in _annotated_classes(Path(labels_dir) / "annotated.json") if c in thresholds]
    segments = []
    for uri, energy in frame_energy_db(test_spectrograms).items():
        decisions = np.zeros((len(energy), len(CLASSES)))
        for name in classes:
            decisions[:, CLASSES.index(name)] = energy > thresholds[name]
        segments += [Segment(uri, a, b, name) for name, spans in binarize(decisions, 0.5).items()
                     for a, b in spans if name in classes]
    rows = _floor_rows(ENERGY, corpus, segments, labels_dir, collar, only)
    rows = rows[rows["class"].isin(classes)].reset_index(drop=True)
    rows["threshold_db"] = rows["class"].map(thresholds)
    return rows


def segmentation_tables(rows: pd.DataFrame, out_tsv: str | os.PathLike, out_md: str | os.PathLike,
                        settings: dict, out_settings: str | os.PathLike) -> pd.DataFrame:
    """Write the long TSV, the paper-shaped Markdown table and the scoring settings beside them.

    The Markdown has one row per system (``teacher`` first, then the given order) and one column per
    existing corpus x class pair (F1 %, "–" where a system was not scored there). Rows with a ``domain``
    (not empty) are a per-domain breakdown shown in their own table per corpus, each system's corpus
    total first (domain ``all``). The settings file (JSON, or YAML for a
    ``.yaml``/``.yml`` name) states threshold, collar and UEM plus the classes scored per corpus, since a
    score means nothing without them. Returns the main wide table.
    """
    need = {"system", "corpus", "class", "precision", "recall", "f1", "hours"}
    missing = need - set(rows.columns)
    if missing:
        raise ValueError(f"score rows lack columns {sorted(missing)}")
    rows = rows.reset_index(drop=True)
    has_domain = rows["domain"].notna() & (rows["domain"].astype(str) != "") if "domain" in rows else \
        pd.Series(False, index=rows.index)
    overall, by_domain = rows[~has_domain], rows[has_domain]
    if overall.duplicated(["system", "corpus", "class"]).any():
        raise ValueError("several overall score rows for one (system, corpus, class)")

    systems = list(dict.fromkeys(rows["system"]))
    if "teacher" in systems:
        systems.remove("teacher")
        systems.insert(0, "teacher")
    order = {c: i for i, c in enumerate(CLASSES)}

    def ordered(df: pd.DataFrame) -> pd.DataFrame:
        corpora = {c: i for i, c in enumerate(dict.fromkeys(df["corpus"]))}
        return df.sort_values(["corpus", "class"], key=lambda s: s.map(corpora if s.name == "corpus" else order),
                              kind="stable")

    wide = _wide_f1(ordered(overall), systems, ["system"], ["corpus", "class"]) if len(overall) else pd.DataFrame()
    parts = [f"F1 (%) per corpus / class, threshold {settings.get('threshold', '?')}, "
             f"collar {settings.get('collar', '?')} s, inside the UEM; only classes each corpus annotates.\n"]
    if len(wide):
        parts.append(_markdown(wide, 1) + "\n")
    for corpus, part in by_domain.groupby("corpus", sort=False):
        total = overall[overall["corpus"] == corpus].assign(domain="all")  # the corpus total beside its domains
        table = _wide_f1(ordered(pd.concat([total, part], ignore_index=True)), systems, ["system", "domain"],
                         ["class"])
        parts.append(f"\nF1 (%) per domain, {corpus}:\n\n{_markdown(table, 2)}\n")

    record = dict(settings)
    record.setdefault("classes", {str(k): [c for c in CLASSES if c in set(g["class"])]
                                  for k, g in rows.groupby("corpus", sort=False)})
    record["systems"] = systems
    from proxyseg.core.provenance import versions
    record["versions"] = versions()

    with atomic_open(out_tsv) as f:
        rows.to_csv(f, sep="\t", index=False)
    with atomic_open(out_md) as f:
        f.write("\n".join(parts))
    with atomic_open(out_settings) as f:
        if Path(out_settings).suffix in (".yaml", ".yml"):
            import yaml
            yaml.safe_dump(json.loads(json.dumps(record, default=str)), f, sort_keys=False)
        else:
            json.dump(record, f, indent=2, default=str)
            f.write("\n")
    return wide
