"""A self-contained model folder for ``proxyseg segment``: everything needed to go from audio to decisions
and explanations, with the settings the models were trained with.

Layout (``settings.json`` says which files are present)::

    settings.json     format, proxy input, windows, spectrogram, WavLM layers and chunking, thresholds
    provenance.json   when and on which host the folder was made (the other files have no time, host or
                      working-directory path: identical exports give identical bytes)
    proxy.pt          the proxy checkpoint (Psi, Theta, W)
    dictionary.npz    the pre-learned NMF dictionary the proxy started from
    teacher.pt        the teacher checkpoint, whose layer fusion makes the proxy's input S (WavLM input only)
    wavlm/            a copy of the WavLM folder (WavLM input only; or settings name a hub id instead)
    blackbox.bin      a black-box teacher's checkpoint (teacher.kind pyannote with a local file; settings
                      ``blackbox``: kind, checkpoint, classes), run beside the proxy by ``proxyseg segment``
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from proxyseg.core import aggregate as agg
from proxyseg.core.atomic import atomic_dir
from proxyseg.core.errors import InputError
from proxyseg.core.provenance import portable_path, provenance, without_machine
from proxyseg.core.safeload import load_checkpoint
from proxyseg.settings import Explain, Export, Inference, Scoring

FORMAT = "proxyseg-model/1"
SETTINGS = "settings.json"

__all__ = ["FORMAT", "export_model", "load_settings"]


def _attrs(path, what: str) -> dict:
    try:
        with h5py.File(path, "r", locking=False) as h5:
            return {k: (v.tolist() if isinstance(v, np.ndarray) else (v.item() if hasattr(v, "item") else v))
                    for k, v in h5.attrs.items()}
    except OSError as err:
        raise InputError(path, f"cannot open {what} ({err})") from err


def export_model(proxy_pt, teacher_pt, dictionary_npz, features_h5, spectrograms_h5, wavlm: str, out_dir,
                 step_fraction: float = Inference.step, threshold: float = Scoring.threshold,
                 tau: float = Explain.tau, relevance: str = Explain.relevance, copy_wavlm: bool = Export.copy_wavlm, name: str | None = None,
                 aggregate: str = Inference.aggregate, blackbox: dict | None = None) -> dict:
    """Write the model folder ``out_dir`` (atomically: a half-written folder never replaces a good one).

    ``features_h5`` / ``spectrograms_h5``: any cache the models were trained on; their attributes give the
    WavLM layers and chunking and the STFT settings, so new audio is processed exactly like training data.
    ``wavlm``: the WavLM folder or hub id; a local folder is copied when ``copy_wavlm`` (hub ids never are).
    ``blackbox``: ``{"kind", "checkpoint"}`` of a black-box teacher (spectrogram-input proxies only; then
    ``teacher_pt``, ``features_h5`` and ``wavlm`` may be None): a local checkpoint file is copied.
    """
    ckpt = load_checkpoint(proxy_pt, "proxy checkpoint")
    hp = ckpt["hparams"]
    inp = hp.get("input", "wavlm")
    window = int(hp["crop_frames"])
    spec = _attrs(spectrograms_h5, "spectrogram cache")
    settings = {
        "format": FORMAT,
        "name": name or Path(out_dir).name,
        "input": inp,
        "classes": list(hp.get("classes", ["speech", "noise", "music", "overlap"])),
        "proxy": {"file": "proxy.pt", "window_frames": window, "step_frames": max(1, round(window * step_fraction)),
                  "components": int(hp["components"]), "dictionary_mode": hp.get("dictionary", hp.get("mode"))},
        "dictionary": "dictionary.npz",
        "spectrogram": {"n_fft": int(spec["n_fft"]), "win_length": int(spec["win_length"]),
                        "level_db": spec.get("level_db")},  # None: the raw level
        "aggregate": agg.check(aggregate),
        "threshold": float(threshold),
        "tau": float(tau),
        "relevance": str(relevance),  # explain.relevance: how the segment report explains a decision
    }
    if blackbox and inp != "spectrogram":
        raise InputError(proxy_pt, "a black-box teacher has no WavLM features: export a spectrogram-input proxy")
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(proxy_pt, tmp / "proxy.pt")
        shutil.copyfile(dictionary_npz, tmp / "dictionary.npz")
        if blackbox:
            from proxyseg.teacher.blackbox import KNOWN

            checkpoint = blackbox.get("checkpoint")
            if checkpoint and Path(checkpoint).is_file():
                shutil.copyfile(checkpoint, tmp / "blackbox.bin")
                checkpoint, copied = "blackbox.bin", True
            else:
                copied = False
            settings["blackbox"] = {"kind": blackbox["kind"], "checkpoint": checkpoint, "copied": copied,
                                    "classes": list(KNOWN[blackbox["kind"]])}
            # the proxy's other Theta rows were never trained by a judge: it decides its black box's classes only
            settings["classes"] = [c for c in settings["classes"] if c in KNOWN[blackbox["kind"]]]
        if inp == "wavlm":
            feats = _attrs(features_h5, "feature cache")
            tckpt = load_checkpoint(teacher_pt, "teacher checkpoint")
            thp = tckpt["hparams"]
            twin = int(thp["crop_frames"])
            layers = [int(i) for i in np.atleast_1d(feats["layers"])]
            if len(layers) != int(thp["num_layers"]):
                raise InputError(features_h5, f"caches {len(layers)} layers but the teacher {teacher_pt} fuses "
                                 f"{thp['num_layers']}: give the feature cache the teacher was trained on")
            shutil.copyfile(teacher_pt, tmp / "teacher.pt")
            local = Path(wavlm).is_dir()
            if local and copy_wavlm:
                shutil.copytree(wavlm, tmp / "wavlm")
                ref = "wavlm"
            else:
                ref = str(Path(wavlm).resolve()) if local else str(wavlm)
            settings["teacher"] = {"file": "teacher.pt", "window_frames": twin,
                                   "step_frames": max(1, round(twin * step_fraction))}
            settings["wavlm"] = {"model": ref, "copied": bool(local and copy_wavlm),
                                 "revision": feats.get("revision") or None, "layers": layers,
                                 "chunk_seconds": float(feats["chunk_seconds"]),
                                 "overlap_seconds": float(feats["overlap_seconds"]),
                                 "untrained": bool(feats.get("untrained", False)),
                                 "do_normalize": bool(feats.get("do_normalize", False))}
        record = provenance(stage="export", proxy=portable_path(proxy_pt), teacher=portable_path(teacher_pt),
                            dictionary=portable_path(dictionary_npz), wavlm=portable_path(wavlm),
                            step_fraction=step_fraction, aggregate=aggregate)
        settings["provenance"] = without_machine(record)
        (tmp / SETTINGS).write_text(json.dumps(settings, indent=2, default=str) + "\n")
        (tmp / "provenance.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return settings


_NUMBER = (int, float)
#: settings.json keys (dotted) that ``proxyseg segment`` reads without a default, and their types
_REQUIRED = {"input": str, "classes": list, "proxy": dict, "proxy.file": str, "proxy.window_frames": int,
             "proxy.step_frames": int, "proxy.components": int, "dictionary": str, "spectrogram": dict,
             "spectrogram.n_fft": int, "spectrogram.win_length": int}
_REQUIRED_WAVLM = {"teacher": dict, "teacher.file": str, "teacher.window_frames": int, "teacher.step_frames": int,
                   "wavlm": dict, "wavlm.model": str, "wavlm.copied": bool, "wavlm.layers": list,
                   "wavlm.chunk_seconds": _NUMBER, "wavlm.overlap_seconds": _NUMBER}
_OPTIONAL = {"threshold": _NUMBER, "tau": _NUMBER, "aggregate": str, "relevance": str, "blackbox": dict}
_TYPE_WORDS = {str: "a string", list: "a list", dict: "a mapping", int: "an integer", bool: "true or false",
               _NUMBER: "a number"}


def _get(s: dict, dotted: str):
    node = s
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _check_schema(s: dict, path: Path) -> None:
    """Required keys with their types, a known input, positive sizes and plain file names (a folder from
    someone else: ``proxy.file: ../../x`` must not read outside it); an :class:`InputError` naming the key."""
    def bad(key, why):
        return InputError(path, f"key `{key}` {why}; the model folder is damaged or from another version: "
                                "export it again (`proxyseg export`, or the workflow's results/export/<proxy>/)")

    required = {**_REQUIRED, **(_REQUIRED_WAVLM if s.get("input") == "wavlm" else {})}
    for key, kind in {**required, **_OPTIONAL}.items():
        value = _get(s, key)
        if value is _MISSING:
            if key in required:
                raise bad(key, "is missing")
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(key, f"is {value!r}, not {_TYPE_WORDS[kind]}")
    if s["input"] not in ("wavlm", "spectrogram"):
        raise bad("input", f"is {s['input']!r}, not wavlm or spectrogram")
    for key in ("proxy.window_frames", "proxy.step_frames", "proxy.components", "spectrogram.n_fft",
                *(["teacher.window_frames", "teacher.step_frames"] if s["input"] == "wavlm" else [])):
        if _get(s, key) < 1:
            raise bad(key, f"is {_get(s, key)}, not a positive size")
    files = ["proxy.file", "dictionary", *(["teacher.file"] if s["input"] == "wavlm" else []),
             *(["wavlm.model"] if s["input"] == "wavlm" and s["wavlm"]["copied"] else []),
             *(["blackbox.checkpoint"] if (s.get("blackbox") or {}).get("copied") else [])]
    for key in files:
        name = _get(s, key)
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise bad(key, f"is {name!r}, not the name of a file in the model folder")


def _check_checkpoints(s: dict, model_dir: Path) -> None:
    """The proxy (and teacher) checkpoints are the ones settings.json was written for: another proxy's
    checkpoint copied in would otherwise fail mid-file with a shape error, or run with the wrong windows."""
    path = model_dir / s["proxy"]["file"]
    hp = load_checkpoint(path, "proxy checkpoint").get("hparams")
    if not isinstance(hp, dict):
        raise InputError(path, "not a proxyseg proxy checkpoint (no hparams); export the model folder again")
    bins = s["spectrogram"]["n_fft"] // 2 + 1
    expect = {"components": (s["proxy"]["components"], "proxy.components"),
              "n_freq": (bins, "spectrogram.n_fft // 2 + 1"),
              "crop_frames": (s["proxy"]["window_frames"], "proxy.window_frames")}
    if s["input"] == "spectrogram":
        expect["in_channels"] = (bins, "spectrogram.n_fft // 2 + 1")
    else:
        tpath = model_dir / s["teacher"]["file"]
        thp = load_checkpoint(tpath, "teacher checkpoint").get("hparams")
        if not isinstance(thp, dict):
            raise InputError(tpath, "not a proxyseg teacher checkpoint (no hparams); export the model folder again")
        if thp.get("num_layers") != len(s["wavlm"]["layers"]):
            raise InputError(tpath, f"fuses {thp.get('num_layers')} WavLM layers but {SETTINGS} lists "
                                    f"{len(s['wavlm']['layers'])} (wavlm.layers): it is another model's teacher "
                                    "checkpoint; export the model folder again")
        expect["in_channels"] = (thp.get("dim"), f"the dimension of the teacher's features ({s['teacher']['file']})")
    for key, (want, where) in expect.items():
        if key in hp and hp[key] != want:
            raise InputError(path, f"has {key} {hp[key]!r} but {SETTINGS} needs {want!r} ({where}): it is another "
                                   "model's proxy checkpoint; export the model folder again, or copy it whole")


def load_settings(model_dir) -> dict:
    """``settings.json`` of a model folder, checked (keys and types, and that its checkpoints are the ones it
    was written for); paths inside are resolved against the folder."""
    model_dir = Path(model_dir)
    path = model_dir / SETTINGS
    if not path.is_file():
        raise InputError(model_dir, f"not a proxyseg model folder (no {SETTINGS}); make one with "
                                    "`proxyseg export` or the workflow's results/export/<proxy>/")
    try:
        s = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg})", line=err.lineno) from None
    if not isinstance(s, dict) or s.get("format") != FORMAT:
        got = s.get("format") if isinstance(s, dict) else None
        raise InputError(path, f"format {got!r}, expected {FORMAT!r}; re-export the model")
    _check_schema(s, path)
    needed = [s["proxy"]["file"], s["dictionary"]] + ([s["teacher"]["file"]] if s["input"] == "wavlm" else [])
    missing = [n for n in needed if not (model_dir / n).is_file()]
    if missing:
        raise InputError(model_dir, f"model folder incomplete: missing {missing}")
    _check_checkpoints(s, model_dir)
    if s["input"] == "wavlm":
        model = s["wavlm"]["model"]
        s["wavlm"]["path"] = str(model_dir / model) if s["wavlm"]["copied"] else model
    if s.get("blackbox"):
        b = s["blackbox"]
        b["path"] = str(model_dir / b["checkpoint"]) if b.get("copied") else b.get("checkpoint")
    return s
