"""NMF dictionary pre-training (METHOD §4): class-pure annotated segments -> sparse NMF -> W.

Training material, as the authors drew it: for each class, the *annotated segments* of the training
split, i.e. the maximal runs of frames whose harmonised target is 1 (class annotated, inside the scored
regions, and active). A run shorter than ``min_seconds`` is skipped; a run longer than ``max_seconds`` is
cut to its central ``max_seconds`` (one segment per annotated run, like the authors' 4 s cut; the centre
keeps away from the run's edges, where annotated onsets and offsets are least exact). Up to the requested
number of segments per class is drawn without replacement (seeded); when fewer runs qualify all are taken
and a warning names the class and both counts. Runs of one class are disjoint and each gives at most one
segment, so no frame is drawn twice for a class, and every drawn frame has its class active (the share is
measured and recorded in ``dictionary.json`` anyway, with the share of frames where each *other* class is
active too: AragonRadio's classes overlap in time). The segments' spectrograms are concatenated along
time and factorised with unit-norm atoms.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import h5py
import numpy as np

from proxyseg.core.atomic import atomic_open, atomic_path
from proxyseg.core.device import resolve_device
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, FRAME_RATE, UNKNOWN
from proxyseg.dictionary.nmf import sparse_nmf
from proxyseg.core.provenance import provenance_json, seed_everything
from proxyseg.settings import MATERIALS, NMF, Runtime

log = logging.getLogger("proxyseg.dictionary.build")



def active_runs(active: np.ndarray) -> np.ndarray:
    """``(n, 2)`` int array of ``[start, end)`` frame ranges of the maximal runs of True in ``active``."""
    edges = np.diff(np.concatenate([[0], np.asarray(active, dtype=np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def segment_frames(min_seconds: float, max_seconds: float) -> tuple[int, int]:
    """Shortest and longest segment in frames (a run of n frames lasts n / FRAME_RATE seconds)."""
    if not 0 < min_seconds <= max_seconds:
        raise InputError(None, f"nmf min_seconds ({min_seconds}) must be positive and at most max_seconds "
                               f"({max_seconds})")
    shortest = max(1, math.ceil(min_seconds * FRAME_RATE - 1e-6))
    longest = max(shortest, math.floor(max_seconds * FRAME_RATE + 1e-6))
    return shortest, longest


def teacher_targets(logits: np.ndarray, confidence: float) -> np.ndarray:
    """Frame targets from a teacher's logits ``(T, 4)``: 1 where its probability is at least ``confidence``,
    0 where at most ``1 - confidence``, else (and for a class it does not know, NaN) ``UNKNOWN``."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.full(logits.shape, UNKNOWN, dtype=np.int8)
    with np.errstate(over="ignore", invalid="ignore"):
        p = 1.0 / (1.0 + np.exp(-logits))
        out[p >= confidence] = 1
        out[p <= 1 - confidence] = 0
    return out


def read_frame_targets(handle: h5py.File, confidence: float,
                       path=None) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``(source, {uri: (targets, known)})``: frame targets ``(T, 4)`` int8 (1 active, 0 inactive,
    ``UNKNOWN``) and the known classes (bool ``(4,)``) per URI, from either file that can say where a class
    is (``source``):

    * ``"labels"``: a harmonised ``targets.h5`` (one dataset per URI); known = annotated somewhere in the file;
    * ``"teacher"``: a teacher dump or inference file (groups holding ``logits``,
      :func:`proxyseg.teacher.dumpfile.dump_groups`): the teacher's decisions at ``confidence``
      (:func:`teacher_targets`); known = its ``known_classes``.

    The one reader of both, for the dictionary's material and the explanations' segments."""
    from proxyseg.teacher.dumpfile import dump_groups, known_classes

    groups = dump_groups(handle)
    if groups:
        names = set(known_classes(handle))
        known = np.array([c in names for c in CLASSES])
        return "teacher", {uri: (teacher_targets(g["logits"][()], confidence), known) for uri, g in groups.items()}
    out = {}
    for uri, obj in handle.items():
        if not isinstance(obj, h5py.Dataset):
            raise InputError(path or handle.filename, f"{uri!r} is neither frame targets nor a group holding "
                                                      "logits: give targets.h5, a teacher dump or an inference file")
        t = obj[()]
        out[uri] = (t, (t != UNKNOWN).any(axis=0))
    return "labels", out


def _background(t: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Frames where every known class is inactive (0): none of the classes, e.g. silence."""
    if not known.any():
        return np.zeros(len(t), dtype=bool)
    return (t[:, known] == 0).all(axis=1)


BACKGROUND = "background"  # the segments of none of the known classes (nmf.background)


def draw_segments(pairs, counts: dict[str, int], min_seconds: float, max_seconds: float,
                  rng: np.random.Generator, material: str = NMF.material, confidence: float = NMF.confidence,
                  background: int = NMF.background) -> tuple[np.ndarray, dict[str, dict]]:
    """Concatenated ``(F, T)`` spectrogram of annotated segments of each class, and what was drawn.

    ``pairs``: (spectrogram.h5, targets.h5) of the training split(s), or with ``material="teacher"``
    (spectrogram.h5, teacher dump.h5): then a frame's target is the teacher's confident decision
    (:func:`teacher_targets`). For each class of ``counts`` with a positive count, the candidates are the
    runs of frames whose target is 1 lasting at least ``min_seconds`` (all files pooled, in pair then URI
    order), each cut to its central ``max_seconds``; ``counts[class]`` of them are drawn without
    replacement with ``rng`` (all of them, with a warning, when fewer qualify). ``background`` more come
    from runs where every known class is 0. Returns the spectrogram and, per class: segments requested,
    runs found, runs skipped as too short, segments drawn (and how many were cut), frames and seconds
    drawn, ``active_share`` (share of drawn frames with the class active: 1.0 by construction) and
    ``also_active`` (share of drawn frames where each other class is active; None where it is unknown).
    """
    unknown = set(counts) - set(CLASSES)
    if unknown:
        raise InputError(None, f"nmf segments: unknown class(es) {sorted(unknown)}; known: {list(CLASSES)}")
    if material not in MATERIALS:
        raise InputError(None, f"nmf material {material!r}: choose one of {MATERIALS}")
    shortest, longest = segment_frames(min_seconds, max_seconds)
    handles = [(h5py.File(s, "r"), h5py.File(t, "r")) for s, t in pairs]
    what = "teacher-confident" if material == "teacher" else "annotated"
    try:
        targets, known = {}, {}
        for i, ((spec_path, target_path), (sh, th)) in enumerate(zip(pairs, handles)):
            source, read = read_frame_targets(th, confidence, target_path)
            if material == "teacher" and source != "teacher":
                raise InputError(target_path, "no teacher logits: nmf material 'teacher' reads teacher dumps "
                                              "(teacher/dump/<corpus>/train.h5)")
            if material == "labels" and source != "labels":
                raise InputError(target_path, "this is a teacher dump, not labels: set nmf.material: teacher "
                                              "or give labels/<corpus>/<split>/targets.h5")
            for uri, (t, k) in read.items():
                if uri not in sh:
                    raise InputError(spec_path, f"no spectrogram of {uri} (it has targets in {target_path})")
                targets[(i, uri)], known[(i, uri)] = t[:sh[uri].shape[0]], k
        pieces, summary = [], {}
        wanted = [(name, n, lambda t, key, c=CLASSES.index(name): t[:, c] == 1) for name, n in counts.items()]
        wanted.append((BACKGROUND, background, lambda t, key: _background(t, known[key])))
        for name, n, active in wanted:
            if n <= 0:
                continue
            c = CLASSES.index(name) if name in CLASSES else None
            runs = [(key, start, end) for key, t in targets.items() for start, end in active_runs(active(t, key))]
            candidates = [(key, start, end) for key, start, end in runs if end - start >= shortest]
            if len(candidates) < n:
                log.warning("dictionary: %d %s segment(s) requested, but the training split has only %d %s "
                            "%s run(s) of at least %g s (%d shorter ones skipped): all %d are drawn",
                            n, name, len(candidates), what, name, min_seconds, len(runs) - len(candidates),
                            len(candidates))
                chosen = np.arange(len(candidates))
            else:
                chosen = np.sort(rng.choice(len(candidates), size=n, replace=False))
            frames, cut, drawn_targets = 0, 0, []
            for j in chosen:
                (i, uri), start, end = candidates[j]
                if end - start > longest:  # the central max_seconds of a long run
                    start += (end - start - longest) // 2
                    end, cut = start + longest, cut + 1
                pieces.append(handles[i][0][uri][start:end].astype(np.float32))
                drawn_targets.append(targets[(i, uri)][start:end])
                frames += end - start
            drawn = np.concatenate(drawn_targets) if drawn_targets else np.zeros((0, len(CLASSES)), np.int8)
            frames = int(frames)
            summary[name] = {
                "requested": int(n), "runs": len(runs), "skipped_short": len(runs) - len(candidates),
                "segments": len(chosen), "cut_to_max": cut, "frames": frames,
                "seconds": round(frames / FRAME_RATE, 2),
                "active_share": (float((drawn[:, c] == 1).mean()) if c is not None else 1.0) if frames else None,
                # None where the other class is unknown on every drawn frame (not annotated there)
                "also_active": {o: float((drawn[:, k] == 1).mean()) if (drawn[:, k] != UNKNOWN).any() else None
                                for k, o in enumerate(CLASSES) if k != c}}
        if not pieces:
            hint = ("" if material == "teacher" else "; for unlabelled audio (adapter folder) set nmf.material: "
                    "teacher")
            raise InputError(pairs[0][1], f"no {what} run of at least {min_seconds} s of any requested class "
                                          f"({sorted(k for k, v in counts.items() if v > 0)}): the dictionary has "
                                          f"nothing to learn{hint}")
        return np.concatenate(pieces).T, summary
    finally:
        for s, t in handles:
            s.close()
            t.close()


def pretrain_dictionary(pairs, out_dir: str | os.PathLike, settings: NMF | dict | None, seed: int,
                        runtime: Runtime | dict | None = None) -> dict:
    """Learn W and write ``dictionary.npz``, ``costs.tsv``, ``atoms.png`` and ``dictionary.json``
    (``settings.corpora`` is the workflow's: the pairs are the corpora's)."""
    s = NMF.parse(settings)
    rt = Runtime.parse(runtime)
    out_dir = Path(out_dir)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    X, summary = draw_segments(pairs, s["segments"], s["min_seconds"], s["max_seconds"], rng, s.material,
                               s.confidence, s.background)
    drawn = {name: c["segments"] for name, c in summary.items()}
    for name, c in summary.items():
        log.info("%s: %d of %d requested segment(s), %d frames (%.1f s), class active on %s of them; %d run(s) "
                 "found, %d shorter than %g s skipped, %d cut to %g s", name, c["segments"], c["requested"],
                 c["frames"], c["seconds"], c["active_share"], c["runs"], c["skipped_short"], s["min_seconds"],
                 c["cut_to_max"], s["max_seconds"])
    with h5py.File(pairs[0][0], "r") as h5:
        freqs = np.asarray(h5.attrs["freqs_hz"])
        n_fft, win_length = int(h5.attrs["n_fft"]), int(h5.attrs["win_length"])
    device = str(resolve_device(rt.device))
    log.info("NMF on %d frames x %d bins (segments %s), K=%d, beta=%s, mu=%s, %d iterations on %s",
             X.shape[1], X.shape[0], drawn, s["components"], s["beta"], s["mu"], s["iterations"], device)
    atom_classes = None
    if s.per_class:  # one sub-dictionary per class, from its own segments (pieces are drawn class by class)
        W, costs, atom_classes = _per_class(X, summary, s, seed, device)
    else:
        result = sparse_nmf(X, s["components"], beta=s["beta"], mu=s["mu"], iterations=s["iterations"], seed=seed,
                            device=device)
        W, costs = result.W.cpu().numpy().astype(np.float32), result.costs
    record = {"settings": s, "seed": seed, "segments_drawn": drawn, "segments": summary, "frames": int(X.shape[1]),
              "final_cost": costs[-1] if costs else None, "n_fft": n_fft,
              "win_length": win_length, "device": device}
    if atom_classes is not None:
        record["atom_classes"] = atom_classes
    prov = provenance_json(**record)
    with atomic_path(out_dir / "dictionary.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, W=W, freqs_hz=freqs, costs=np.asarray(costs), provenance=prov)
    with atomic_open(out_dir / "costs.tsv") as f:
        f.write("iteration\tcost\n" + "".join(f"{i + 1}\t{c:.6g}\n" for i, c in enumerate(costs)))
    plot_atoms(out_dir / "atoms.png", W, freqs, costs)
    with atomic_open(out_dir / "dictionary.json") as f:
        json.dump(json.loads(prov), f, indent=2)
    return record


def _per_class(X: np.ndarray, summary: dict, s: NMF, seed: int, device: str):
    """``nmf.per_class``: the K atoms shared equally among the classes drawn (the first ones take the
    remainder), each class's atoms learned from its own segments only, so that a class's atoms are its own
    (class-specific sub-dictionaries, as L2I and the authors' by-design follow-up). Returns ``(W, costs
    summed over the classes per iteration, the class of each atom)``."""
    names = [name for name, c in summary.items() if c["frames"] > 0]
    if s["components"] < len(names):
        raise InputError(None, f"nmf per_class: {s['components']} components cannot be shared among "
                               f"{len(names)} classes ({names}); raise nmf.components")
    sizes = [s["components"] // len(names) + (i < s["components"] % len(names)) for i in range(len(names))]
    parts, costs, classes, offset = [], None, [], 0
    for name, c in summary.items():
        cols = slice(offset, offset + c["frames"])
        offset += c["frames"]
        if c["frames"] == 0:
            continue
        k = sizes[names.index(name)]
        log.info("per-class NMF: %d atoms for %s from %d frames", k, name, c["frames"])
        res = sparse_nmf(X[:, cols], k, beta=s["beta"], mu=s["mu"], iterations=s["iterations"], seed=seed,
                         device=device)
        parts.append(res.W.cpu().numpy().astype(np.float32))
        costs = list(res.costs) if costs is None else [a + b for a, b in zip(costs, res.costs)]
        classes += [name] * k
    return np.concatenate(parts, axis=1), costs or [], classes


def plot_atoms(path, W: np.ndarray, freqs: np.ndarray, costs) -> None:
    """Atoms sorted by spectral centroid, frequency in Hz, beside the cost per iteration."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = np.argsort((W * freqs[:, None]).sum(0) / (W.sum(0) + 1e-12))
    fig = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    im = ax.imshow(W[:, order], aspect="auto", origin="lower", cmap="magma",
                   extent=[0, W.shape[1], freqs[0], freqs[-1]])
    ax.set_xlabel("atom (sorted by spectral centroid)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(f"NMF dictionary W: {W.shape[1]} unit-norm atoms")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax2.plot(np.arange(1, len(costs) + 1), costs)
    ax2.set_yscale("log")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("cost  D(X|WH) + mu |H|_1")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
