"""Demo corpus generator: layout, determinism, label sanity, atomicity, optional real sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from proxyseg.corpora.demo import build_demo_corpus
from proxyseg.corpora.demo import corpus as corpus_mod
from proxyseg.core.errors import InputError
from proxyseg.core.frames import SAMPLE_RATE
from proxyseg.core.audio import load_audio
from proxyseg.core.rttm import read_list, read_rttm, read_uem

SMALL = {"files": {"train": 4, "dev": 1, "test": 1}, "duration": 12.0}
SPLITS = ("train", "dev", "test")
EXT = {"radio": ".wav", "meeting": ".flac"}
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "sources"


def build_radio_and_meeting(root: Path, settings: dict, seed: int) -> dict[str, Path]:
    """A radio and a meeting demo corpus, ``root/demo_<kind>``."""
    out = {}
    for kind in ("radio", "meeting"):
        out[kind] = root / f"demo_{kind}"
        build_demo_corpus(kind, out[kind], settings, seed=seed)
    return out


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    return build_radio_and_meeting(tmp_path_factory.mktemp("demo"), SMALL, seed=7)


def _files(root: Path) -> dict[str, bytes]:
    """Every generated file except provenance.json (it records the creation time and host)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "provenance.json"}


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


@pytest.mark.parametrize("kind", ["radio", "meeting"])
def test_layout_and_counts(corpora, kind):
    root = corpora[kind]
    assert (root / "README.md").read_text().count("SYNTHETIC") >= 1
    assert "seed: `7`" in (root / "README.md").read_text()
    assert (root / "provenance.json").is_file()
    assert (root / "uem").is_dir() == (kind == "meeting")
    for split in SPLITS:
        uris = read_list(root / "lists" / f"{split}.lst")
        assert uris == [f"{kind}_{split}_{i:03d}" for i in range(SMALL["files"][split])]
        for uri in uris:
            path = root / "audio" / f"{uri}{EXT[kind]}"
            assert path.is_file()
            assert _duration(path) == pytest.approx(SMALL["duration"], abs=1e-3)
        segments = read_rttm(root / "rttm" / f"{split}.rttm")
        assert set(segments) == set(uris)  # every file has annotated activity
        for uri, segs in segments.items():
            for s in segs:
                assert 0 <= s.start < s.end <= SMALL["duration"] + 1e-9
    audio = sorted((root / "audio").iterdir())
    assert len(audio) == sum(SMALL["files"].values())


@pytest.mark.parametrize("kind", ["radio", "meeting"])
def test_formats_vary(corpora, kind):
    infos = [sf.info(str(p)) for p in sorted((corpora[kind] / "audio").iterdir())]
    assert any(i.samplerate != SAMPLE_RATE for i in infos)
    assert any(i.channels == 2 for i in infos)
    assert sum(i.samplerate == SAMPLE_RATE and i.channels == 1 for i in infos) > len(infos) / 2
    assert all(i.subtype == "PCM_16" for i in infos)
    for p in sorted((corpora[kind] / "audio").iterdir()):
        x, _ = sf.read(str(p))
        assert 0.1 < np.abs(x).max() <= 0.99
        if x.ndim == 2:  # slightly different gains, same content
            assert not np.allclose(x[:, 0], x[:, 1])
            assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] > 0.99


def test_radio_labels_and_cross_class_overlap(corpora):
    overlaps = set()
    for split in SPLITS:
        for uri, segs in read_rttm(corpora["radio"] / "rttm" / f"{split}.rttm").items():
            assert {s.label for s in segs} <= {"sp", "mu", "no"}
            for a in segs:
                for b in segs:
                    if a.label < b.label and a.start < b.end and b.start < a.end:
                        overlaps.add((a.label, b.label))
    assert ("mu", "sp") in overlaps and ("no", "sp") in overlaps


def test_meeting_speaker_overlap_and_uem(corpora):
    root = corpora["meeting"]
    overlap = speech = 0.0
    cropped = 0
    for split in SPLITS:
        uem = read_uem(root / "uem" / f"{split}.uem")
        rttm = read_rttm(root / "rttm" / f"{split}.rttm")
        assert set(uem) == set(read_list(root / "lists" / f"{split}.lst"))
        for uri, regions in uem.items():
            dur = _duration(root / "audio" / f"{uri}.flac")
            for start, end in regions:
                assert 0 <= start < end <= dur
                cropped += start > 0 and end < dur
            segs = rttm[uri]
            assert all(s.label.startswith("spk") for s in segs)
            assert 2 <= len({s.label for s in segs}) <= 4
            grid = np.zeros((4, int(dur * 100)), bool)
            for s in segs:
                grid[int(s.label[3:]), int(round(s.start * 100)):int(round(s.end * 100))] = True
            count = grid.sum(0)
            speech += (count >= 1).sum()
            overlap += (count >= 2).sum()
    assert cropped >= 1
    assert 0.03 < overlap / speech < 0.35


def _overlap_seconds(rttm_path: Path) -> float:
    total = 0.0
    for segs in read_rttm(rttm_path).values():
        edges = sorted([(s.start, 1) for s in segs] + [(s.end, -1) for s in segs])
        active, last = 0, 0.0
        for t, step in edges:
            if active >= 2:
                total += t - last
            active, last = active + step, t
    return total


def test_train_interruptions_add_overlap_to_the_training_split_only(tmp_path, corpora):
    """The overlap augmentation of the demo: more overlapped speech in train, dev and test unchanged."""
    settings = {"files": {"train": 6, "dev": 1, "test": 1}, "duration": 20.0}
    build_demo_corpus("meeting", tmp_path / "base", settings, seed=7)
    build_demo_corpus("meeting", tmp_path / "aug", {**settings, "train_interruptions": 0.75}, seed=7)
    for split in ("dev", "test"):
        assert (tmp_path / "aug" / "rttm" / f"{split}.rttm").read_bytes() == \
            (tmp_path / "base" / "rttm" / f"{split}.rttm").read_bytes()
    base = _overlap_seconds(tmp_path / "base" / "rttm" / "train.rttm")
    aug = _overlap_seconds(tmp_path / "aug" / "rttm" / "train.rttm")
    assert aug > 1.3 * base > 0, (base, aug)
    assert "train_interruptions" in (tmp_path / "aug" / "provenance.json").read_text()


@pytest.mark.parametrize("kind", ["radio", "meeting"])
def test_speech_labels_match_signal(corpora, kind):
    """Labelled speech frames carry much more 100-4000 Hz energy than frames with no label at all."""
    root = corpora[kind]
    speech_e, silent_e = [], []
    for split in SPLITS:
        for uri, segs in read_rttm(root / "rttm" / f"{split}.rttm").items():
            x = load_audio(root / "audio" / f"{uri}{EXT[kind]}")
            frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::320]
            spec = np.abs(np.fft.rfft(frames * np.hanning(400), axis=1)) ** 2
            f = np.fft.rfftfreq(400, 1 / SAMPLE_RATE)
            energy = spec[:, (f >= 100) & (f <= 4000)].sum(1)
            t = (np.arange(len(frames)) * 320 + 200) / SAMPLE_RATE
            speech = np.zeros(len(t), bool)
            anything = np.zeros(len(t), bool)
            for s in segs:
                inside = (t >= s.start + 0.05) & (t < s.end - 0.05)
                anything |= (t >= s.start - 0.3) & (t < s.end + 0.5)  # margin for fades and reverb tails
                if s.label == "sp" or s.label.startswith("spk"):
                    speech |= inside
            speech_e.append(energy[speech])
            silent_e.append(energy[~anything])
    speech_e, silent_e = np.concatenate(speech_e), np.concatenate(silent_e)
    assert len(silent_e) > 20 and len(speech_e) > 100
    assert 10 * np.log10(np.median(speech_e) / np.median(silent_e)) > 20


@pytest.mark.parametrize("kind", ["radio", "meeting"])
def test_deterministic(tmp_path, corpora, kind):
    again = tmp_path / "again"
    build_demo_corpus(kind, again, SMALL, seed=7)
    assert _files(again) == _files(corpora[kind])
    other = tmp_path / "other"
    build_demo_corpus(kind, other, SMALL, seed=8)
    a, b = _files(other), _files(corpora[kind])
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.startswith("audio/"))


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    real = corpus_mod._write_audio
    monkeypatch.setattr(corpus_mod, "_write_audio", broken)
    out = tmp_path / "demo_radio"
    with pytest.raises(RuntimeError):
        build_demo_corpus("radio", out, {"files": {"train": 2, "dev": 1, "test": 1}, "duration": 5}, seed=0)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind, settings, seed", [
    ("tv", SMALL, 0),
    ("radio", {"files": {"train": 2, "dev": 1}, "duration": 10}, 0),
    ("radio", {"files": {"train": 0, "dev": 1, "test": 1}, "duration": 10}, 0),
    ("radio", {"files": {"train": 2.5, "dev": 1, "test": 1}, "duration": 10}, 0),
    ("radio", {"files": {"train": 2, "dev": 1, "test": 1}, "duration": -3}, 0),
    ("radio", {"files": {"train": 2, "dev": 1, "test": 1}, "duration": float("nan")}, 0),
    ("radio", {"files": {"train": 2, "dev": 1, "test": 1}}, 0),
    ("radio", {"files": {"train": 2, "dev": 1, "test": 1}, "duration": 10, "durration": 3}, 0),
    ("meeting", SMALL, -1),
    ("meeting", "files=3", 0),
    ("meeting", {**SMALL, "train_interruptions": 0.9}, 0),
    ("meeting", {**SMALL, "train_interruptions": True}, 0),
    ("radio", {**SMALL, "train_interruptions": 0.6}, 0),
])
def test_bad_settings(tmp_path, kind, settings, seed):
    with pytest.raises(InputError):
        build_demo_corpus(kind, tmp_path / "out", settings, seed=seed)
    assert not (tmp_path / "out").exists()


def test_real_sources_missing_folder(tmp_path):
    src = tmp_path / "sources"
    (src / "speech").mkdir(parents=True)
    sf.write(str(src / "speech" / "a.wav"), np.random.default_rng(0).standard_normal(16000) * 0.1, 16000)
    (src / "music").mkdir()
    with pytest.raises(InputError, match="music"):  # empty folder
        build_demo_corpus("radio", tmp_path / "out", SMALL, seed=0, real_sources=src)
    (src / "music" / "m.wav").write_bytes((src / "speech" / "a.wav").read_bytes())
    with pytest.raises(InputError, match="noise"):  # missing folder
        build_demo_corpus("radio", tmp_path / "out", SMALL, seed=0, real_sources=src)
    assert not (tmp_path / "out").exists()
    build_demo_corpus("meeting", tmp_path / "meeting", SMALL, seed=0, real_sources=src)  # needs speech only
    assert (tmp_path / "meeting" / "rttm" / "train.rttm").is_file()


@pytest.mark.skipif(not REAL.is_dir(), reason="real demo sources not available")
@pytest.mark.parametrize("kind", ["radio", "meeting"])
def test_real_sources(tmp_path, kind):
    settings = {"files": {"train": 2, "dev": 1, "test": 1}, "duration": 8.0}
    out = tmp_path / kind
    build_demo_corpus(kind, out, settings, seed=3, real_sources=REAL)
    assert "librispeech" in (out / "README.md").read_text()
    segs = read_rttm(out / "rttm" / "train.rttm")
    labels = {s.label for ss in segs.values() for s in ss}
    if kind == "radio":
        assert labels <= {"sp", "mu", "no"} and "sp" in labels
    else:
        assert all(label.startswith("spk") for label in labels)
    again = tmp_path / f"{kind}_again"
    build_demo_corpus(kind, again, settings, seed=3, real_sources=REAL)
    assert _files(again) == _files(out)


def _active_seconds(segs, regions, count: int) -> float:
    """Seconds inside ``regions`` where at least ``count`` of ``segs`` are active (10 ms grid)."""
    end = max([s.end for s in segs] + [b for _, b in regions] + [0.0])
    grid = np.zeros(int(np.ceil(end * 100)) + 1, int)
    for s in segs:
        grid[int(round(s.start * 100)):int(round(s.end * 100))] += 1
    scored = np.zeros_like(grid, bool)
    for a, b in regions:
        scored[int(round(a * 100)):int(round(b * 100))] = True
    return float(((grid >= count) & scored).sum()) / 100


def test_config_test_splits_can_measure(tmp_path):
    """The demo config's test splits hold >= 60 s of scored overlap (meeting) and of noise events (radio),
    so that per-class F1 on them is not at the mercy of a few seconds. Test files depend only on the seed,
    the kind and their index, so building the test split alone gives the config's test files."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config.yaml").read_text())
    demo = config["demo"]
    for kind, label, count in (("radio", "no", 1), ("meeting", None, 2)):
        settings = {**demo[kind], "files": {"train": 1, "dev": 1, "test": demo[kind]["files"]["test"]}}
        root = tmp_path / kind
        build_demo_corpus(kind, root, settings, seed=demo["seed"])
        rttm = read_rttm(root / "rttm" / "test.rttm")
        uem = read_uem(root / "uem" / "test.uem") if kind == "meeting" else {}
        seconds = 0.0
        for uri in read_list(root / "lists" / "test.lst"):
            segs = [s for s in rttm.get(uri, []) if label is None or s.label == label]
            regions = uem.get(uri) or [(0.0, _duration(root / "audio" / f"{uri}{EXT[kind]}"))]
            if kind == "radio":  # noise events may overlap each other: count time covered
                seconds += _active_seconds(segs, regions, 1)
            else:  # overlapped speech: two or more speakers at once
                seconds += _active_seconds(segs, regions, count)
        assert seconds >= 60.0, (kind, seconds)


# ------------------------------------------------------------------------------------- ground-truth stems

STEMS_SETTINGS = {"files": {"train": 1, "dev": 1, "test": 5}, "duration": 6.0}  # test 1: resampled, 3: stereo
STEM_TOLERANCE = 5e-5  # 16-bit quantisation of the audio file (the corpus README states it)


@pytest.fixture(scope="module")
def stem_corpora(tmp_path_factory) -> dict[str, Path]:
    return build_radio_and_meeting(tmp_path_factory.mktemp("stems"), STEMS_SETTINGS, seed=11)


@pytest.mark.parametrize("kind", ["radio", "meeting"])
def test_stems_only_for_the_test_split(stem_corpora, kind):
    root = stem_corpora[kind]
    test = read_list(root / "lists" / "test.lst")
    assert sorted(p.name for p in (root / "stems").iterdir()) == test
    expected = {*corpus_mod.STEM_CLASSES[kind], corpus_mod.BACKGROUND}
    for uri in test:
        assert {p.stem for p in (root / "stems" / uri).iterdir()} == expected
    assert "stems/<uri>/<class>.wav" in (root / "README.md").read_text()


@pytest.mark.parametrize("kind", ["radio", "meeting"])
def test_stems_add_up_to_the_audio_as_loaded(stem_corpora, kind):
    """Stems are 16 kHz mono float, as long as load_audio's output, and add up to it within one 16-bit
    step or so, for 16 kHz mono, resampled and stereo files alike."""
    root = stem_corpora[kind]
    formats = set()
    for uri in read_list(root / "lists" / "test.lst"):
        path = root / "audio" / f"{uri}{EXT[kind]}"
        info = sf.info(str(path))
        formats.add((info.samplerate != SAMPLE_RATE, info.channels))
        mix = load_audio(path).astype(np.float64)
        total = np.zeros_like(mix)
        for stem in sorted((root / "stems" / uri).iterdir()):
            sinfo = sf.info(str(stem))
            assert (sinfo.samplerate, sinfo.channels, sinfo.subtype) == (SAMPLE_RATE, 1, "FLOAT")
            x, _ = sf.read(str(stem), dtype="float64")
            assert x.shape == mix.shape
            total += x
        assert np.abs(total - mix).max() <= STEM_TOLERANCE, uri
        assert np.sum((total - mix) ** 2) < 1e-6 * np.sum(mix ** 2)  # > 60 dB below the mixture
    assert (True, 1) in formats and (False, 2) in formats


def test_radio_stems_sit_where_the_labels_are(stem_corpora):
    """A class's stem has (nearly) no energy outside that class's annotated segments, and some inside."""
    root = stem_corpora["radio"]
    rttm = read_rttm(root / "rttm" / "test.rttm")
    names = {"sp": "speech", "mu": "music", "no": "noise"}
    seen = set()
    for uri in read_list(root / "lists" / "test.lst"):
        for label, name in names.items():
            x, _ = sf.read(str(root / "stems" / uri / f"{name}.wav"), dtype="float64")
            inside = np.zeros(x.shape, bool)
            for s in rttm.get(uri, []):
                if s.label == label:
                    inside[max(0, int((s.start - 0.05) * SAMPLE_RATE)):int((s.end + 0.05) * SAMPLE_RATE)] = True
            energy = np.sum(x ** 2)
            if inside.any():
                seen.add(name)
                assert np.sum(x[inside] ** 2) > 0.999 * energy
            else:
                assert energy < 1e-8
    assert seen == {"speech", "music", "noise"}
