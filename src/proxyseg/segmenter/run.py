"""``proxyseg segment``: a model folder (:mod:`.export`) applied to any audio files or folders.

Per input file ``<uri>`` (the file name without extension, with whitespace, control characters, path
separators and leading dots replaced by ``_``, and ``_2``, ``_3``... when names collide: :func:`collect_audio`)
it writes, under the output folder:

* ``probs/<uri>.h5``: ``probs`` float32 (T, 4), ``logits`` float32 (T, 4), ``H`` float16 (T, K) on the
  shared 20 ms frame grid, a time-decimated spectrogram ``X_preview`` (for the report) and attributes
  (audio, duration, model folder, provenance);
* ``rttm/<uri>.rttm``: thresholded decisions (``speech``/``noise``/``music``/``overlap`` segments);
* ``report/<uri>.html`` and its folder ``report/<uri>/`` (see :mod:`.report`), and ``report/index.html``;
* ``segments.rttm``: the decisions of every file of the run;
* with a model folder distilled from a black-box teacher (``blackbox`` in its settings), the black box runs
  beside the proxy: ``teacher_probs``/``teacher_logits`` (T, 4) in ``probs/<uri>.h5`` (NaN for the classes
  it does not know), ``rttm/<uri>.teacher.rttm`` (its decisions, same thresholds), and the report draws
  both and marks where they disagree;
* ``uris.tsv``: each input file (column ``file``) and its URI (``uri``).

Memory is bounded by the chunk and window sizes, not by the file's length: audio is read piece by piece,
WavLM runs chunk by chunk, intermediate features go to a temporary HDF5 file on disk, and sliding windows
emit finished frames as they go (:mod:`.stream`). A file whose ``probs/<uri>.h5`` already exists (computed
from that same file) is not recomputed (``overwrite=False``), so an interrupted batch run resumes; its RTTM and report are rebuilt
with the current thresholds. A bad file (unreadable, empty, too short) is skipped and the others are
segmented; the run then fails with the list. Audio under the output folders is never read as input.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Iterable, Mapping

import h5py
import numpy as np
import torch
from tqdm import tqdm

from proxyseg.core import aggregate as agg
from proxyseg.core.atomic import atomic_open, atomic_path
from proxyseg.core.errors import InputError
from proxyseg.features.wavlm import load_wavlm, plan_chunks
from proxyseg.core.frames import CLASSES, FRAME_RATE, HOP, SAMPLE_RATE, WIN
from proxyseg.core.rttm import Segment, write_rttm
from proxyseg.proxy.infer import sigmoid
from proxyseg.proxy.model import load_proxy
from proxyseg.core.provenance import provenance_json
from proxyseg.evaluate.scoring import binarize
from proxyseg.core.device import resolve_device
from proxyseg.teacher.model import load_teacher
from proxyseg.segmenter.export import load_settings
from proxyseg.settings import Scoring
from proxyseg.segmenter.report import inside
from proxyseg.segmenter.stream import AudioReader, spectrogram_range, stream_window_average
from proxyseg.dictionary.spectrogram import level_gain, scaled

log = logging.getLogger("proxyseg.segment")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".sph")

#: Folders written under the output folder; audio in them is never taken as input.
OUTPUT_DIRS = ("probs", "rttm", "report", ".tmp")
#: Width (columns) of the spectrogram preview stored for the report.
PREVIEW_COLUMNS = 2000
#: Frames of spectrogram computed per piece (60 s).
SPECTROGRAM_BLOCK = 3000

__all__ = ["safe_uri", "collect_audio", "parse_thresholds", "Segmenter", "segment_files"]


def safe_uri(stem: str) -> str:
    """``stem`` as a URI that RTTM and paths can hold: whitespace and control characters would split or forge
    RTTM lines, path separators and leading dots would put outputs outside their folders; each becomes ``_``."""
    uri = "".join("_" if c.isspace() or c in "/\\" or unicodedata.category(c)[0] in "CZ" else c for c in stem)
    rest = uri.lstrip(".")
    return "_" * (len(uri) - len(rest)) + rest or "_"


def _ours(path: Path, out_dir) -> bool:
    """Whether ``path`` lies in a folder ``segment`` writes under ``out_dir`` (its explanation WAVs are audio)."""
    return out_dir is not None and any(path.resolve().is_relative_to(Path(out_dir, d).resolve()) for d in OUTPUT_DIRS)


def collect_audio(paths: Iterable[str | os.PathLike], out_dir=None) -> list[tuple[str, Path]]:
    """``(uri, path)`` of every audio file named or found (recursively) in the folders named, sorted by URI.

    URIs are the file names without extension, made safe (:func:`safe_uri`) and unique: a name that maps to a
    URI already taken gets ``_2``, ``_3``... (case-insensitively, for case-insensitive file systems). Files in
    the folders this command writes under ``out_dir`` are never inputs, so a rerun sees the same files."""
    paths = [Path(p) for p in paths]
    found: dict[Path, Path] = {}  # resolved -> as named; a file named twice is segmented once
    for p in paths:
        if p.is_dir():
            listed = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
            kept = [q for q in listed if not _ours(q, out_dir)]
            if len(kept) < len(listed):
                log.info("%s: %d file(s) under the output folder %s not read (this command's outputs)", p,
                         len(listed) - len(kept), out_dir)
        elif p.is_file():
            if _ours(p, out_dir):
                raise InputError(p, f"inside the output folder {out_dir} (in {'/, '.join(OUTPUT_DIRS)}/), which "
                                 "this command rewrites; copy it elsewhere to segment it")
            kept = [p]
        else:
            raise InputError(p, "no such file or folder")
        for q in kept:
            found.setdefault(q.resolve(), q)
    if not found:
        raise InputError(paths[0] if paths else None, f"no audio file ({', '.join(AUDIO_SUFFIXES)}) found")
    files = list(found.values())
    bases = [safe_uri(p.stem) for p in files]
    taken, out = {b.casefold() for b in bases}, {}
    for p, base in zip(files, bases):
        uri, n = base, 1
        while uri.casefold() in out or (n > 1 and uri.casefold() in taken):
            n += 1
            uri = f"{base}_{n}"
        if uri != base:
            log.warning("%r: URI %r: its name gives the same URI as %r's, %r (see uris.tsv)", str(p), uri,
                        str(out[base.casefold()][1]), base)
        elif uri != p.stem:
            log.info("%r: URI %r (whitespace, control characters, path separators and leading dots become _)",
                     str(p), uri)
        out[uri.casefold()] = (uri, p)
    return sorted(out.values())


def _write_uris(files: list[tuple[str, Path]], path: Path) -> None:
    """``uris.tsv``: file and URI of every input (fields with a tab, newline or quote are quoted, as in CSV)."""
    def field(text):
        return f'"{text.replace(chr(34), 2 * chr(34))}"' if any(c in text for c in '\t\n\r"') else text

    with atomic_open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write("file\turi\n" + "".join(f"{field(str(p))}\t{uri}\n" for uri, p in files))


def parse_thresholds(values: Iterable[str] | None, default: float = 0.5) -> dict[str, float]:
    """``["0.4", "music=0.6"]`` -> one threshold per class: a bare number sets every class, ``class=value``
    one class (later values win)."""
    out = {c: float(default) for c in CLASSES}
    for v in values or []:
        name, _, value = v.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise InputError(None, f"--threshold {v!r}: expected a number or CLASS=NUMBER") from None
        if not 0.0 <= number <= 1.0:
            raise InputError(None, f"--threshold {v!r}: thresholds are probabilities in [0, 1]")
        if name:
            if name not in CLASSES:
                raise InputError(None, f"--threshold {v!r}: unknown class {name!r}; classes are {list(CLASSES)}")
            out[name] = number
        else:
            out = {c: number for c in out}
    return out


class _Preview:
    """Mean-pooled spectrogram columns accumulated from pieces given in order."""

    def __init__(self, num_frames: int, n_freq: int, columns: int = PREVIEW_COLUMNS):
        self.per = max(1, math.ceil(num_frames / columns))
        self.sums = np.zeros((math.ceil(num_frames / self.per) if num_frames else 0, n_freq), dtype=np.float64)
        self.counts = np.zeros(self.sums.shape[0])

    def add(self, first: int, x: np.ndarray) -> None:
        cols = np.arange(first, first + len(x)) // self.per
        edges = np.flatnonzero(np.diff(np.concatenate([[-1], cols])))
        self.sums[cols[edges]] += np.add.reduceat(x.astype(np.float64), edges, axis=0)
        self.counts[cols[edges]] += np.diff(np.concatenate([edges, [len(x)]]))

    def result(self) -> np.ndarray:
        return (self.sums / np.maximum(self.counts, 1)[:, None]).astype(np.float16)


class Segmenter:
    """Loads a model folder once and applies it to files (``process``)."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", batch_size: int = 16,
                 teacher: bool = True):
        self.model_dir = Path(model_dir)
        self.settings = s = load_settings(model_dir)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        # model folders exported before the option existed have no key: they get today's default
        self.aggregate = agg.check(s.get("aggregate", agg.DEFAULT))
        self.proxy, _ = load_proxy(self.model_dir / s["proxy"]["file"], self.device)
        self.W = self.proxy.W.detach().float().cpu().numpy()
        self.theta = self.proxy.theta.weight.detach().float().cpu().numpy()[:, :, 0]
        self.n_fft = int(s["spectrogram"]["n_fft"])
        self.win_length = int(s["spectrogram"]["win_length"])
        # folders exported before spectrogram.level_db existed have no key: the raw level, as they were trained
        self.level_db = s["spectrogram"].get("level_db")
        self.classes = model_classes(s)
        self.teacher = self.wavlm = self.blackbox = None
        if s.get("blackbox") and teacher:  # the explained black box, run beside its proxy
            from proxyseg.teacher.blackbox import load_blackbox

            self.blackbox = load_blackbox(s["blackbox"]["kind"], s["blackbox"].get("path"), str(self.device))
        if s["input"] == "wavlm":
            self.teacher, _ = load_teacher(self.model_dir / s["teacher"]["file"], self.device)
            w = s["wavlm"]
            if w.get("untrained"):
                log.warning("the model folder's WavLM is UNTRAINED (random weights, the offline demo's): its "
                            "decisions say the mechanics work, not how good a segmenter is")
            # the waveform normalisation the feature cache was extracted with (per chunk, the cache's chunk
            # plan); model folders exported before it was recorded had raw waveforms
            if "do_normalize" not in w:
                log.info("the model folder does not record do_normalize: WavLM input is not normalised, as "
                         "features were extracted before proxyseg normalised it")
            self.wavlm = load_wavlm(w["path"], w.get("revision"),
                                    normalize=bool(w.get("do_normalize", False))).to(self.device)

    # ------------------------------------------------------------------------------------------ stages

    def _features(self, reader: AudioReader, tmp: h5py.File, preview: _Preview, bar) -> float:
        """WavLM states chunk by chunk, fused by the teacher's layer weights (``mixed``), and X; returns the
        file's gain before X (spectrogram.level_db; 1.0 at the raw level)."""
        T = reader.num_frames
        F = self.n_fft // 2 + 1
        X = tmp.create_dataset("X", (T, F), dtype=np.float16, chunks=(min(T, 250) or 1, F))

        gain = 1.0 if self.level_db is None else level_gain(reader.block_powers(), self.level_db)

        def spectrogram(a, b):
            x = spectrogram_range(lambda i, j: scaled(reader.read(i, j), gain), a, b, self.n_fft,
                                  self.win_length).astype(np.float16)
            X[a:b] = x
            preview.add(a, x.astype(np.float32))

        if self.wavlm is None:
            for a in range(0, T, SPECTROGRAM_BLOCK):
                b = min(T, a + SPECTROGRAM_BLOCK)
                spectrogram(a, b)
                bar.update(b - a)
            return gain
        w = self.settings["wavlm"]
        D = self.wavlm.config.hidden_size
        mixed = tmp.create_dataset("mixed", (T, D), dtype=np.float32, chunks=(min(T, 250) or 1, D))
        layers = list(w["layers"])
        for plan in plan_chunks(T, max(1, round(w["chunk_seconds"] * FRAME_RATE)),
                                round(w["overlap_seconds"] * FRAME_RATE)):
            wav = torch.from_numpy(reader.read(*plan.samples)).to(self.device)[None]
            with torch.inference_mode():
                hidden = self.wavlm(wav, output_hidden_states=True).hidden_states
                states = torch.stack([hidden[j] for j in layers], dim=2)  # (1, t, L, D)
                if states.shape[1] != plan.ctx_end - plan.ctx_start:
                    raise RuntimeError(f"WavLM returned {states.shape[1]} frames for a chunk of "
                                       f"{plan.ctx_end - plan.ctx_start}; is it a WavLM with hop 320?")
                lo = plan.keep_start - plan.ctx_start
                kept = states[:, lo:lo + plan.keep_end - plan.keep_start].half().float()  # like the cache
                m = self.teacher.fusion.mix(kept)  # (1, D, t)
            mixed[plan.keep_start:plan.keep_end] = m[0].T.cpu().numpy()
            spectrogram(plan.keep_start, plan.keep_end)
            bar.update(plan.keep_end - plan.keep_start)
        return gain

    def _fused(self, tmp: h5py.File, T: int, bar) -> None:
        """S = instance-normalised fused states, window-averaged like the teacher's dump."""
        D = tmp["mixed"].shape[1]
        S = tmp.create_dataset("S", (T, D), dtype=np.float16, chunks=(min(T, 250) or 1, D))

        def write(a, b, outs):
            S[a:b] = outs[0].astype(np.float16)

        t = self.settings["teacher"]
        stream_window_average(lambda w: (self.teacher.fusion.norm(w),), lambda a, b: tmp["mixed"][a:b], T,
                              t["window_frames"], t["step_frames"], write, self.batch_size, self.device,
                              progress=bar.update, aggregate=self.aggregate, logits_first=False)

    def _proxy(self, source: h5py.Dataset, out: h5py.File, T: int, bar) -> None:
        K = self.W.shape[1]
        logits = out.create_dataset("logits", (T, len(CLASSES)), dtype=np.float32)
        probs = out.create_dataset("probs", (T, len(CLASSES)), dtype=np.float32)
        H = out.create_dataset("H", (T, K), dtype=np.float16, chunks=(min(T, 250) or 1, K))

        def forward(w):
            o = self.proxy(w)
            return o["logits"], o["H"]

        def write(a, b, outs):
            logits[a:b] = outs[0]
            probs[a:b] = sigmoid(outs[0])
            H[a:b] = outs[1].astype(np.float16)

        p = self.settings["proxy"]
        stream_window_average(forward, lambda a, b: source[a:b].astype(np.float32), T, p["window_frames"],
                              p["step_frames"], write, self.batch_size, self.device, progress=bar.update,
                              aggregate=self.aggregate)

    def _blackbox(self, reader: AudioReader, out: h5py.File, T: int, bar) -> None:
        """The black-box teacher on the whole file (its own windows), on the same frames as the proxy."""
        import json

        logits = self.blackbox.logits(reader.read(0, reader.num_samples))[:T]
        if len(logits) < T:
            logits = np.concatenate([logits, np.full((T - len(logits), len(CLASSES)), np.nan, np.float32)])
        out.create_dataset("teacher_logits", data=logits.astype(np.float32))
        out.create_dataset("teacher_probs", data=sigmoid(logits).astype(np.float32))
        out.attrs["teacher"] = json.dumps(self.blackbox.describe())
        out.attrs["teacher_classes"] = json.dumps(list(self.blackbox.classes))
        bar.update(T)

    # -------------------------------------------------------------------------------------------- file

    @torch.no_grad()
    def process(self, audio: str | os.PathLike, out_h5: str | os.PathLike, tmp_dir: str | os.PathLike,
                uri: str | None = None) -> dict:
        """Frame probabilities, activations H and the spectrogram preview of one file -> ``out_h5``
        (written atomically; the temporary feature file in ``tmp_dir`` is removed afterwards)."""
        reader = AudioReader(audio)
        T = reader.num_frames
        uri = uri or safe_uri(Path(audio).stem)
        if T == 0:
            raise InputError(audio, f"shorter than one frame ({WIN} samples at 16 kHz): nothing to segment")
        tmp_path = inside(tmp_dir, f"{uri}.features.h5")
        tmp_path.parent.mkdir(parents=True, exist_ok=True)
        stages = (3 if self.wavlm is not None else 2) + (self.blackbox is not None)
        preview = _Preview(T, self.n_fft // 2 + 1)
        try:
            with h5py.File(tmp_path, "w") as tmp, atomic_path(out_h5) as out_tmp, \
                    tqdm(total=T * stages, unit="frame", unit_scale=True, desc=uri, file=sys.stderr,
                         dynamic_ncols=True, mininterval=1.0) as bar:
                gain = self._features(reader, tmp, preview, bar)
                if self.wavlm is not None:
                    self._fused(tmp, T, bar)
                    source = tmp["S"]
                else:
                    source = tmp["X"]
                with h5py.File(out_tmp, "w") as out:
                    self._proxy(source, out, T, bar)
                    if self.blackbox is not None:
                        self._blackbox(reader, out, T, bar)
                    out.create_dataset("X_preview", data=preview.result())
                    out.attrs.update(uri=uri, audio=str(Path(audio).resolve()), duration=reader.duration,
                                     num_frames=T, frame_rate=FRAME_RATE, preview_frames_per_column=preview.per,
                                     model_dir=str(self.model_dir.resolve()), input=self.settings["input"],
                                     classes=json.dumps(list(self.classes)),  # the other columns: never trained
                                     n_fft=self.n_fft, win_length=self.win_length, gain=gain,
                                     provenance=provenance_json(stage="segment", audio=str(audio),
                                                                model=str(self.model_dir),
                                                                settings={k: v for k, v in self.settings.items()
                                                                          if k != "provenance"},
                                                                device=str(self.device)))
        finally:
            tmp_path.unlink(missing_ok=True)
        return {"uri": uri, "frames": T, "duration": reader.duration}


def _segments(uri: str, probs: np.ndarray, thresholds: Mapping[str, float], classes=CLASSES) -> list[Segment]:
    return [Segment(uri, a, b, name) for name, spans in binarize(probs, dict(thresholds)).items() for a, b in spans
            if name in classes]


def model_classes(settings: dict) -> tuple[str, ...]:
    """The classes a model folder decides: ``classes``, within its black box's where it has one (folders
    exported before this rule list all four; a proxy of Silero or pyannote learned no music or noise)."""
    classes = [c for c in settings.get("classes") or CLASSES if c in CLASSES]
    if settings.get("blackbox"):
        known = settings["blackbox"].get("classes") or classes
        classes = [c for c in classes if c in known]
    return tuple(classes)


def _reusable(h5_path: Path, audio: Path, teacher: bool = False) -> bool:
    """Whether ``h5_path`` holds this file's probabilities (and, with ``teacher``, the black box's): a URI
    made unique may name another file next run."""
    try:
        with h5py.File(h5_path, "r") as h5:
            return h5.attrs.get("audio") == str(audio.resolve()) and (not teacher or "teacher_probs" in h5)
    except OSError:  # missing or unreadable: computed again
        return False


def segment_files(model_dir, inputs, out_dir, thresholds: Mapping[str, float] | None = None, device: str = "auto",
                  batch_size: int = 16, overwrite: bool = False, report: bool = True,
                  report_settings: dict | None = None, teacher: bool = True) -> list[dict]:
    """Segment every audio file of ``inputs`` (files or folders) into ``out_dir`` (module docstring).

    A bad file (unreadable, empty, too short: an ``InputError``) is skipped with a log line and the others are
    segmented; then an ``InputError`` lists the skipped files. A single file raises its own error at once.
    Other errors (a full disk, a bug) stop the run. ``out_dir/uris.tsv`` maps every file to its URI.
    """
    from proxyseg.segmenter.report import build_index, build_report

    out_dir = Path(out_dir)
    files = collect_audio(inputs, out_dir)
    segmenter = Segmenter(model_dir, device, batch_size, teacher=teacher)
    thresholds = dict(thresholds or parse_thresholds(None, segmenter.settings.get("threshold", Scoring.threshold)))
    log.info("segmenting %d file(s) with %s (%s input) on %s; thresholds %s", len(files), model_dir,
             segmenter.settings["input"], segmenter.device, thresholds)
    _write_uris(files, out_dir / "uris.tsv")
    done, all_segments, failed = [], [], []
    try:
        for uri, path in tqdm(files, desc="files", unit="file", file=sys.stderr, disable=len(files) < 2):
            h5_path = inside(out_dir / "probs", f"{uri}.h5")
            try:
                if overwrite or not _reusable(h5_path, path, segmenter.blackbox is not None):
                    if h5_path.is_file() and not overwrite:
                        log.info("%s: %s is not this file's (or is unreadable): recomputed", uri, h5_path)
                    segmenter.process(path, h5_path, out_dir / ".tmp", uri)
                else:
                    log.info("%s: %s exists, not recomputed (overwrite to redo)", uri, h5_path)
                with h5py.File(h5_path, "r") as h5:
                    probs = h5["probs"][()]
                    teacher_probs = h5["teacher_probs"][()] if segmenter.blackbox is not None else None
                segments = _segments(uri, probs, thresholds, segmenter.classes)
                with atomic_open(inside(out_dir / "rttm", f"{uri}.rttm")) as f:
                    write_rttm(segments, f)
                if teacher_probs is not None:
                    known = segmenter.blackbox.classes
                    with atomic_open(inside(out_dir / "rttm", f"{uri}.teacher.rttm")) as f:
                        write_rttm([g for g in _segments(uri, np.nan_to_num(teacher_probs), thresholds)
                                    if g.label in known], f)
                record = {"uri": uri, "audio": str(path), "probs": str(h5_path), "segments": len(segments),
                          "duration": float(len(probs) * HOP / SAMPLE_RATE)}
                if report:
                    record["report"] = str(build_report(segmenter, uri, path, h5_path, segments, thresholds,
                                                        out_dir / "report", **(report_settings or {})))
            except InputError as exc:
                if len(files) == 1:
                    raise
                log.error("skipped: %s", exc)
                failed.append(str(exc))
                continue
            all_segments += segments
            done.append(record)
    finally:  # also when interrupted: no temporary feature folder left behind
        shutil.rmtree(out_dir / ".tmp", ignore_errors=True)
    with atomic_open(out_dir / "segments.rttm") as f:
        write_rttm(all_segments, f)
    if report:
        build_index(done, out_dir / "report")
    if failed:
        raise InputError(None, f"{len(failed)} of {len(files)} file(s) not segmented (the others' outputs are "
                               "written):\n  " + "\n  ".join(failed))
    return done
