"""proxyseg mix-corpus: MUSAN-style mixtures with exact labels from folders of recordings."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from proxyseg.cli import main
from proxyseg.core.errors import InputError
from proxyseg.corpora.harmonise import harmonise, overlap_regions, union
from proxyseg.core.rttm import read_rttm
from proxyseg.corpora.mixing import REF, build_mix_corpus, index_sources

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "sources"
SR = 16000


@pytest.fixture
def sources(tmp_path):
    """Speech: tones with 1 s of silence around them; music: chords (one file at 22.05 kHz); noise: white."""
    rng = np.random.default_rng(0)
    root = tmp_path / "sources"
    for cls in ("speech", "music", "noise"):
        (root / cls).mkdir(parents=True)
    t = np.arange(2 * SR) / SR
    for i, f0 in enumerate((180.0, 230.0)):
        voiced = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        sf.write(root / f"speech/s{i}.wav", np.concatenate([np.zeros(SR), voiced, np.zeros(SR)]), SR)
    t10 = np.arange(10 * 22050) / 22050
    sf.write(root / "music/m0.wav", 0.2 * (np.sin(2 * np.pi * 440 * t10) + np.sin(2 * np.pi * 554 * t10)), 22050)
    (root / "noise/sub").mkdir()
    sf.write(root / "noise/sub/n0.flac", 0.1 * rng.standard_normal(6 * SR), SR)
    return root


def ms(spans):
    return [(round(a * 1000), round(b * 1000)) for a, b in spans]


SMALL = {"files": {"train": 3, "test": 2}, "duration": [8.0, 12.0], "speech_seconds": [5.0, 5.0]}


def test_layout_and_exact_labels(sources, tmp_path):
    out = tmp_path / "mix"
    build_mix_corpus(sources, out, {**SMALL, "overlap_probability": 1.0}, seed=3)
    assert (out / "lists/train.lst").read_text().split() == ["mix_train_0000", "mix_train_0001", "mix_train_0002"]
    placed = pd.read_csv(out / "sources.tsv", sep="\t")
    assert set(placed["source"]) <= {"speech/s0.wav", "speech/s1.wav", "music/m0.wav", "noise/sub/n0.flac"}
    for split in ("train", "test"):
        ref = read_rttm(out / f"rttm/{split}.rttm")
        for uri in (out / f"lists/{split}.lst").read_text().split():
            audio, rate = sf.read(out / f"audio/{uri}.wav")
            assert rate == SR and audio.ndim == 1
            mine = placed[placed.uri == uri]
            spans = {c: [(r.onset, round(r.onset + r.duration, 3)) for r in mine[mine["class"] == c].itertuples()]
                     for c in ("speech", "music", "noise")}
            got = {c: sorted((s.start, s.end) for s in ref.get(uri, []) if s.label == c)
                   for c in ("speech", "music", "noise", "overlap")}
            for c in ("speech", "music", "noise"):
                assert ms(got[c]) == ms(union(spans[c]))
            excerpts = {str(i): [s] for i, s in enumerate(spans["speech"])}
            assert ms(got["overlap"]) == ms(overlap_regions(excerpts))
            for s in ref.get(uri, []):  # every boundary on the millisecond grid, inside the file
                assert abs(s.start * 1000 - round(s.start * 1000)) < 1e-6 and s.end <= len(audio) / SR + 1e-9
            speech = np.zeros(len(audio), bool)
            for a, b in got["speech"]:
                speech[round(a * SR):round(b * SR)] = True
            if not got["music"] and not got["noise"]:  # silence margins trimmed: sound only where labelled
                assert np.abs(audio[~speech]).max() < 1e-3
    assert any(s.label == "overlap" for segs in read_rttm(out / "rttm/train.rttm").values() for s in segs)


def test_levels_follow_the_snr_ranges(sources, tmp_path):
    out = tmp_path / "mix"
    build_mix_corpus(sources, out, {"files": {"train": 2}, "duration": [6.0, 6.0], "speech_probability": 0.0,
                                    "music_probability": 1.0, "noise_probability": 0.0,
                                    "bed_fraction": [1.0, 1.0], "music_snr": [12.0, 12.0]}, seed=0)
    for uri in ("mix_train_0000", "mix_train_0001"):
        audio, _ = sf.read(out / f"audio/{uri}.wav")
        rms = np.sqrt(np.mean(audio[SR // 10:-SR // 10] ** 2))  # away from the 5 ms fades
        assert 20 * np.log10(rms / REF) == pytest.approx(-12.0, abs=0.3)


def test_seeded_and_deterministic(sources, tmp_path):
    build_mix_corpus(sources, tmp_path / "a", SMALL, seed=7)
    build_mix_corpus(sources, tmp_path / "b", SMALL, seed=7)
    build_mix_corpus(sources, tmp_path / "c", SMALL, seed=8)
    same = [(tmp_path / d / "audio/mix_train_0001.wav").read_bytes() for d in "abc"]
    assert same[0] == same[1] != same[2]
    assert (tmp_path / "a/rttm/train.rttm").read_text() == (tmp_path / "b/rttm/train.rttm").read_text()


def test_harmonised_as_a_generic_class_corpus(sources, tmp_path):
    assert main(["mix-corpus", "--sources", str(sources), "--out", str(tmp_path / "mix"), "--seed", "1",
                 "--settings", json.dumps(SMALL)]) == 0
    spec = {"adapter": "generic", "labels": "classes", "root": str(tmp_path / "mix"), "audio": "audio/{uri}.wav",
            "splits": {"train": {"list": "lists/train.lst", "rttm": "rttm/train.rttm"}}}
    harmonise("mix", "train", spec, tmp_path / "labels")
    info = json.loads((tmp_path / "labels/annotated.json").read_text())
    assert all(info["classes"].values())  # all four classes annotated


def test_rejects_bad_sources_and_settings(sources, tmp_path):
    with pytest.raises(InputError, match=r"unknown setting\(s\) 'snr'"):
        build_mix_corpus(sources, tmp_path / "m", {"snr": 3}, seed=0)
    with pytest.raises(InputError, match=r"music_snr: \[20.0, 1.0\] must be \[low, high\]"):
        build_mix_corpus(sources, tmp_path / "m", {"music_snr": [20, 1]}, seed=0)
    for f in (sources / "music").iterdir():
        f.unlink()
    with pytest.raises(InputError, match="no audio files") as err:
        index_sources(sources)
    assert err.value.path.endswith("music")
    (sources / "music").rmdir()
    code = main(["mix-corpus", "--sources", str(sources), "--out", str(tmp_path / "m")])
    assert code == 2 and not (tmp_path / "m").exists()


@pytest.mark.skipif(not REAL.is_dir(), reason="real recordings not available")
def test_real_sources(tmp_path):
    out = tmp_path / "real"
    build_mix_corpus(REAL, out, {"files": {"train": 2}, "duration": [10.0, 15.0]}, seed=0)
    labels = {s.label for segs in read_rttm(out / "rttm/train.rttm").values() for s in segs}
    assert "speech" in labels and labels <= {"speech", "music", "noise", "overlap"}
