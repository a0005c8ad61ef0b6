"""Deterministic synthetic stand-ins for AragonRadio (``radio``) and DIHARD III (``meeting``).

They let the whole workflow run end to end without licensed data. Labels are derived from how each
file was mixed, so they are exact: a segment covers exactly the samples where its source was placed
(speech segments bridge pauses shorter than ``MERGE_GAP``, as human annotation does).

For the test split the true source of each class is also kept (``stems/<uri>/<class>.wav``, see
:func:`build_demo_corpus`), so explanations can be scored against ground truth (``proxyseg.explain.groundtruth``).
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal as sps
from scipy.io import wavfile

from proxyseg import __version__
from proxyseg.core.atomic import atomic_dir
from proxyseg.core.errors import InputError
from proxyseg.core.audio import load_audio, resample
from proxyseg.core.rttm import Segment
from proxyseg.core.provenance import provenance_json
from proxyseg.corpora.demo import synth
from proxyseg.corpora.demo.synth import SR, db

KINDS = ("radio", "meeting")
SPLITS = ("train", "dev", "test")
MERGE_GAP = 0.3        # annotated segments bridge silences shorter than this (seconds)
PHRASE_GAP = (0.35, 1.0)  # pauses that end a segment
REF = 0.05             # RMS of a source at 0 dB before the file's peak normalisation
FLOOR_DB = -65.0       # unannotated background hiss, relative to REF
_RATES = (22050, 44100, 8000)
_AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}
_SETTINGS_KEYS = {"files", "duration"}
# Meeting only: share of turns whose successor starts before they end (dev and test keep the default).
# Backchannels follow it (0.15 above). Raising it in the training split is the authors' overlap
# augmentation done at synthesis time: the WavLM features are cached, so overlap cannot be added later.
INTERRUPTIONS = 0.45
_MAX_INTERRUPTIONS = 0.75
#: Pipeline class of each label the mixer places (meeting speakers ``spkNN`` are all ``speech``).
_STEM_CLASS = {"sp": "speech", "mu": "music", "no": "noise"}
#: Stems written per test file: the classes of the kind plus the unannotated background.
STEM_CLASSES = {"radio": ("speech", "music", "noise"), "meeting": ("speech",)}
BACKGROUND = "background"


# ---------------------------------------------------------------------------------------------------
# Sources: synthetic, or excerpts of real recordings
# ---------------------------------------------------------------------------------------------------

class _SynthSources:
    """Synthesised voices, music and noise."""

    description = "synthesised speech-like voices, music and noise textures (proxyseg.corpora.demo.synth)"

    def voices(self, rng, count):
        return synth.random_voices(rng, count)

    def speech(self, voice, rng, target):
        return synth.speech_phrase(voice, rng, target)

    def music(self, rng, duration):
        return synth.music_piece(rng, duration)

    def noise(self, rng, duration):
        x = synth.noise_texture(rng, duration)
        if rng.random() < 0.2:  # two textures at once (rain on traffic, hum under crackle, ...)
            x = synth.unit_rms(x + rng.uniform(0.3, 1.0) * synth.noise_texture(rng, duration))
        return x


class _RealSources:
    """Random excerpts of real recordings in ``<root>/{speech,music,noise}``; a voice is one speech file."""

    def __init__(self, root: Path, needed: tuple[str, ...]):
        root = Path(root)
        if not root.is_dir():
            raise InputError(root, "real_sources folder not found; expected subfolders speech/, music/, noise/")
        self.files: dict[str, list[Path]] = {}
        self.audio: dict[str, list[np.ndarray]] = {}
        for cls in needed:
            folder = root / cls
            if not folder.is_dir():
                raise InputError(folder, f"missing real-source folder '{cls}/' (audio files of that class)")
            paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _AUDIO_EXT)
            if not paths:
                raise InputError(folder, f"no audio files ({', '.join(sorted(_AUDIO_EXT))}) in this folder")
            arrays = [load_audio(p).astype(np.float64) for p in paths]
            for p, a in zip(paths, arrays):
                if len(a) < SR // 4 or synth.rms(a) < 1e-5:
                    raise InputError(p, "real source is shorter than 0.25 s or silent")
            self.files[cls] = paths
            self.audio[cls] = arrays
        self.description = "excerpts of real recordings: " + "; ".join(
            f"{cls}: " + ", ".join(p.name for p in paths) for cls, paths in self.files.items())

    def _excerpt(self, cls, index, rng, duration):
        src = self.audio[cls][index]
        n = max(1, int(round(duration * SR)))
        if len(src) < n:
            src = np.tile(src, n // len(src) + 1)
        for _ in range(8):  # avoid an excerpt that falls on digital silence
            off = int(rng.integers(0, len(src) - n + 1))
            x = src[off:off + n]
            if synth.rms(x) > 1e-4:
                break
        return synth.unit_rms(synth.fade(x, 0.005))

    def voices(self, rng, count):
        k = len(self.audio["speech"])
        order = rng.permutation(k)
        return [int(order[i % k]) for i in range(count)]

    def speech(self, voice, rng, target):
        return self._excerpt("speech", voice, rng, target)

    def music(self, rng, duration):
        return self._excerpt("music", int(rng.integers(len(self.audio["music"]))), rng, duration)

    def noise(self, rng, duration):
        return self._excerpt("noise", int(rng.integers(len(self.audio["noise"]))), rng, duration)


# ---------------------------------------------------------------------------------------------------
# Mixing with exact labels
# ---------------------------------------------------------------------------------------------------

class _Mix:
    """Tracks that sources are added to, recording the sample extent of each as a labelled interval."""

    def __init__(self, duration: float, tracks: int = 1):
        self.n = int(round(duration * SR))
        self.tracks = np.zeros((tracks, self.n))
        self.labels: list[tuple[str, int, int]] = []
        self.by_label: dict[str, np.ndarray] = {}  # what each label contributed, summed over tracks

    def place(self, label: str, at: float, x: np.ndarray, gain_db: float, track: int = 0) -> float:
        """Add ``x`` at ``at`` seconds; return the end time actually covered (clipped to the file)."""
        s = int(round(at * SR))
        if s >= self.n or len(x) == 0:
            return at + len(x) / SR
        m = min(len(x), self.n - s)
        y = x[:m] * (REF * db(gain_db))
        self.tracks[track, s:s + m] += y
        self.by_label.setdefault(label, np.zeros(self.n))[s:s + m] += y
        self.labels.append((label, s, s + m))
        return (s + len(x)) / SR


def _segments(uri: str, labels, n: int) -> list[Segment]:
    """Merge each label's intervals across gaps < MERGE_GAP; times rounded to the millisecond."""
    end_cap = math.floor(n / SR * 1000) / 1000
    out = []
    for name in sorted({lab for lab, _, _ in labels}):
        spans = sorted((a, b) for lab, a, b in labels if lab == name)
        merged = [list(spans[0])]
        for a, b in spans[1:]:
            if a - merged[-1][1] < MERGE_GAP * SR:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        for a, b in merged:
            start, end = round(a / SR, 3), min(round(b / SR, 3), end_cap)
            if end > start:
                out.append(Segment(uri, start, end, name))
    return sorted(out, key=lambda s: (s.start, s.end, s.label))


def _talk(mix, src, voices, rng, t0, t1, level_db, label="sp", track_of=None, turn_taking=False):
    """Phrases from ``voices`` (alternating when several) between ``t0`` and about ``t1``; return the end."""
    t = t0
    who = 0
    end = t0
    while t1 - t > 0.6:
        v = voices[who % len(voices)]
        x = src.speech(v, rng, min(rng.uniform(0.8, 4.0), t1 - t))
        tr = 0 if track_of is None else track_of(who)
        end = mix.place(label, t, x, level_db + rng.uniform(-3, 3), track=tr)
        if turn_taking and len(voices) > 1:
            who += 1
            r = rng.random()
            if r < 0.2:    # the other voice cuts in (radio annotates it as plain speech)
                t = end - rng.uniform(0.1, min(0.8, 0.5 * len(x) / SR))
            elif r < 0.35:
                t = end + rng.uniform(0.0, 0.25)
            else:
                t = end + rng.uniform(*PHRASE_GAP)
        else:
            t = end + rng.uniform(*PHRASE_GAP)
    return end


def _class_stems(mix: _Mix, kind: str) -> dict[str, np.ndarray]:
    """The mixer's tracks summed per pipeline class (zeros for a class the file does not contain)."""
    out = {c: np.zeros(mix.n) for c in STEM_CLASSES[kind]}
    for label in sorted(mix.by_label):
        out[_STEM_CLASS.get(label, "speech")] += mix.by_label[label]
    return out


def _radio_file(rng: np.random.Generator, duration: float, src,
                stems: dict | None = None) -> tuple[np.ndarray, list]:
    """A broadcast-like programme: a sequence of scenes (talk, talk over music/noise, music, jingles...).

    ``stems``: a dict to fill with each class's source as mixed in (``speech``, ``music``, ``noise``) and
    the unannotated background hiss (``background``); they add up to the returned audio.
    """
    mix = _Mix(duration)
    hosts = src.voices(rng, int(rng.integers(2, 5)))
    scenes = ("speech", "speech_music", "speech_noise", "interview", "music", "noise", "silence", "music_noise")
    probs = np.array([0.18, 0.2, 0.18, 0.1, 0.12, 0.12, 0.05, 0.05])
    t = rng.uniform(0.0, 0.5)
    while t < duration - 0.5:
        scene = scenes[rng.choice(len(scenes), p=probs)]
        level = rng.uniform(-10, 10)
        hi = int(rng.integers(len(hosts)))
        host = hosts[hi]
        if scene == "speech":
            end = _talk(mix, src, [host], rng, t, t + rng.uniform(3, 10), level)
            if rng.random() < 0.3 and end - t > 2:  # a short noise event during the talk
                a = rng.uniform(t, end - 1)
                nd = rng.uniform(0.5, 2.5)
                # 6 dB under to 3 dB over the talk: an annotator hears it (it was 0-12 dB under, often
                # masked by the voice yet labelled noise)
                mix.place("no", a, synth.fade(src.noise(rng, nd)), level - rng.uniform(-3, 6))
        elif scene in ("speech_music", "speech_noise"):
            lead, tail = rng.uniform(0, 2.0), rng.uniform(0, 1.5)
            end = _talk(mix, src, [host], rng, t + lead, t + lead + rng.uniform(4, 12), level)
            bed_len = end + tail - t
            if scene == "speech_music":
                mix.place("mu", t, synth.fade(src.music(rng, bed_len), 0.03), level - rng.uniform(0, 20))
            else:
                mix.place("no", t, synth.fade(src.noise(rng, bed_len), 0.03), level - rng.uniform(-3, 12))
            end += tail
        elif scene == "interview":
            pair = [host, hosts[(hi + int(rng.integers(1, len(hosts)))) % len(hosts)]]
            end = _talk(mix, src, pair, rng, t, t + rng.uniform(5, 14), level, turn_taking=True)
            if rng.random() < 0.5:
                bed = ("mu", src.music, rng.uniform(8, 20)) if rng.random() < 0.5 else \
                    ("no", src.noise, rng.uniform(3, 15))
                mix.place(bed[0], t, synth.fade(bed[1](rng, end - t), 0.03), level - bed[2])
        elif scene == "music":
            end = mix.place("mu", t, synth.fade(src.music(rng, rng.uniform(3, 12)), 0.03), level)
        elif scene == "noise":
            end = mix.place("no", t, synth.fade(src.noise(rng, rng.uniform(1.5, 5)), 0.03), level - 5)
        elif scene == "music_noise":
            d = rng.uniform(4, 9)
            end = mix.place("mu", t, synth.fade(src.music(rng, d), 0.03), level)
            a = t + rng.uniform(0, d / 2)
            mix.place("no", a, synth.fade(src.noise(rng, rng.uniform(1.5, d)), 0.03), level - rng.uniform(-5, 5))
        else:  # silence
            end = t + rng.uniform(0.4, 1.5)
        t = end + (rng.uniform(0.35, 1.2) if rng.random() < 0.5 else rng.uniform(0.0, 0.1))
    background = REF * db(FLOOR_DB) * rng.standard_normal(mix.n)
    audio = mix.tracks[0] + background
    if stems is not None:
        stems.update(_class_stems(mix, "radio"), **{BACKGROUND: background})
    return audio, mix.labels


def _meeting_file(rng: np.random.Generator, duration: float, src,
                  interruptions: float = INTERRUPTIONS, stems: dict | None = None) -> tuple[np.ndarray, list]:
    """A 2-4 party conversation in a reverberant room: turns, pauses, interruptions and backchannels.

    ``interruptions``: probability that the next speaker starts before the current one has finished;
    a backchannel comes with probability ``interruptions + 0.15``. ``stems``: a dict to fill with
    ``speech`` (every talker, reverberated) and ``background`` (room tone); they add up to the audio.
    """
    n_spk = int(rng.integers(2, 5))
    voices = src.voices(rng, n_spk)
    spk_db = rng.uniform(-4, 2, n_spk)
    weights = rng.dirichlet(np.full(n_spk, 3.0))
    mix = _Mix(duration, tracks=n_spk)
    free_at = np.zeros(n_spk)  # when each speaker's last phrase ends
    t = rng.uniform(0.1, 1.0)
    prev = -1
    while t < duration - 0.5:
        w = weights.copy()
        if prev >= 0:
            w[prev] = 0
        spk = int(rng.choice(n_spk, p=w / w.sum()))
        t = max(t, free_at[spk] + PHRASE_GAP[0])
        start = t
        for j in range(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))):
            x = src.speech(voices[spk], rng, rng.uniform(0.6, 3.5))
            end = mix.place(f"spk{spk:02d}", t, x, spk_db[spk] + rng.uniform(-2, 2), track=spk)
            t = end + rng.uniform(0.35, 0.8)
        free_at[spk] = end
        if end - start > 1.2 and rng.random() < interruptions + 0.15:  # backchannel ("mhm", "yeah")
            others = [k for k in range(n_spk) if k != spk]
            k = others[rng.integers(len(others))]
            at = rng.uniform(start + 0.4, end - 0.4)
            if at > free_at[k] + PHRASE_GAP[0]:
                x = src.speech(voices[k], rng, rng.uniform(0.25, 0.6))
                free_at[k] = mix.place(f"spk{k:02d}", at, x, spk_db[k] - rng.uniform(0, 4), track=k)
        r = rng.random()
        if r < interruptions:    # next speaker starts before this one has finished
            t = end - rng.uniform(0.2, min(2.5, 0.7 * (end - start)))
        elif r < interruptions + 0.15:   # latching
            t = end + rng.uniform(0.0, 0.2)
        elif r < 0.93:
            t = end + rng.uniform(0.3, 1.2)
        else:
            t = end + rng.uniform(1.5, 3.0)
        prev = spk
    rt60 = rng.uniform(0.15, 0.5)
    audio = np.zeros(mix.n)
    speech = np.zeros(mix.n)
    for k in range(n_spk):  # each talker at its own distance: its own reverberation
        ir = synth.reverb_ir(rng, rt60 * rng.uniform(0.8, 1.2), wet=rng.uniform(0.2, 0.7))
        wet = synth.convolve_same(mix.tracks[k], ir)
        audio += wet
        speech += wet
    room = synth.colored_noise(rng, mix.n, rng.uniform(0.8, 2.0))
    if rng.random() < 0.3:
        room = room + 0.5 * synth.noise_texture(rng, duration, "hum")
    background = REF * db(rng.uniform(-45, -32)) * synth.unit_rms(room)
    audio += background
    if stems is not None:
        stems.update(speech=speech, **{BACKGROUND: background})
    return audio, mix.labels


# ---------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------

def _file_format(kind: str, split_index: int, i: int) -> tuple[int, int]:
    """(sample rate, channels): most files 16 kHz mono; every 5th is resampled, some are stereo."""
    rate = _RATES[(i // 5 + split_index + (kind == "meeting")) % len(_RATES)] if i % 5 == 1 else SR
    channels = 2 if i % 5 == 3 else 1
    return rate, channels


def _write_audio(path: Path, x: np.ndarray, rate: int, channels: int, rng: np.random.Generator,
                 stems: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
    """Write ``x`` (16 kHz) at ``rate`` with ``channels``, peak-normalised, as 16-bit PCM.

    ``stems`` (16 kHz signals that add up to ``x``): each goes through the same resampling, channel gains
    and normalisation, then through what :func:`proxyseg.core.audio.load_audio` does on reading (down-mix,
    resampling to 16 kHz); returned as float32 arrays aligned sample for sample with ``load_audio(path)``.
    """
    ratio = Fraction(rate, SR)
    if rate != SR:
        x = sps.resample_poly(x, ratio.numerator, ratio.denominator)
    gains = None
    if channels == 2:
        gains = rng.permutation(np.array([1.0, db(-rng.uniform(0.5, 3.0))]))
        x = x[:, None] * gains[None, :]
    scale = rng.uniform(0.5, 0.95) / max(float(np.max(np.abs(x))), 1e-9)
    x = x * scale
    sf.write(str(path), x.astype(np.float32), rate, subtype="PCM_16",
             format="WAV" if path.suffix == ".wav" else "FLAC")
    if stems is None:
        return None
    out = {}
    for name, s in stems.items():
        if rate != SR:
            s = sps.resample_poly(s, ratio.numerator, ratio.denominator)
        s = (s[:, None] * gains[None, :] if gains is not None else s[:, None]) * scale
        s = s.astype(np.float32)
        mono = s.mean(axis=1) if s.shape[1] > 1 else s[:, 0]  # as load_audio reads the file
        out[name] = resample(mono.astype(np.float32, copy=False), rate).astype(np.float32, copy=False)
    return out


def _validate(kind, settings, seed) -> tuple[dict[str, int], float, float]:
    if kind not in KINDS:
        raise InputError(None, f"unknown demo corpus kind {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(None, f"demo seed must be a non-negative integer, got {seed!r}")
    if not isinstance(settings, dict):
        raise InputError(None, f"demo settings must be a mapping with keys 'files' and 'duration', got {settings!r}")
    optional = {"train_interruptions"} if kind == "meeting" else set()
    unknown = set(settings) - _SETTINGS_KEYS - optional
    missing = _SETTINGS_KEYS - set(settings)
    if unknown or missing:
        raise InputError(None, "demo settings need exactly the keys 'files' and 'duration'"
                         + (" (and optionally 'train_interruptions')" if optional else "")
                         + (f"; unknown: {sorted(map(str, unknown))}" if unknown else "")
                         + (f"; missing: {sorted(missing)}" if missing else ""))
    files = settings["files"]
    if not isinstance(files, dict) or set(files) != set(SPLITS):
        raise InputError(None, f"demo settings 'files' must map each of {', '.join(SPLITS)} to a file count, "
                         f"got {files!r}")
    for split, count in files.items():
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 1 <= count <= 1000:
            raise InputError(None, f"demo file count for {split!r} must be an integer in [1, 1000], got {count!r}")
    duration = settings["duration"]
    if isinstance(duration, bool) or not isinstance(duration, numbers.Real) or not math.isfinite(duration) \
            or not 5.0 <= duration <= 3600.0:
        raise InputError(None, f"demo 'duration' must be a number of seconds in [5, 3600], got {duration!r}")
    inter = settings.get("train_interruptions", INTERRUPTIONS)
    if isinstance(inter, bool) or not isinstance(inter, numbers.Real) or not 0.0 <= inter <= _MAX_INTERRUPTIONS:
        raise InputError(None, f"demo meeting 'train_interruptions' must be a number in [0, {_MAX_INTERRUPTIONS}], "
                         f"got {inter!r}")
    return {s: int(files[s]) for s in SPLITS}, float(duration), float(inter)


_README = """# {title} (SYNTHETIC)

This corpus is SYNTHETIC: generated by `proxyseg.corpora.demo.build_demo_corpus` (proxyseg {version}) so the
workflow can run end to end without licensed data. It is not {mirrors} and results on it say nothing
about that corpus. Labels are exact by construction (they record where each source was mixed in).

- kind: `{kind}`; seed: `{seed}`; settings: `{settings}`
- sources: {sources}
- files: {counts}; {duration:g} s each; same seed and settings give byte-identical audio and labels
- format: most files 16 kHz mono 16-bit; within each split the file with index 1, 6, 11, ... is at
  22.05, 44.1 or 8 kHz and the one with index 3, 8, 13, ... is stereo (channels at slightly different gains)

## Layout
{layout}
"""

_LAYOUT = {
    "radio": """- `audio/<uri>.wav`
- `rttm/<split>.rttm`: name field = class: `sp` speech, `mu` music, `no` noise; classes overlap in time
  (speech over music beds, speech over noise); overlapped speech is not annotated. No UEM: whole files scored.
- `lists/<split>.lst`: one uri per line""",
    "meeting": """- `audio/<uri>.flac`
- `rttm/<split>.rttm`: speaker turns (name field = speaker id, e.g. `spk01`); turns of different speakers
  overlap (interruptions, backchannels; the training split may have more of them, see `settings`).
  Music and noise are not annotated (faint room tone only).
- `uem/<split>.uem`: scored region; on even-numbered files it leaves out the first and last 0.5 s
- `lists/<split>.lst`: one uri per line""",
}


_STEMS = """- `stems/<uri>/<class>.wav` (test split only): the true source of each class as it was mixed
  into the file: {classes}. A class absent from the file is all zeros; overlap has no stem.
  `background.wav` is the unannotated {background}. 32-bit float WAV, 16 kHz mono, aligned sample for
  sample with the file as `proxyseg.core.audio.load_audio` reads it (same length): each stem went through the
  file's own resampling, channel gains, peak normalisation and down-mix, so the stems of a file (background
  included) add up to `load_audio(audio/<uri>{ext})` up to the 16-bit quantisation of the audio file: at
  most 5e-5 per sample (about 1.5 least significant bits), more than 60 dB below the mixture. They are the
  ground truth that `proxyseg groundtruth` scores listenable explanations against."""

_STEM_TEXT = {
    "radio": ("`speech`, `music`, `noise`", "background hiss (-65 dB)"),
    "meeting": ("`speech`: every talker together, with its room reverberation", "room tone"),
}


def build_demo_corpus(kind: str, out_dir: Path, settings: dict, seed: int, real_sources: Path | None = None) -> None:
    """Write a complete demo corpus of ``kind`` ('radio' or 'meeting') into ``out_dir``, atomically.

    ``settings``: ``{"files": {"train": int, "dev": int, "test": int}, "duration": seconds}``.
    ``real_sources``: optional folder with ``speech/``, ``music/``, ``noise/`` recordings to excerpt
    instead of synthesising (meeting needs only ``speech/``).

    Besides ``audio/``, ``rttm/``, ``lists/`` (and ``uem/``), the test split's class stems are written to
    ``stems/<uri>/<class>.wav`` (:data:`STEM_CLASSES` of the kind plus ``background``; float32, 16 kHz mono,
    aligned with ``load_audio`` of the file; see the README text). Train and dev are unaffected.
    """
    files, duration, train_interruptions = _validate(kind, settings, seed)
    if real_sources is not None:
        src = _RealSources(Path(real_sources), ("speech", "music", "noise") if kind == "radio" else ("speech",))
    else:
        src = _SynthSources()
    ext = ".wav" if kind == "radio" else ".flac"
    with atomic_dir(out_dir) as tmp:
        for sub in ("audio", "rttm", "lists") + (("uem",) if kind == "meeting" else ()):
            (tmp / sub).mkdir()
        for si, split in enumerate(SPLITS):
            seqs = np.random.SeedSequence([int(seed), KINDS.index(kind), si]).spawn(files[split])
            uris, segments, uem = [], [], {}
            for i, ss in enumerate(seqs):
                uri = f"{kind}_{split}_{i:03d}"
                rng = np.random.default_rng(ss)
                stems = {} if split == "test" else None
                if kind == "radio":
                    audio, labels = _radio_file(rng, duration, src, stems=stems)
                else:
                    audio, labels = _meeting_file(rng, duration, src,
                                                  train_interruptions if split == "train" else INTERRUPTIONS,
                                                  stems=stems)
                rate, channels = _file_format(kind, si, i)
                loaded = _write_audio(tmp / "audio" / f"{uri}{ext}", audio, rate, channels, rng, stems=stems)
                if loaded is not None:
                    (tmp / "stems" / uri).mkdir(parents=True)
                    for name, x in loaded.items():
                        # scipy, not soundfile: libsndfile stamps float WAVs with the time (PEAK chunk)
                        wavfile.write(tmp / "stems" / uri / f"{name}.wav", SR, x.astype(np.float32))
                uris.append(uri)
                segments.extend(_segments(uri, labels, len(audio)))
                end = math.floor(len(audio) / SR * 1000) / 1000
                uem[uri] = [(0.5, end - 0.5)] if i % 2 == 0 else [(0.0, end)]
            (tmp / "rttm" / f"{split}.rttm").write_text("".join(
                f"SPEAKER {s.uri} 1 {s.start:.3f} {s.end - s.start:.3f} <NA> <NA> {s.label} <NA> <NA>\n"
                for s in segments), encoding="utf-8")
            (tmp / "lists" / f"{split}.lst").write_text("".join(u + "\n" for u in uris), encoding="utf-8")
            if kind == "meeting":
                (tmp / "uem" / f"{split}.uem").write_text("".join(
                    f"{u} 1 {a:.3f} {b:.3f}\n" for u in uris for a, b in uem[u]), encoding="utf-8")
        title = {"radio": "Demo radio corpus", "meeting": "Demo meeting corpus"}[kind]
        mirrors = {"radio": "AragonRadio", "meeting": "DIHARD III"}[kind]
        shown = {"files": files, "duration": duration}
        if kind == "meeting":
            shown["train_interruptions"] = train_interruptions
        (tmp / "README.md").write_text(_README.format(
            title=title, version=__version__, mirrors=mirrors, kind=kind, seed=seed, settings=shown,
            sources=src.description, counts=", ".join(f"{s} {files[s]}" for s in SPLITS), duration=duration,
            layout=_LAYOUT[kind] + "\n" + _STEMS.format(
                classes=_STEM_TEXT[kind][0], background=_STEM_TEXT[kind][1], ext=ext)), encoding="utf-8")
        (tmp / "provenance.json").write_text(provenance_json(
            step="demo_corpus", kind=kind, seed=int(seed), files=files, duration=duration,
            **({"train_interruptions": train_interruptions} if kind == "meeting" else {}),
            real_sources=None if real_sources is None else str(real_sources)) + "\n", encoding="utf-8")
