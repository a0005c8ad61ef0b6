"""Label harmonisation: every corpus, whatever it annotates, becomes the same four frame-level classes.

A corpus *adapter* turns its native annotation into per-class segments and declares which classes it
annotates. Classes it does not annotate are *unknown* (-1) in the frame targets, never negative, so the
teacher's loss and the scoring ignore them (METHOD §2). Frames outside the UEM are unknown too.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
import h5py
import numpy as np
import pandas as pd

from proxyseg.core.atomic import atomic_open, atomic_path
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, FRAME_RATE, HOP, SAMPLE_RATE, UNKNOWN, WIN, frame_centers, num_frames
from proxyseg.core.audio import audio_info
from proxyseg.corpora.adapters import read_regions, read_segments, resolve_split
from proxyseg.core.rttm import Segment, write_rttm, write_uem
from proxyseg.core.provenance import provenance_json

Intervals = list[tuple[float, float]]

log = logging.getLogger(__name__)

#: how far an annotation may reach past the end of its audio unremarked (times rounded in the RTTM/UEM)
SLACK = 1 / FRAME_RATE


# --------------------------------------------------------------------------------------------------
# interval arithmetic (sorted, disjoint lists of (start, end))


def union(intervals: Intervals) -> Intervals:
    """Merge overlapping or touching intervals."""
    merged: Intervals = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersect(a: Intervals, b: Intervals) -> Intervals:
    """Intersection of two sorted disjoint interval lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def overlap_regions(turns_by_speaker: dict[str, Intervals]) -> Intervals:
    """Where two or more *different* speakers are active (a speaker overlapping itself does not count)."""
    events = []
    for turns in turns_by_speaker.values():
        for start, end in union(turns):
            events.append((start, 1))
            events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at equal times: touching is not overlap
    out: Intervals = []
    active, opened = 0, 0.0
    for time, delta in events:
        if active < 2 <= active + delta:
            opened = time
        elif active >= 2 > active + delta and time > opened:
            out.append((opened, time))
        active += delta
    return union(out)


def frames_in(intervals: Intervals, centers: np.ndarray) -> np.ndarray:
    """Boolean mask of frame centres that fall inside ``intervals`` (half-open [start, end))."""
    merged = union(intervals)
    if not merged:
        return np.zeros(len(centers), dtype=bool)
    starts = np.array([s for s, _ in merged])
    ends = np.array([e for _, e in merged])
    idx = np.searchsorted(starts, centers, side="right") - 1
    inside = idx >= 0
    inside[inside] = centers[inside] < ends[idx[inside]]
    return inside


# --------------------------------------------------------------------------------------------------
# native annotation -> {class: intervals} per file (the corpus layout is read by proxyseg.corpora.adapters)


def convert_classes(segments: list[Segment], label_map: dict[str, str | None], annotated: set[str],
                    rttm_path) -> dict[str, Intervals]:
    """Class-labelled RTTM (AragonRadio: sp, mu, no), renamed through ``label_map``.

    A label mapped to null is dropped; a label absent from the map is an error naming file and line.
    """
    out: dict[str, Intervals] = {c: [] for c in annotated}
    for seg in segments:
        if seg.label not in label_map:
            raise InputError(
                rttm_path,
                f"label {seg.label!r} is not in the corpus's label_map {sorted(label_map)}; "
                "add it to label_map in config (map it to null to drop it)",
                line=seg.line,
            )
        target = label_map[seg.label]
        if target is not None and target in annotated:
            out[target].append((seg.start, seg.end))
    return {c: union(v) for c, v in out.items()}


def convert_speakers(segments: list[Segment], annotated: set[str]) -> dict[str, Intervals]:
    """Speaker turns (DIHARD III, AMI): speech = union of turns, overlap = two or more different speakers."""
    turns: dict[str, Intervals] = {}
    for seg in segments:
        turns.setdefault(seg.label, []).append((seg.start, seg.end))
    out = {"speech": union([t for ts in turns.values() for t in ts]), "overlap": overlap_regions(turns)}
    return {c: v for c, v in out.items() if c in annotated}


# --------------------------------------------------------------------------------------------------
# the harmonise stage


def resampled_length(frames: int, sample_rate: int) -> int:
    """Samples after resampling to 16 kHz (torchaudio's ceil rule), so labels and features agree on T."""
    return math.ceil(frames * SAMPLE_RATE / sample_rate)


def frame_targets(classes: dict[str, Intervals], scored: Intervals, n_frames: int) -> np.ndarray:
    """(T, 4) int8 targets: 1/0 for annotated classes inside the scored regions, -1 elsewhere."""
    centers = frame_centers(n_frames)
    targets = np.full((n_frames, len(CLASSES)), UNKNOWN, dtype=np.int8)
    in_uem = frames_in(scored, centers)
    for c, intervals in classes.items():
        col = CLASSES.index(c)
        targets[in_uem, col] = frames_in(intervals, centers[in_uem]).astype(np.int8)
    return targets


@dataclass
class Outside:
    """Annotations reaching past the end of their audio over a split, counted: their labels are lost.

    A few seconds cut at the end is common and only warned about; most labelled time past the end is surely
    a unit mistake (milliseconds) or audio that is not the annotated recording, and stops harmonisation.
    """

    dropped: int = 0  # RTTM segments wholly after the end
    cut: int = 0  # RTTM segments cut at the end
    past_seconds: float = 0.0  # of RTTM segments, past the end
    labelled_seconds: float = 0.0  # of every RTTM segment
    clipped: int = 0  # UEM regions cut at the end
    clipped_seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    first: tuple | None = None  # (RTTM file, line) of the first segment past the end

    def add(self, uri: str, duration: float, segments: list[Segment], rttm_path, regions) -> None:
        hit = False
        for seg in segments:
            self.labelled_seconds += seg.end - seg.start
            if seg.end > duration + SLACK:
                hit = True
                self.dropped += seg.start >= duration
                self.cut += seg.start < duration
                self.past_seconds += seg.end - max(seg.start, duration)
                self.first = self.first or (rttm_path, seg.line)
        for _, end, _, _ in regions:
            if end > duration + SLACK:
                hit = True
                self.clipped += 1
                self.clipped_seconds += end - duration
        if hit:
            self.files.append(uri)

    def check(self, corpus: str, split: str) -> None:
        """An InputError if more than half the labelled time is past the end, else one warning line."""
        if self.past_seconds > 0.5 * self.labelled_seconds:
            path, line = self.first
            raise InputError(path, f"RTTM times past the end of the audio: are they in milliseconds? Of the "
                                   f"{self.labelled_seconds:.1f} labelled seconds of corpus {corpus!r}, split "
                                   f"{split!r}, {self.past_seconds:.1f} lie past the end of their audio (this "
                                   "segment is the first); give onsets and durations in seconds, or check that "
                                   "the audio files are complete and are the annotated recordings", line=line)
        if self.files:
            where = f" (first at {self.first[0]}:{self.first[1]})" if self.first else ""
            log.warning("corpus %r, split %r: annotations past the end of the audio lose their labels: %d RTTM "
                        "segment(s) dropped and %d cut (%.3f s)%s, %d UEM region(s) clipped (%.3f s), in %d "
                        "file(s) %s%s; check that the audio files are complete", corpus, split, self.dropped,
                        self.cut, self.past_seconds, where, self.clipped, self.clipped_seconds, len(self.files),
                        self.files[:10], " ..." if len(self.files) > 10 else "")

    def as_dict(self) -> dict:
        """For annotated.json: what was lost, so a summary of the run can show it."""
        return {"rttm_segments_dropped": self.dropped, "rttm_segments_cut": self.cut,
                "rttm_seconds_past_end": round(self.past_seconds, 3), "uem_regions_clipped": self.clipped,
                "uem_seconds_clipped": round(self.clipped_seconds, 3), "files": self.files}


def harmonise(corpus: str, split: str, spec: dict, out_dir: str | os.PathLike) -> pd.DataFrame:
    """Harmonise one split of one corpus into ``out_dir`` (see docs/outputs.md); returns its class-hours rows.

    ``spec`` is the corpus's entry of the config; ``proxyseg.corpora.adapters`` reads its layout (adapter).
    """
    out_dir = Path(out_dir)
    source = resolve_split(corpus, spec, split)
    annotated = source.annotated
    segments, rttm_of = read_segments(source, spec)
    uem, uem_path = read_regions(source)
    outside = Outside()

    manifest, references, regions, targets = [], [], {}, {}
    for uri in source.uris:
        audio = source.audio[uri]
        if not audio.is_file():
            listed, line = source.where(uri)
            raise InputError(listed, f"{uri} is listed but its audio {audio} does not exist; fix the list "
                                     "or the corpus's `audio`/`root` in config", line=line)
        duration, sample_rate, channels = audio_info(audio, samples=True)
        n_frames = num_frames(resampled_length(round(duration * sample_rate), sample_rate))
        if n_frames == 0:  # features and spectrograms would fail later on it, naming no file
            listed, line = source.where(uri)
            raise InputError(listed, f"{uri}: its audio {audio} is shorter than one frame ({WIN} samples at "
                                     f"16 kHz; it has {duration:.4f} s): remove it from the split or fix the "
                                     "audio", line=line)
        if uem is None:
            scored = [(0.0, duration)]
        elif uri not in uem:
            listed, _ = source.where(uri)
            raise InputError(uem_path, f"no scored region for {uri} (listed in {listed}); add a UEM line for it")
        else:
            for start, end, path, line in uem[uri]:
                if start >= duration:  # clipping would leave nothing: the whole file would drop out unseen
                    raise InputError(path, f"the region of {uri} starts at {start} s, after the end of its audio "
                                           f"{audio} ({duration:.3f} s): fix the region, or check that the UEM "
                                           "and the audio are of the same recording", line=line)
            scored = union([(max(0.0, s), min(duration, e)) for s, e, _, _ in uem[uri]])
        native = segments.get(uri, [])
        outside.add(uri, duration, native, rttm_of.get(uri), uem[uri] if uem is not None else [])
        if source.labels == "classes":
            classes = convert_classes(native, source.label_map, annotated, rttm_of.get(uri))
        else:
            classes = convert_speakers(native, annotated)
        classes = {c: intersect(iv, scored) for c, iv in classes.items()}  # reference cropped to the UEM
        regions[uri] = scored
        targets[uri] = frame_targets(classes, scored, n_frames)
        for c in CLASSES:
            for start, end in classes.get(c, []):
                references.append(Segment(uri, start, end, c))
        manifest.append({"uri": uri, "audio": str(audio), "duration": round(duration, 6),
                         "sample_rate": sample_rate, "channels": channels, "num_frames": n_frames,
                         **({"domain": source.domains[uri]} if source.domains is not None else {})})

    outside.check(corpus, split)
    hours = _class_hours(corpus, split, annotated, references, regions)
    _write_outputs(out_dir, corpus, split, spec, annotated, source.uris, references, regions, manifest, targets,
                   outside.as_dict())
    with atomic_open(out_dir / "class_hours.tsv") as f:
        hours.to_csv(f, sep="\t", index=False)
    return hours


def _class_hours(corpus, split, annotated, references, regions) -> pd.DataFrame:
    scored_hours = sum(e - s for spans in regions.values() for s, e in spans) / 3600
    rows = []
    for c in CLASSES:
        known = c in annotated
        hours = sum(s.end - s.start for s in references if s.label == c) / 3600 if known else float("nan")
        rows.append({"corpus": corpus, "split": split, "class": c, "annotated": known,
                     "hours": hours, "scored_hours": scored_hours, "files": len(regions)})
    return pd.DataFrame(rows)


def _write_outputs(out_dir, corpus, split, spec, annotated, uris, references, regions, manifest, targets, outside):
    out_dir.mkdir(parents=True, exist_ok=True)
    prov = provenance_json(corpus=corpus, split=split, adapter=spec.get("adapter"), frame_rate=FRAME_RATE,
                           hop=HOP, win=WIN)
    with atomic_open(out_dir / "reference.rttm") as f:
        write_rttm(references, f)
    with atomic_open(out_dir / "uem.uem") as f:
        write_uem(regions, f)
    with atomic_open(out_dir / "files.lst") as f:
        f.write("".join(f"{u}\n" for u in uris))
    with atomic_open(out_dir / "manifest.tsv") as f:
        pd.DataFrame(manifest).to_csv(f, sep="\t", index=False)
    with atomic_path(out_dir / "targets.h5") as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["classes"] = list(CLASSES)
            h5.attrs["annotated"] = [c in annotated for c in CLASSES]
            h5.attrs["frame_rate"] = FRAME_RATE
            h5.attrs["unknown"] = UNKNOWN
            h5.attrs["provenance"] = prov
            for uri, t in targets.items():
                h5.create_dataset(uri, data=t, compression="gzip")
    info = {"corpus": corpus, "split": split, "classes": {c: c in annotated for c in CLASSES},
            "outside_audio": outside, "provenance": json.loads(prov)}
    with atomic_open(out_dir / "annotated.json") as f:
        json.dump(info, f, indent=2)
