"""Static HTML explanation report of a segmented file: one self-contained page per file plus an index.

A page shows an audio player (the original file, by relative path), the spectrogram with the four class
tracks under it (probability curve and decided segments), and, for a clicked segment, the frequency
bands its decision rests on (relevant NMF atoms, METHOD §7) with the listenable explanation and its
residual. No external resource: CSS and JavaScript are inline, data are embedded as JSON, the
spectrogram and the explanation WAVs sit in the folder ``<uri>/`` beside the page.
``<page>#seg=N`` opens the page with segment N selected.

A model distilled from a black box (Silero, pyannote) shows the black box's own decisions too, each
explained through the proxy like the proxy's segments and marked as what it is: a decision of the black box
that the labels or the listener may dispute (``<page>#bb=N`` selects black-box decision N; ticked
disputes download as a TSV). With ``relevance: occlusion`` in the model folder's settings (spectrogram-input
proxies), a segment's relevance is the proxy's logit drop when each active atom's share is removed from its
input (:func:`proxyseg.explain.faithfulness.occlusion_relevance`, over at most :data:`OCCLUSION_SECONDS`),
the explanation that passed the faithfulness test on the black boxes (docs/results.md); else the paper's
``mean_t(h_k) Theta[c, k]``.
"""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

import h5py
import numpy as np
import soundfile as sf

from proxyseg.explain import relevance as ex
from proxyseg.evaluate.scoring import binarize
from proxyseg.core.atomic import atomic_open, atomic_path
from proxyseg.core.frames import CLASSES, HOP, SAMPLE_RATE, WIN
from proxyseg.core.rttm import Segment
from proxyseg.dsp import stft_frequencies
from proxyseg.segmenter.stream import AudioReader
from proxyseg.core.errors import InputError
from proxyseg.settings import RELEVANCES, Explain

log = logging.getLogger("proxyseg.report")

COLORS = {"speech": "#1f77b4", "noise": "#7f7f7f", "music": "#ff7f0e", "overlap": "#d62728"}

__all__ = ["build_report", "build_index", "band_profile", "inside", "blackbox_segments"]

#: The longest span (seconds, from a segment's start) over which relevance by occlusion is computed: the
#: proxy runs once per active atom over it, so a segment of an hour costs no more than one of this length.
OCCLUSION_SECONDS = 30.0

#: Characters of JSON text that HTML could read as markup inside a <script> element (``<!--<script>``
#: there swallows the page's own script), and the line separators older JavaScript rejects.
_JSON_IN_HTML = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def inside(folder, name: str) -> Path:
    """``folder / name``, refused unless it is a plain child of ``folder``: names derive from file names."""
    path = Path(folder) / name
    if not name or name.startswith(".") or Path(os.path.abspath(path)).parent != Path(os.path.abspath(folder)):
        raise ValueError(f"{name!r} is not a plain file name inside {folder}")
    return path


def _json_for_html(data) -> str:
    """JSON for a ``<script type="application/json">`` element: no character can end or re-open markup."""
    return json.dumps(data, separators=(",", ":")).translate(_JSON_IN_HTML)


def band_profile(W: np.ndarray, r: np.ndarray, components, freqs: np.ndarray,
                 bands=ex.DEFAULT_BANDS) -> list[float]:
    """Share of ``Σ_{k relevant} r_k w_k`` per frequency band (sums to 1; zeros when nothing is relevant)."""
    comps = np.asarray(components, dtype=np.int64)
    # the non-negative part of the dictionary, as the masks and prototypes use (explain.py)
    prof = np.zeros(len(freqs)) if comps.size == 0 else np.maximum(np.maximum(W, 0.0)[:, comps] @ r[comps], 0.0)
    top = max(hi for _, hi in bands)
    mass = np.array([prof[(freqs >= lo) & ((freqs < hi) | ((hi == top) & (freqs == hi)))].sum() for lo, hi in bands])
    total = mass.sum()
    return (mass / total).tolist() if total > 0 else [0.0] * len(bands)


def _frame(t: float) -> int:
    """First frame of a decision segment starting at ``t`` seconds (inverse of scoring.binarize)."""
    return max(0, int(round((t * SAMPLE_RATE - (WIN // 2 - HOP // 2)) / HOP)))


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _save_spectrogram(path: Path, preview: np.ndarray) -> None:
    from matplotlib.image import imsave

    img = np.asarray(preview, dtype=np.float32).T  # (F, columns)
    lo, hi = np.percentile(img, [2, 99.5]) if img.size else (0.0, 1.0)
    with atomic_path(path) as tmp:
        imsave(tmp, img, cmap="magma", origin="lower", vmin=lo, vmax=max(hi, lo + 1e-6), format="png")


def _href(target: Path, start: Path) -> str:
    rel = os.path.relpath(Path(target).resolve(), Path(start).resolve()).replace(os.sep, "/")
    return quote(rel, errors="surrogateescape")  # a name that is not UTF-8 keeps its bytes


def _longest(segments: list[Segment], n: int) -> set[int]:
    """Indices of the ``n`` longest segments of each class (those given a listenable explanation)."""
    order = sorted(range(len(segments)), key=lambda i: -(segments[i].end - segments[i].start))
    return {i for name in CLASSES for i in [j for j in order if segments[j].label == name][:max(0, int(n))]}


def blackbox_segments(uri: str, teacher_probs: np.ndarray, thresholds: dict, classes) -> list[Segment]:
    """The black box's decisions (its classes only; NaN columns are the classes it does not know)."""
    spans = binarize(np.nan_to_num(teacher_probs), dict(thresholds))
    return [Segment(uri, a, b, name) for name in CLASSES if name in classes for a, b in spans.get(name, [])]


class _Explainer:
    """A segment's relevance, relevant atoms, band profile and (optionally) listenable explanation, with the
    relevance the model folder names (module docstring)."""

    def __init__(self, segmenter, reader: AudioReader, H, gain: float, tau: float, explain_seconds: float):
        self.reader, self.H, self.gain, self.tau = reader, H, gain, tau
        self.W = np.maximum(segmenter.W, 0.0)  # the mask needs a non-negative W (learned_random may have negatives)
        self.theta = segmenter.theta
        self.n_fft, self.win = segmenter.n_fft, segmenter.win_length
        self.freqs = stft_frequencies(self.n_fft)
        self.audio_frames = max(1, int(round(explain_seconds * SAMPLE_RATE / HOP)))
        self.relevance, self.proxy = str(segmenter.settings.get("relevance", "linear")), None
        if self.relevance not in RELEVANCES:
            raise InputError(Path(segmenter.model_dir) / "settings.json",
                             f"relevance {self.relevance!r}: expected one of {list(RELEVANCES)}; re-export the model")
        if self.relevance == "occlusion":
            if segmenter.settings["input"] == "spectrogram":
                from proxyseg.explain.faithfulness import _Proxy

                self.proxy = _Proxy(model=segmenter.proxy, input="spectrogram")
                self.pad = int(segmenter.settings["proxy"]["window_frames"]) // 2  # the proxy's context
                self.span = max(self.audio_frames, int(round(OCCLUSION_SECONDS * SAMPLE_RATE / HOP)))
            else:  # occlusion of a WavLM proxy's input needs WavLM once per atom: too slow for a report
                log.warning("relevance by occlusion is computed for spectrogram-input proxies only: this report "
                            "uses the paper's linear relevance")
                self.relevance = "linear"

    def _occlusion(self, f0: int, f1: int, c: int, decided: np.ndarray):
        import torch

        from proxyseg.dsp import stft
        from proxyseg.explain.faithfulness import occlusion_relevance

        g = min(f1, f0 + self.span)
        a, b = max(0, f0 - self.pad), min(self.reader.num_frames, g + self.pad)
        x = np.ascontiguousarray(self.reader.read(HOP * a, HOP * (b - 1) + WIN), dtype=np.float32)
        spec = stft(torch.from_numpy(x), n_fft=self.n_fft, win_length=self.win)
        decided = decided[:g - f0] if decided[:g - f0].any() else np.ones(g - f0, bool)
        return occlusion_relevance(self.proxy, None, spec, slice(f0 - a, g - a), c, decided, self.gain, len(x),
                                   self.n_fft, self.win)

    def __call__(self, f0: int, f1: int, c: int, decided: np.ndarray, wavs: str | None, assets: Path,
                 uri: str) -> dict:
        """Fields of a segment's item; ``wavs``: file name stem of its listenable explanation, if it gets one."""
        name = CLASSES[c]
        if self.proxy is not None:
            r_all, H = self._occlusion(f0, f1, c, decided)
        else:
            H = self.H[f0:f1].astype(np.float32).T
            r_all = ex.local_relevance(H, self.theta)
        r, comps = r_all[:, c], ex.relevant_components(r_all, self.tau)[name]
        item = {"relevant": comps[:20].tolist(), "n_relevant": int(comps.size),
                "bands": [round(v, 4) for v in band_profile(self.W, r, comps, self.freqs)],
                "explanation": None, "residual": None}
        if wavs and comps.size:
            g1 = min(f1, f0 + self.audio_frames)
            x = self.reader.read(HOP * f0, HOP * (g1 - 1) + WIN)
            mask = ex.explanation_mask(self.W, H[:, :g1 - f0], comps)
            for key, m in (("explanation", mask), ("residual", 1.0 - mask)):
                _write_wav(assets / f"{wavs}_{key}.wav", ex.masked_audio(x, m, self.n_fft, self.win))
                item[key] = f"{quote(uri)}/{wavs}_{key}.wav"
            item["audio_seconds"] = round((g1 - f0) * HOP / SAMPLE_RATE, 3)
        return item


def build_report(segmenter, uri: str, audio, probs_h5, segments: list[Segment], thresholds: dict, report_dir,
                 explain_audio: int = 5, explain_seconds: float = 8.0, tau: float | None = None) -> Path:
    """Write ``report_dir/<uri>.html`` and ``report_dir/<uri>/`` (spectrogram PNG, explanation WAVs).

    Every decided segment (the proxy's, and the black box's when the file holds its probabilities) gets its
    relevant atoms and frequency-band profile; the ``explain_audio`` longest segments of each class also get
    a listenable explanation and its residual (their first ``explain_seconds``): soft mask of the relevant
    atoms on the magnitude STFT, original phase, ISTFT.
    """
    report_dir = Path(report_dir)
    assets = inside(report_dir, uri)
    assets.mkdir(parents=True, exist_ok=True)
    tau = float(segmenter.settings.get("tau", Explain.tau) if tau is None else tau)
    n_fft = segmenter.n_fft
    freqs = stft_frequencies(n_fft)
    reader = AudioReader(audio)
    blackbox = getattr(segmenter, "blackbox", None)
    with h5py.File(probs_h5, "r") as h5:
        probs = h5["probs"][()]
        teacher_probs = h5["teacher_probs"][()] if "teacher_probs" in h5 else None
        T = probs.shape[0]
        preview = h5["X_preview"][()]
        per = int(h5.attrs["preview_frames_per_column"])
        explain = _Explainer(segmenter, reader, h5["H"], float(h5.attrs.get("gain", 1.0)), tau, explain_seconds)

        def explained(kind, i, seg, decisions, audible):
            c = CLASSES.index(seg.label)
            f0 = min(_frame(seg.start), T - 1)
            f1 = max(f0 + 1, min(T, _frame(seg.end)))
            item = {"id": i, "class": seg.label, "start": round(seg.start, 3), "end": round(seg.end, 3),
                    "prob": round(float(np.nan_to_num(decisions[f0:f1, c]).mean()), 3)}
            wavs = f"{'seg' if kind == 'proxy' else 'bb'}{i:05d}_{seg.label}" if audible else None
            item.update(explain(f0, f1, c, decisions[f0:f1, c] >= thresholds[seg.label], wavs, assets, uri))
            if kind == "blackbox":  # how far the proxy shares the decision it explains
                item["proxy_agrees"] = round(float((probs[f0:f1, c] >= thresholds[seg.label]).mean()), 3)
            return item

        audible = _longest(segments, explain_audio)
        items = [explained("proxy", i, seg, probs, i in audible) for i, seg in enumerate(segments)]
        bb_items = []
        if teacher_probs is not None and blackbox is not None:
            bb = blackbox_segments(uri, teacher_probs, thresholds, blackbox.classes)
            loud = _longest(bb, explain_audio)
            bb_items = [explained("blackbox", i, seg, teacher_probs, i in loud) for i, seg in enumerate(bb)]
    _save_spectrogram(assets / "spectrogram.png", preview)
    classes = getattr(segmenter, "classes", CLASSES)  # the model's classes: no track for an untrained one
    cols = preview.shape[0]
    pooled = np.stack([probs[c * per:(c + 1) * per].max(axis=0) for c in range(cols)]) if cols else probs[:0]
    data = {
        "uri": uri, "duration": round(T * HOP / SAMPLE_RATE, 3), "classes": list(classes),
        "colors": COLORS, "thresholds": thresholds, "tau": tau,
        "bands": [[lo, hi] for lo, hi in ex.DEFAULT_BANDS],
        "spectrogram": f"{quote(uri)}/spectrogram.png", "max_hz": float(freqs[-1]),
        "probs": np.round(pooled[:, [CLASSES.index(c) for c in classes]], 3).T.tolist(), "segments": items,
        "input": segmenter.settings["input"], "model": segmenter.settings.get("name", ""),
        "untrained": bool(segmenter.settings.get("wavlm", {}).get("untrained", False)),
        "relevance": explain.relevance, "occlusion_seconds": OCCLUSION_SECONDS,
    }
    if teacher_probs is not None:
        data["teacher"] = teacher_tracks(segmenter.blackbox, probs, teacher_probs, thresholds, per, cols)
        data["teacher"]["segments"] = bb_items
    page = inside(report_dir, f"{uri}.html")
    with atomic_open(page, encoding="utf-8", errors="backslashreplace") as f:
        f.write(_page(uri, _href(reader.path, report_dir), data))
    return page


def teacher_tracks(blackbox, probs: np.ndarray, teacher_probs: np.ndarray, thresholds: dict, per: int,
                   cols: int) -> dict:
    """The black box beside its proxy: its pooled probabilities per known class, the spans where the two
    decisions differ (seconds) and their frame agreement (F1 of the proxy against the black box)."""
    from proxyseg.core.agreement import frame_f1

    out = {"name": blackbox.kind, "classes": list(blackbox.classes), "probs": {}, "disagree": [], "agreement": {}}
    offset = (WIN // 2 - HOP // 2) / SAMPLE_RATE
    for name in blackbox.classes:
        c = CLASSES.index(name)
        t = np.nan_to_num(teacher_probs[:, c])
        out["probs"][name] = [round(float(t[i * per:(i + 1) * per].max()), 3) for i in range(cols)]
        a, b = probs[:, c] >= thresholds[name], t >= thresholds[name]
        out["agreement"][name] = round(100 * frame_f1(a, b), 1)
        edges = np.diff(np.concatenate([[0], (a != b).astype(np.int8), [0]]))
        for f0, f1 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            out["disagree"].append({"class": name, "start": round(f0 * HOP / SAMPLE_RATE + offset, 3),
                                    "end": round(f1 * HOP / SAMPLE_RATE + offset, 3),
                                    "proxy": bool(a[f0])})
    return out


def build_index(records: list[dict], report_dir) -> Path:
    """``report_dir/index.html``: one row per file with links to its page."""
    report_dir = Path(report_dir)
    rows = []
    for r in records:
        name = html.escape(r["uri"])
        link = f'<a href="{html.escape(quote(r["uri"]))}.html">{name}</a>' if r.get("report") else name
        rows.append(f"<tr><td>{link}</td><td>{r['duration']:.1f}</td><td>{r['segments']}</td>"
                    f"<td>{html.escape(str(r['audio']))}</td></tr>")
    body = ("<h1>proxyseg segmentation report</h1>"
            f"<p>{len(records)} file(s). Click a file to see its spectrogram, class tracks and explanations.</p>"
            "<table id='files'><thead><tr><th>file</th><th>seconds</th><th>segments</th><th>audio</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
    path = report_dir / "index.html"
    with atomic_open(path, encoding="utf-8", errors="backslashreplace") as f:
        f.write(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>proxyseg report</title>"
                f"<style>{_CSS}</style></head><body>{body}"
                "<script>console.log('proxyseg index ready');</script></body></html>")
    return path


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;max-width:1400px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
#view{position:relative;width:100%;user-select:none}
#spectrogram{display:block;width:100%;height:220px;image-rendering:pixelated;cursor:crosshair;background:#000}
#cursor{position:absolute;top:0;width:2px;background:#0f0;pointer-events:none;height:220px;left:0}
.track{position:relative;height:44px;border-bottom:1px solid #ddd;background:#fafafa}
.track .label{position:absolute;left:2px;top:2px;font-size:11px;z-index:2;background:rgba(255,255,255,.7);padding:0 3px}
.track svg{position:absolute;left:0;top:0;width:100%;height:100%}
.seg{position:absolute;top:13px;height:16px;min-width:2px;opacity:.75;cursor:pointer;border-radius:2px}
.bbseg{position:absolute;top:31px;height:7px;min-width:2px;cursor:pointer;background:#fff;border:1px dashed #444;box-sizing:border-box}
.bbseg.disputed{background:#f4c7c3}
.seg.selected,.bbseg.selected{opacity:1;outline:2px solid #000}
.disagree{position:absolute;bottom:0;height:4px;min-width:2px;background:repeating-linear-gradient(45deg,#d00 0 3px,#fff 3px 6px);opacity:.8}
#panel{margin-top:1em;padding:.6em;border:1px solid #ccc;min-height:8em}
#bands svg{width:100%;max-width:640px;height:180px}
.warn,.disputable{background:#fff3cd;padding:.4em;border:1px solid #e0c060}
audio{vertical-align:middle}
"""

_JS = r"""
(function(){
'use strict';
const data = JSON.parse(document.getElementById('report-data').textContent);
const player = document.getElementById('player');
const spec = document.getElementById('spectrogram');
const cursor = document.getElementById('cursor');
const tracks = document.getElementById('tracks');
const NS = 'http://www.w3.org/2000/svg';
const pct = t => (100 * t / data.duration) + '%';
data.classes.forEach(function(cls, c){
  const row = document.createElement('div');
  row.className = 'track'; row.id = 'track-' + cls; row.dataset.cls = cls;
  const label = document.createElement('span');
  label.className = 'label'; label.textContent = cls + ' (threshold ' + data.thresholds[cls] + ')';
  row.appendChild(label);
  const svg = document.createElementNS(NS, 'svg');
  const n = data.probs[c].length;
  svg.setAttribute('viewBox', '0 0 ' + Math.max(n, 1) + ' 1');
  svg.setAttribute('preserveAspectRatio', 'none');
  const line = document.createElementNS(NS, 'polyline');
  line.setAttribute('points', data.probs[c].map((p, i) => (i + 0.5) + ',' + (1 - p)).join(' '));
  line.setAttribute('fill', 'none'); line.setAttribute('stroke', data.colors[cls]);
  line.setAttribute('stroke-width', '1.5'); line.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.appendChild(line);
  row.appendChild(svg);
  tracks.appendChild(row);
});
if (data.teacher) {  // the black box beside its proxy: its probability (dashed) and where they disagree
  data.teacher.classes.forEach(function(cls){
    const row = document.getElementById('track-' + cls);
    const svg = row.querySelector('svg');
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', data.teacher.probs[cls].map((p, i) => (i + 0.5) + ',' + (1 - p)).join(' '));
    line.setAttribute('fill', 'none'); line.setAttribute('stroke', '#444');
    line.setAttribute('stroke-dasharray', '4 3'); line.setAttribute('stroke-width', '1.2');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.appendChild(line);
    row.querySelector('.label').textContent += ', ' + data.teacher.name + ' dashed, agreement F1 '
      + data.teacher.agreement[cls] + ' %';
  });
  data.teacher.disagree.forEach(function(d){
    const e = document.createElement('div');
    e.className = 'disagree';
    e.style.left = pct(d.start); e.style.width = pct(d.end - d.start);
    e.title = d['class'] + ' ' + d.start.toFixed(2) + '-' + d.end.toFixed(2) + ' s: '
      + (d.proxy ? 'the proxy only' : data.teacher.name + ' only');
    document.getElementById('track-' + d['class']).appendChild(e);
  });
}
const kinds = {seg: data.segments, bb: data.teacher ? data.teacher.segments : []};
const disputed = new Set();
function draw(kind, s){
  const d = document.createElement('div');
  d.className = kind === 'seg' ? 'seg' : 'bbseg'; d.id = kind + '-' + s.id; d.dataset.id = s.id;
  d.style.left = pct(s.start); d.style.width = pct(s.end - s.start);
  if (kind === 'seg') { d.style.background = data.colors[s['class']]; }
  d.title = (kind === 'seg' ? '' : data.teacher.name + ' (black box): ') + s['class'] + ' '
    + s.start.toFixed(2) + '-' + s.end.toFixed(2) + ' s';
  d.addEventListener('click', function(){ select(kind, s.id, true); });
  document.getElementById('track-' + s['class']).appendChild(d);
}
kinds.seg.forEach(s => draw('seg', s));
kinds.bb.forEach(s => draw('bb', s));
function fmtHz(v){ return v >= 1000 ? (v / 1000) + ' kHz' : v + ' Hz'; }
function bandsSvg(s){
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 640 180');
  const w = 600 / s.bands.length, peak = Math.max.apply(null, s.bands.concat([1e-9]));
  s.bands.forEach(function(v, b){
    const h = 120 * v / peak;
    const r = document.createElementNS(NS, 'rect');
    r.setAttribute('class', 'band'); r.setAttribute('x', 30 + b * w + 4); r.setAttribute('y', 140 - h);
    r.setAttribute('width', w - 8); r.setAttribute('height', h); r.setAttribute('fill', data.colors[s['class']]);
    const tip = document.createElementNS(NS, 'title'); tip.textContent = (100 * v).toFixed(1) + ' %';
    r.appendChild(tip); svg.appendChild(r);
    const t = document.createElementNS(NS, 'text');
    t.setAttribute('x', 30 + b * w + w / 2); t.setAttribute('y', 158); t.setAttribute('font-size', '10');
    t.setAttribute('text-anchor', 'middle');
    t.textContent = fmtHz(data.bands[b][0]) + '-' + fmtHz(data.bands[b][1]);
    svg.appendChild(t);
    const p = document.createElementNS(NS, 'text');
    p.setAttribute('x', 30 + b * w + w / 2); p.setAttribute('y', 136 - h); p.setAttribute('font-size', '10');
    p.setAttribute('text-anchor', 'middle'); p.textContent = (100 * v).toFixed(0) + '%';
    svg.appendChild(p);
  });
  return svg;
}
function audioRow(label, src, id){
  const div = document.createElement('div');
  const span = document.createElement('span'); span.textContent = label + ': ';
  const a = document.createElement('audio'); a.controls = true; a.preload = 'none'; a.src = src; a.id = id;
  div.appendChild(span); div.appendChild(a); return div;
}
function para(text, id, cls){
  const p = document.createElement('p'); p.textContent = text;
  if (id) { p.id = id; } if (cls) { p.className = cls; } return p;
}
function disputeBox(s){  // a black-box decision the listener can dispute; ticked ones download as a TSV
  const label = document.createElement('label');
  const box = document.createElement('input'); box.type = 'checkbox'; box.id = 'dispute';
  box.checked = disputed.has(s.id);
  box.addEventListener('change', function(){
    if (box.checked) { disputed.add(s.id); } else { disputed.delete(s.id); }
    document.getElementById('bb-' + s.id).classList.toggle('disputed', box.checked);
    document.getElementById('disputes').textContent = 'download the ' + disputed.size + ' disputed decision(s) (TSV)';
  });
  label.appendChild(box);
  label.appendChild(document.createTextNode(' I dispute this decision of ' + data.teacher.name));
  return label;
}
function downloadDisputes(){
  const rows = ['uri\tblack_box\tclass\tstart\tend\tproxy_agrees'];
  Array.from(disputed).sort((a, b) => a - b).forEach(function(id){
    const s = kinds.bb[id];
    rows.push([data.uri, data.teacher.name, s['class'], s.start, s.end, s.proxy_agrees].join('\t'));
  });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([rows.join('\n') + '\n'], {type: 'text/tab-separated-values'}));
  a.download = data.uri + '.disputed.tsv'; document.body.appendChild(a); a.click(); a.remove();
}
if (data.teacher) { document.getElementById('disputes').addEventListener('click', downloadDisputes); }
function select(kind, id, seek){
  const s = kinds[kind][id];
  if (!s) { return; }
  document.querySelectorAll('.selected').forEach(e => e.classList.remove('selected'));
  document.getElementById(kind + '-' + id).classList.add('selected');
  const panel = document.getElementById('panel');
  panel.textContent = '';
  panel.dataset.selected = kind + '-' + id;
  const h = document.createElement('h3');
  h.textContent = (kind === 'bb' ? data.teacher.name + ' (black box) decides ' : '') + s['class'] + ', '
    + s.start.toFixed(2) + ' - ' + s.end.toFixed(2) + ' s (mean probability ' + s.prob + ')';
  panel.appendChild(h);
  if (kind === 'bb') {
    const d = para('A decision of the black box ' + data.teacher.name + ', not a label: the reference labels or you '
      + 'may dispute it (music called speech is the usual case). What follows is the proxy\'s explanation of it; '
      + 'the proxy decides ' + s['class'] + ' on ' + Math.round(100 * s.proxy_agrees) + ' % of these frames'
      + (s.proxy_agrees < 0.5 ? ', so the explanation may describe the proxy more than the black box.' : '.'),
      'disputable', 'disputable');
    d.appendChild(document.createElement('br')); d.appendChild(disputeBox(s));
    panel.appendChild(d);
  }
  const how = data.relevance === 'occlusion'
    ? 'relevance by occlusion through the proxy' + (s.end - s.start > data.occlusion_seconds ? ', over the first ' + data.occlusion_seconds + ' s' : '')
    : 'relevance mean(h_k) x Theta';
  panel.appendChild(para(s.n_relevant + ' relevant NMF component(s) (' + how + ' > ' + data.tau + ')' +
    (s.relevant.length ? ': ' + s.relevant.join(', ') + (s.n_relevant > s.relevant.length ? ', ...' : '') : '') +
    '. Share of the relevant atoms\' weighted spectrum per frequency band:'));
  const bands = document.createElement('div'); bands.id = 'bands';
  bands.appendChild(bandsSvg(s)); panel.appendChild(bands);
  if (s.explanation) {
    panel.appendChild(audioRow('what the decision rests on (first ' + s.audio_seconds + ' s)', s.explanation, 'explanation-audio'));
    panel.appendChild(audioRow('residual (what it does not rest on)', s.residual, 'residual-audio'));
  } else {
    panel.appendChild(para(s.n_relevant ? 'No listenable explanation stored for this segment (only the longest segments of each class get one).'
                                        : 'Nothing is relevant for this decision, so there is nothing to listen to.', 'no-audio'));
  }
  if (seek) { player.currentTime = s.start; }
}
spec.addEventListener('click', function(e){
  const box = spec.getBoundingClientRect();
  player.currentTime = data.duration * (e.clientX - box.left) / box.width;
});
player.addEventListener('timeupdate', function(){
  cursor.style.left = pct(Math.min(player.currentTime, data.duration));
});
const m = /(seg|bb)=(\d+)/.exec(window.location.hash);
if (m) { select(m[1], parseInt(m[2], 10), false); }
document.body.dataset.ready = 'yes';
console.log('proxyseg report ready: ' + data.segments.length + ' segments');
})();
"""


def _page(uri: str, audio_href: str, data: dict) -> str:
    payload = _json_for_html(data)
    counts = {c: sum(1 for s in data["segments"] if s["class"] == c) for c in CLASSES}
    warn = ("<p class='warn'>This model's WavLM is UNTRAINED (the offline demo's random weights): the decisions "
            "show the mechanics, not a usable segmenter.</p>") if data["untrained"] else ""
    if data.get("teacher"):
        t = data["teacher"]
        warn += (f"<p>Distilled from the black box <b>{html.escape(t['name'])}</b>, run beside it: its probability "
                 "is the dashed line of each class it knows, and the hatched marks under a track show where the "
                 "two decisions differ (hover for which one decided the class). Frame agreement (F1 of the proxy "
                 "against the black box): " + ", ".join(f"{html.escape(c)} {v} %" for c, v in t["agreement"].items())
                 + f".</p><p class='disputable'>The dashed boxes under each track are the {len(t['segments'])} "
                 f"decisions of {html.escape(t['name'])} itself: decisions of a black box, not labels, that you "
                 "may dispute. Click one for the proxy's explanation of it and to mark it disputed; "
                 "<button id='disputes' type='button'>download the 0 disputed decision(s) (TSV)</button></p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(uri)} - proxyseg report</title>
<style>{_CSS}</style></head>
<body>
<p><a href="index.html">all files</a></p>
<h1>{html.escape(uri)}</h1>
{warn}
<p>Model <b>{html.escape(str(data['model']))}</b> ({html.escape(data['input'])} input), {data['duration']:.1f} s;
segments: {', '.join(f'{c} {n}' for c, n in counts.items())}. Click a segment in a class track to see the frequency
bands its decision rests on and to hear them; click the spectrogram to move the player.</p>
<audio id="player" controls preload="none" src="{html.escape(audio_href)}"></audio>
<div id="view">
<img id="spectrogram" src="{html.escape(data['spectrogram'])}" alt="spectrogram 0-{data['max_hz']:.0f} Hz, time left to right">
<div id="cursor"></div>
<div id="tracks"></div>
</div>
<div id="panel"><p>No segment selected.</p></div>
<script type="application/json" id="report-data">{payload}</script>
<script>{_JS}</script>
</body></html>
"""
