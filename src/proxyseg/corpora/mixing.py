"""Mixing corpus: MUSAN-style training material from folders of speech, music and noise recordings.

Users without AragonRadio get music and noise labels this way, and the teacher sees overlapped speech
with exact boundaries. Each source file carries one whole-file label (its folder: ``speech/``, ``music/``
or ``noise/``); excerpts are placed on a timeline at random, seeded, and the labels record exactly the
samples where each excerpt was placed (positions and lengths are whole milliseconds, so the RTTM's
three decimals are exact). Speech excerpts are trimmed of leading and trailing silence (``trim_db``
below their loudest 10 ms) so that a label does not cover a recording's silent margins; pauses inside an
excerpt stay labelled speech, as whole-file labels imply.

Levels: each speech excerpt at a nominal level (±3 dB); music and noise beds ``music_snr`` / ``noise_snr``
dB below it (speech-to-background ratio, RMS over each excerpt); a second, overlapping speech excerpt
``overlap_snr`` dB below the one it overlaps (the authors' augmentation ranges: noise 5-20, music 1-20,
overlap 1-10 dB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from proxyseg.core.atomic import atomic_dir
from proxyseg.core.errors import InputError
from proxyseg.core.audio import audio_info, load_audio
from proxyseg.core.provenance import provenance_json
from proxyseg.settings import Mix
from proxyseg.corpora.harmonise import overlap_regions

SR = 16000
MS = SR // 1000                     # samples per millisecond: every position is a multiple of this
REF = 0.05                          # RMS of speech at its nominal level
SOURCE_CLASSES = ("speech", "music", "noise")
AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}


def validate_settings(settings: Mix | dict | None) -> Mix:
    """Defaults filled in; a bad key or value is an InputError naming it (:class:`proxyseg.settings.Mix`)."""
    return Mix.parse(settings, "mix-corpus settings")


# ------------------------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class Source:
    path: Path
    name: str          # path relative to the sources folder, for the record
    seconds: float


def index_sources(root: Path) -> dict[str, list[Source]]:
    """Audio files under ``root/speech``, ``root/music`` and ``root/noise`` (searched recursively)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "sources folder not found; it should hold speech/, music/ and noise/ subfolders "
                               "of recordings (one whole-file label per folder)")
    out = {}
    for cls in SOURCE_CLASSES:
        folder = root / cls
        if not folder.is_dir():
            raise InputError(folder, f"missing folder '{cls}/': put the {cls} recordings there "
                                     f"({', '.join(sorted(AUDIO_EXT))})")
        paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT)
        if not paths:
            raise InputError(folder, f"no audio files ({', '.join(sorted(AUDIO_EXT))}) in this folder")
        sources = []
        for p in paths:
            seconds, _, _ = audio_info(p)
            if seconds < 0.25:
                raise InputError(p, "source recording shorter than 0.25 s; remove it")
            sources.append(Source(p, str(p.relative_to(root)), seconds))
        out[cls] = sources
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _trim(x: np.ndarray, trim_db: float | None) -> tuple[np.ndarray, int]:
    """Drop leading/trailing 10 ms frames more than ``trim_db`` below the loudest one; (rest, samples cut)."""
    if trim_db is None or len(x) < 160:
        return x, 0
    n = len(x) // 160
    energy = np.square(x[:n * 160].astype(np.float64)).reshape(n, 160).mean(axis=1)
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-trim_db / 10))
    return x[loud[0] * 160:(loud[-1] + 1) * 160], int(loud[0]) * 160


def _fade(x: np.ndarray, samples: int = 80) -> np.ndarray:
    """5 ms raised-cosine ramps so placed excerpts do not click."""
    k = min(samples, len(x) // 2)
    if k:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
        x = x.copy()
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def _excerpt(src: Source, rng: np.random.Generator, seconds: float, loop: bool) -> tuple[np.ndarray, float]:
    """``seconds`` of ``src`` from a random offset (looped when ``loop`` and the file is shorter)."""
    if src.seconds >= seconds:
        offset = float(rng.uniform(0, src.seconds - seconds))
        return load_audio(src.path, offset, offset + seconds), offset
    x = load_audio(src.path)
    if loop:
        n = int(round(seconds * SR))
        x = np.tile(x, n // max(len(x), 1) + 1)[:n]
    return x, 0.0


# ------------------------------------------------------------------------------------------------ mixing


class _Timeline:
    def __init__(self, n: int):
        self.n = n
        self.audio = np.zeros(n, dtype=np.float64)
        self.placed: list[dict] = []   # one record per placed excerpt

    def place(self, cls: str, x: np.ndarray, start: int, gain_db: float, src: Source, offset: float) -> tuple[int, int]:
        """Add ``x`` (unit RMS scaled to REF * gain) at sample ``start``; returns its exact [start, end)."""
        start = int(start) // MS * MS
        length = min(len(x), self.n - start) // MS * MS
        if length <= 0:
            return start, start
        rms = _rms(x[:length])
        if rms < 1e-6:
            return start, start
        self.audio[start:start + length] += _fade(x[:length]) * (REF * 10 ** (gain_db / 20) / rms)
        self.placed.append({"class": cls, "start": start, "end": start + length, "gain_db": round(gain_db, 2),
                            "source": src.name, "source_offset": round(offset, 3)})
        return start, start + length


def _speech_excerpt(sources, rng, s, exclude: Source | None = None):
    """A trimmed, non-silent speech excerpt; several tries against silent stretches."""
    pool = [x for x in sources if x is not exclude] or sources
    for _ in range(8):
        src = pool[int(rng.integers(len(pool)))]
        x, offset = _excerpt(src, rng, float(rng.uniform(*s["speech_seconds"])), loop=False)
        x, cut = _trim(x, s["trim_db"])
        if len(x) >= 0.2 * SR and _rms(x) > 1e-5:
            return src, x, offset + cut / SR
    return None


def mix_file(sources: dict[str, list[Source]], rng: np.random.Generator, s: dict) -> tuple[np.ndarray, list[dict]]:
    """One mixture and the record of every excerpt placed in it (sample extents)."""
    seconds = float(rng.uniform(*s["duration"]))
    n = int(round(seconds * 1000)) * MS
    tl = _Timeline(n)
    has = {c: rng.random() < s[f"{c}_probability"] for c in SOURCE_CLASSES}
    if not any(has.values()):
        has[SOURCE_CLASSES[int(rng.integers(3))]] = True
    for cls in ("music", "noise"):
        if not has[cls]:
            continue
        length = int(n * rng.uniform(*s["bed_fraction"])) // MS * MS
        start = int(rng.integers(0, n - length + 1))
        src = sources[cls][int(rng.integers(len(sources[cls])))]
        x, offset = _excerpt(src, rng, length / SR, loop=True)
        tl.place(cls, x, start, -float(rng.uniform(*s[f"{cls}_snr"])), src, offset)
    if has["speech"]:
        t = int(rng.uniform(0, s["gap_seconds"][1]) * SR)
        while t < n - int(0.3 * SR):
            picked = _speech_excerpt(sources["speech"], rng, s)
            if picked is None:
                break
            src, x, offset = picked
            level = float(rng.uniform(-3, 3))
            start, end = tl.place("speech", x, t, level, src, offset)
            if end <= start:
                break
            last = end
            if rng.random() < s["overlap_probability"] and end - start > int(0.4 * SR):
                second = _speech_excerpt(sources["speech"], rng, s, exclude=src)
                if second is not None:
                    src2, x2, offset2 = second
                    at = int(rng.integers(start, end - int(0.3 * SR)))
                    _, end2 = tl.place("speech", x2, at, level - float(rng.uniform(*s["overlap_snr"])), src2, offset2)
                    last = max(last, end2)
            t = last + int(rng.uniform(*s["gap_seconds"]) * SR)
    audio = tl.audio
    peak = float(np.max(np.abs(audio))) if n else 0.0
    if peak > 0.9:  # keep every ratio, avoid clipping
        audio = audio * (0.9 / peak)
    return audio.astype(np.float32), tl.placed


def _intervals(placed: list[dict], cls: str) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for a, b in sorted((p["start"], p["end"]) for p in placed if p["class"] == cls):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def labels_of(placed: list[dict]) -> list[tuple[str, int, int]]:
    """(class, start sample, end sample) of speech, music, noise and overlap, each class's extents merged.

    Overlap: samples covered by two or more speech excerpts at once, each excerpt its own "speaker" (so two
    excerpts of one recording overlap too).
    """
    out = []
    for cls in ("speech", "music", "noise"):
        out += [(cls, a, b) for a, b in _intervals(placed, cls)]
    excerpts = {i: [(p["start"], p["end"])] for i, p in enumerate(placed) if p["class"] == "speech"}
    out += [("overlap", a, b) for a, b in overlap_regions(excerpts)]
    return sorted(out, key=lambda r: (r[1], r[2], r[0]))


_README = """# Mixing corpus `{name}`

Generated by `proxyseg mix-corpus` (seed {seed}) from the recordings in `{sources}`: excerpts of
speech, music and noise placed at random with whole-file labels (the folder a recording lies in), speech
over music at {music_snr} dB, over noise at {noise_snr} dB, a second speech excerpt {overlap_snr} dB below
the one it overlaps. Labels are exact: they record the samples where each excerpt was placed.
Every split draws from the same source recordings (different excerpts).

- `audio/<uri>.wav`: 16 kHz mono 16-bit
- `rttm/<split>.rttm`: name field = class (`speech`, `music`, `noise`, `overlap`); all four annotated
- `lists/<split>.lst`: one URI per line
- `sources.tsv`: every placed excerpt (uri, class, onset, duration, gain_db, source, source_offset)

Use it as a corpus with `adapter: generic`, `labels: classes`, `root:` this folder (see docs/outputs.md).
"""


def build_mix_corpus(sources_dir: Path, out_dir: Path, settings: dict, seed: int) -> dict[str, int]:
    """Write a mixing corpus into ``out_dir`` atomically; returns the number of files per split."""
    s = validate_settings(settings)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(None, f"mix-corpus seed must be a non-negative integer, got {seed!r}")
    sources = index_sources(Path(sources_dir))
    out_dir = Path(out_dir)
    records = []
    with atomic_dir(out_dir) as tmp:
        for sub in ("audio", "rttm", "lists"):
            (tmp / sub).mkdir()
        for si, (split, count) in enumerate(s["files"].items()):
            seqs = np.random.SeedSequence([int(seed), si]).spawn(count)
            uris, lines = [], []
            for i, ss in enumerate(seqs):
                uri = f"mix_{split}_{i:04d}"
                audio, placed = mix_file(sources, np.random.default_rng(ss), s)
                sf.write(str(tmp / "audio" / f"{uri}.wav"), audio, SR, subtype="PCM_16")
                uris.append(uri)
                for cls, a, b in labels_of(placed):
                    lines.append(f"SPEAKER {uri} 1 {a / SR:.3f} {(b - a) / SR:.3f} <NA> <NA> {cls} <NA> <NA>\n")
                for p in placed:
                    records.append(f"{uri}\t{p['class']}\t{p['start'] / SR:.3f}\t{(p['end'] - p['start']) / SR:.3f}"
                                   f"\t{p['gain_db']}\t{p['source']}\t{p['source_offset']}\n")
            (tmp / "rttm" / f"{split}.rttm").write_text("".join(lines), encoding="utf-8")
            (tmp / "lists" / f"{split}.lst").write_text("".join(u + "\n" for u in uris), encoding="utf-8")
        (tmp / "sources.tsv").write_text("uri\tclass\tonset\tduration\tgain_db\tsource\tsource_offset\n"
                                         + "".join(records), encoding="utf-8")
        (tmp / "README.md").write_text(_README.format(
            name=out_dir.name, seed=seed, sources=sources_dir, music_snr=s["music_snr"], noise_snr=s["noise_snr"],
            overlap_snr=s["overlap_snr"]), encoding="utf-8")
        (tmp / "provenance.json").write_text(provenance_json(
            step="mix_corpus", seed=int(seed), sources=str(sources_dir), settings=s,
            source_files={c: [x.name for x in v] for c, v in sources.items()}) + "\n", encoding="utf-8")
    return dict(s["files"])
