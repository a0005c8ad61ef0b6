"""``proxyseg segment``: a model folder (:mod:`.export`) applied to any audio files or folders.

Per input file ``<uri>`` (the file name without extension, with whitespace, control characters, path
separators and leading dots replaced by ``_``, a name over 100 bytes cut there and ended with ``_`` and 8 hex
digits of its hash, and ``_2``, ``_3``... when names collide: :func:`collect_audio`) it writes, under the
output folder:

* ``probs/<uri>.h5``: ``probs`` float32 (T, 4), ``logits`` float32 (T, 4), ``H`` float16 (T, K) on the
  shared 20 ms frame grid, a time-decimated spectrogram ``X_preview`` (for the report) and attributes
  (audio, duration, model folder, provenance);
* ``rttm/<uri>.rttm``: thresholded decisions (``speech``/``noise``/``music``/``overlap`` segments);
* ``report/<uri>.html`` and its folder ``report/<uri>/`` (see :mod:`.report`), and ``report/index.html``;
* ``segments.rttm``: the decisions of every file listed in ``uris.tsv``;
* with a model folder distilled from a black-box teacher (``blackbox`` in its settings), the black box runs
  beside the proxy: ``teacher_probs``/``teacher_logits`` (T, 4) in ``probs/<uri>.h5`` (NaN for the classes
  it does not know), ``rttm/<uri>.teacher.rttm`` (its decisions, same thresholds), and the report draws
  both and marks where they disagree;
* ``uris.tsv``: each file segmented (column ``file``, its absolute path) and its URI (``uri``): this run's
  and those of earlier runs into the folder whose ``probs/<uri>.h5`` and ``rttm/<uri>.rttm`` still exist
  (a file that fails in this run is left out); ``segments.rttm`` and ``report/index.html`` list the same
  files. A file recorded there keeps its URI in later runs, and another file whose name gives that URI
  gets ``_2``...: a run never overwrites the outputs of an earlier run's other file. Files recorded by
  earlier runs keep the decisions (thresholds) those runs wrote;
* ``.lock``: held by a run for its whole length, so runs into one folder take turns (a second one logs
  that it waits).

Memory is bounded by the chunk and window sizes, not by the file's length: audio is read piece by piece,
WavLM runs chunk by chunk, intermediate features go to a temporary HDF5 file on disk, and sliding windows
emit finished frames as they go (:mod:`.stream`).

A file's stored ``probs/<uri>.h5`` is reused (``overwrite=False``), so an interrupted batch run resumes, only
when its attributes say it was computed by the same model folder (``model_sha256``: the folder's files), with
the same settings (``probability_settings``: aggregation, windows, level) from the same file (``audio``,
``audio_size``, ``audio_mtime_ns``, ``audio_sha256``), and its probabilities are finite (NaN only in the black
box's columns of classes it does not know); otherwise it is recomputed, with a log line saying why. Reused or
not, its RTTM and report are rebuilt with the current thresholds. Probabilities that are not finite are never
stored: that file fails. A bad file (unreadable, empty, too short, or an OSError reading it or writing its
outputs) is skipped and the others are segmented; the run then fails with the list. A full disk or quota or a
read-only file system stops the run. Audio under the output folders is never read as input.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
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
from proxyseg.core.rttm import Segment, read_rttm, write_rttm
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
#: Held by a run for its whole length (:func:`_exclusive`): runs into one output folder take turns.
LOCK = ".lock"
#: Longest URI kept whole (UTF-8 bytes): outputs add up to ~30 (``.<uri>_2.teacher.rttm.tmp-<pid>``).
URI_BYTES = 100
#: OSError numbers that stop a run (every later file would fail alike); other OSErrors fail their file only.
STOPS_RUN = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
#: Width (columns) of the spectrogram preview stored for the report.
PREVIEW_COLUMNS = 2000
#: Frames of spectrogram computed per piece (60 s).
SPECTROGRAM_BLOCK = 3000

__all__ = ["safe_uri", "collect_audio", "parse_thresholds", "Segmenter", "segment_files"]


def _plain(stem: str) -> str:
    """Whitespace, control characters, path separators and leading dots of ``stem`` as ``_``."""
    uri = "".join("_" if c.isspace() or c in "/\\" or unicodedata.category(c)[0] in "CZ" else c for c in stem)
    rest = uri.lstrip(".")
    return "_" * (len(uri) - len(rest)) + rest or "_"


def safe_uri(stem: str) -> str:
    """``stem`` as a URI that RTTM and paths can hold: whitespace and control characters would split or forge
    RTTM lines, path separators and leading dots would put outputs outside their folders; each becomes ``_``.
    A name over :data:`URI_BYTES` (UTF-8) is cut there, at a character boundary, and ends with ``_`` and 8 hex
    digits of a hash of the whole name: a file system holds 255 bytes per name, and outputs add suffixes."""
    uri = _plain(stem)
    if len(uri.encode("utf-8")) > URI_BYTES:
        digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        uri = uri.encode("utf-8")[:URI_BYTES - 9].decode("utf-8", "ignore") + "_" + digest
    return uri


def _ours(path: Path, out_dir) -> bool:
    """Whether ``path`` lies in a folder ``segment`` writes under ``out_dir`` (its explanation WAVs are audio)."""
    return out_dir is not None and any(path.resolve().is_relative_to(Path(out_dir, d).resolve()) for d in OUTPUT_DIRS)


def collect_audio(paths: Iterable[str | os.PathLike], out_dir=None) -> list[tuple[str, Path]]:
    """``(uri, path)`` of every audio file named or found (recursively) in the folders named, sorted by URI.

    URIs are the file names without extension, made safe (:func:`safe_uri`) and unique: a name that maps to a
    URI already taken gets ``_2``, ``_3``... (case-insensitively, for case-insensitive file systems). A file
    that ``out_dir/uris.tsv`` records (with its outputs) keeps its URI there, and the URIs it records for other
    files are taken: a later run into the same folder never overwrites an earlier run's outputs. Files in the
    folders this command writes under ``out_dir`` are never inputs, so a rerun sees the same files."""
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
    earlier = {}  # casefolded URI -> (URI, file) that earlier runs into out_dir segmented: theirs to keep
    for uri, f in _recorded(Path(out_dir)) if out_dir is not None else []:
        earlier.setdefault(uri.casefold(), (uri, f))
    again = {f.resolve(): uri for uri, f in earlier.values()}
    taken, out = {b.casefold() for b in bases}, {}
    for p in files:  # a file segmented before keeps its URI
        if p.resolve() in again:
            out[again[p.resolve()].casefold()] = (again[p.resolve()], p)
    for p, base in zip(files, bases):
        if p.resolve() in again:
            continue
        uri, n = base, 1
        while uri.casefold() in out or uri.casefold() in earlier or (n > 1 and uri.casefold() in taken):
            n += 1
            uri = f"{base}_{n}"
        if uri != base:
            log.warning("%r: URI %r: its name gives the same URI as %r's, %r (see uris.tsv)", str(p), uri,
                        str((out.get(base.casefold()) or earlier[base.casefold()])[1]), base)
        elif uri != p.stem:
            log.info("%r: URI %r (whitespace, control characters, path separators and leading dots become _; "
                     "names over %d bytes are cut and end with a hash)", str(p), uri, URI_BYTES)
        out[uri.casefold()] = (uri, p)
    return sorted(out.values())


def _write_uris(files: list[tuple[str, Path]], path: Path) -> None:
    """``uris.tsv``: absolute path and URI of every file (fields with a tab, newline or quote are quoted, as
    in CSV)."""
    def field(text):
        return f'"{text.replace(chr(34), 2 * chr(34))}"' if any(c in text for c in '\t\n\r"') else text

    with atomic_open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write("file\turi\n" + "".join(f"{field(str(p.absolute()))}\t{uri}\n" for uri, p in sorted(files)))


def _recorded(out_dir: Path) -> list[tuple[str, Path]]:
    """``(uri, file)`` of ``out_dir/uris.tsv`` whose outputs (``probs/<uri>.h5``, ``rttm/<uri>.rttm``) exist:
    what earlier runs into the folder segmented. Rows that are not a plain URI are left out, with a warning."""
    path = out_dir / "uris.tsv"
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except FileNotFoundError:
        return []
    except (OSError, csv.Error) as exc:
        log.warning("%s: unreadable (%s): the files earlier runs segmented there are not listed", path, exc)
        return []
    if not rows or rows[0] != ["file", "uri"]:
        log.warning("%s: not a proxyseg uris.tsv (header %r): the files it lists are not listed", path, rows[:1])
        return []
    out, bad = [], []
    for row in rows[1:]:
        if len(row) != 2 or _plain(row[1]) != row[1] or len(row[1].encode("utf-8")) > URI_BYTES + 12:
            bad.append(row)
        elif (out_dir / "probs" / f"{row[1]}.h5").is_file() and (out_dir / "rttm" / f"{row[1]}.rttm").is_file():
            out.append((row[1], Path(row[0])))
    if bad:
        log.warning("%s: %d row(s) not a file and a plain URI, left out: %r", path, len(bad), bad[:3])
    return out


@contextlib.contextmanager
def _exclusive(out_dir: Path):
    """Hold ``out_dir/.lock`` for a whole run: a second run into the folder waits for it, instead of both
    writing an index, ``uris.tsv`` and ``segments.rttm`` of their own files only (or HDF5 refusing a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another proxyseg segment run writing to %s", out_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks (some network mounts)
            log.warning("cannot lock %s (%s): do not run two proxyseg segment into %s at once", f.name, exc,
                        out_dir)
        yield


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


def _sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (memory stays small for hours of audio)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def model_fingerprint(model_dir: Path, settings: dict) -> str:
    """sha256 over the names and bytes of every file of the model folder, and of a WavLM folder or black-box
    checkpoint it names outside itself: stored probabilities are reused only for the very same model."""
    roots = [Path(model_dir)]
    for ref in ((settings.get("wavlm") or {}).get("path"), (settings.get("blackbox") or {}).get("path")):
        if ref and Path(ref).exists() and not Path(ref).resolve().is_relative_to(roots[0].resolve()):
            roots.append(Path(ref))
    h = hashlib.sha256()
    for root in roots:
        files = sorted(q for q in root.rglob("*") if q.is_file()) if root.is_dir() else [root]
        for q in files:
            name = q.relative_to(root) if root.is_dir() else q.name
            h.update(f"{name}\0{_sha256(q)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def audio_identity(audio: Path) -> dict:
    """The audio's path, size, modification time and content hash: a recording replaced at the same path is
    another file. Taken before the audio is read, so a file changed meanwhile is recomputed next run."""
    st = os.stat(audio)
    return {"audio": str(Path(audio).resolve()), "audio_size": st.st_size, "audio_mtime_ns": st.st_mtime_ns,
            "audio_sha256": _sha256(audio)}


def _finite(h5: h5py.File) -> bool:
    """Whether stored probabilities are numbers: NaN only in the black box's columns of classes it does not
    know (a crashed or broken run leaves NaN elsewhere)."""
    if not np.isfinite(h5["probs"][()]).all():
        return False
    if "teacher_probs" in h5:
        known = [CLASSES.index(c) for c in json.loads(h5.attrs.get("teacher_classes", "[]")) if c in CLASSES]
        return bool(np.isfinite(h5["teacher_probs"][()][:, known]).all())
    return True


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
        # what stored probabilities must have been computed with to be reused (:func:`_stale`)
        self.fingerprint = model_fingerprint(self.model_dir, s)
        self.probability_settings = json.dumps(
            {"aggregate": self.aggregate, "input": s["input"], "level_db": self.level_db,
             "proxy": [s["proxy"]["window_frames"], s["proxy"]["step_frames"]],
             "teacher": [s["teacher"]["window_frames"], s["teacher"]["step_frames"]] if s["input"] == "wavlm"
             else None}, sort_keys=True)
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
        identity = audio_identity(Path(audio))
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
                    if not _finite(out):  # never stored, so never reused: the file is reported as failed
                        raise InputError(audio, "the model gave NaN or infinite probabilities (NaN or infinite "
                                                "samples in the audio?)")
                    out.attrs.update(identity, model_sha256=self.fingerprint,
                                     probability_settings=self.probability_settings)
                    out.attrs.update(uri=uri, duration=reader.duration,
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


def _stale(h5_path: Path, audio: Path, segmenter: Segmenter) -> str | None:
    """Why ``h5_path`` cannot be reused for ``audio`` (None: it can). Stored probabilities are reused only when
    computed by the same model folder with the same settings from the same bytes at the same path (a URI made
    unique may name another file next run), with the black box's where it runs, and finite."""
    if not h5_path.is_file():
        return "not computed yet"
    try:
        with h5py.File(h5_path, "r") as h5:
            a, st = h5.attrs, audio.stat()
            if a.get("model_sha256") != segmenter.fingerprint:
                return "computed by another model folder (or its files changed since)"
            if a.get("probability_settings") != segmenter.probability_settings:
                return "computed with other settings"
            if a.get("audio") != str(audio.resolve()):
                return "computed from another file"
            if (a.get("audio_size"), a.get("audio_mtime_ns")) != (st.st_size, st.st_mtime_ns):
                return "the audio file changed since (size or modification time)"
            if segmenter.blackbox is not None and "teacher_probs" not in h5:
                return "lacks the black box's probabilities"
            if not _finite(h5):
                return "holds NaN or infinite probabilities (from a crashed or broken run)"
            if a.get("audio_sha256") != _sha256(audio):
                return "the audio's content changed since"
    except (OSError, KeyError, ValueError) as exc:
        return f"unreadable ({exc})"
    return None


def _stops_run(exc: OSError) -> bool:
    """A full disk or quota, a read-only file system: h5py's OSErrors carry the reason in their text only."""
    return exc.errno in STOPS_RUN or any(os.strerror(e) in str(exc) for e in STOPS_RUN)


def segment_files(model_dir, inputs, out_dir, thresholds: Mapping[str, float] | None = None, device: str = "auto",
                  batch_size: int = 16, overwrite: bool = False, report: bool = True,
                  report_settings: dict | None = None, teacher: bool = True) -> list[dict]:
    """Segment every audio file of ``inputs`` (files or folders) into ``out_dir`` (module docstring).

    A bad file (unreadable, empty, too short: an ``InputError``; or an ``OSError`` reading it or writing its
    outputs) is skipped with a log line and the others are segmented; then an ``InputError`` lists the skipped
    files. A single file raises its own error at once. Other errors (a full disk or quota, a read-only file
    system: :data:`STOPS_RUN`; a bug) stop the run. ``out_dir/uris.tsv`` maps every file to its URI.

    Runs into one ``out_dir`` take turns (:func:`_exclusive`), and each lists in ``uris.tsv``,
    ``segments.rttm`` and the index its own files and those earlier runs recorded whose outputs still exist.
    Returns this run's files.
    """
    out_dir = Path(out_dir)
    with _exclusive(out_dir):
        return _segment(model_dir, inputs, out_dir, thresholds, device, batch_size, overwrite, report,
                        report_settings, teacher)


def _earlier(out_dir: Path, uri: str, audio: Path) -> tuple[dict, list[Segment]] | None:
    """Index row and decisions of a file an earlier run segmented into ``out_dir`` (None: unreadable)."""
    h5_path, rttm = inside(out_dir / "probs", f"{uri}.h5"), inside(out_dir / "rttm", f"{uri}.rttm")
    try:
        with h5py.File(h5_path, "r") as h5:
            frames = int(h5.attrs["num_frames"])
        segments = read_rttm(rttm).get(uri, [])
    except (OSError, KeyError, ValueError, InputError) as exc:
        log.warning("%s: outputs of an earlier run unreadable (%s): not listed", uri, exc)
        return None
    record = {"uri": uri, "audio": str(audio), "probs": str(h5_path), "segments": len(segments),
              "duration": frames * HOP / SAMPLE_RATE}
    if inside(out_dir / "report", f"{uri}.html").is_file():
        record["report"] = str(inside(out_dir / "report", f"{uri}.html"))
    return record, segments


def _segment(model_dir, inputs, out_dir: Path, thresholds, device, batch_size, overwrite, report, report_settings,
             teacher) -> list[dict]:
    """:func:`segment_files` holding the output folder's lock."""
    from proxyseg.segmenter.report import build_index, build_report

    files = collect_audio(inputs, out_dir)
    ours = {uri.casefold() for uri, _ in files}
    earlier = [(uri, f) for uri, f in _recorded(out_dir) if uri.casefold() not in ours]
    segmenter = Segmenter(model_dir, device, batch_size, teacher=teacher)
    thresholds = dict(thresholds or parse_thresholds(None, segmenter.settings.get("threshold", Scoring.threshold)))
    log.info("segmenting %d file(s) with %s (%s input) on %s; thresholds %s", len(files), model_dir,
             segmenter.settings["input"], segmenter.device, thresholds)
    if earlier:
        log.info("%s: %d file(s) segmented there by earlier runs stay listed (uris.tsv)", out_dir, len(earlier))
    _write_uris(earlier + files, out_dir / "uris.tsv")
    done, segments_of, failed = [], {}, []
    try:
        for uri, path in tqdm(files, desc="files", unit="file", file=sys.stderr, disable=len(files) < 2):
            h5_path = inside(out_dir / "probs", f"{uri}.h5")
            try:
                stale = "--overwrite" if overwrite else _stale(h5_path, path, segmenter)
                if stale:
                    if h5_path.is_file():
                        log.info("%s: %s recomputed: %s", uri, h5_path, stale)
                    segmenter.process(path, h5_path, out_dir / ".tmp", uri)
                else:
                    log.info("%s: %s reused: same model, settings and audio (--overwrite to redo)", uri, h5_path)
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
            except (InputError, OSError) as exc:
                if isinstance(exc, OSError):
                    if _stops_run(exc):
                        raise
                    exc = InputError(path, f"not segmented: {exc}")
                if len(files) == 1:
                    raise exc
                log.error("skipped: %s", exc)
                failed.append(str(exc))
                continue
            segments_of[uri] = segments
            done.append(record)
    finally:  # also when interrupted: no temporary feature folder left behind
        shutil.rmtree(out_dir / ".tmp", ignore_errors=True)
    # what this run segmented and what earlier runs did (a file that failed now is no longer listed)
    _write_uris(earlier + [(uri, p) for uri, p in files if uri in segments_of], out_dir / "uris.tsv")
    records = list(done)
    for uri, audio in earlier:
        if old := _earlier(out_dir, uri, audio):
            records.append(old[0])
            segments_of[uri] = old[1]
    records.sort(key=lambda r: r["uri"])
    with atomic_open(out_dir / "segments.rttm") as f:
        write_rttm([g for r in records for g in segments_of[r["uri"]]], f)
    if report:
        build_index(records, out_dir / "report")
    if failed:
        raise InputError(None, f"{len(failed)} of {len(files)} file(s) not segmented (the others' outputs are "
                               "written):\n  " + "\n  ".join(failed))
    return done
