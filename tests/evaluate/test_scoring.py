import json

import h5py
import numpy as np
import pandas as pd
import pytest
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.detection import DetectionPrecisionRecallFMeasure

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, frame_centers
from proxyseg.core.rttm import read_rttm
from proxyseg.core.agreement import frame_f1
from proxyseg.evaluate.scoring import binarize, decisions_rttm, score_split, segmentation_tables


# ------------------------------------------------------------------------------------------- binarize


def test_binarize_exact_boundaries():
    probs = np.zeros((10, 4))
    probs[2:5, 0] = 0.9          # speech: frames 2..4
    probs[9, 0] = 0.5            # speech: last frame, exactly at threshold counts
    probs[0, 2] = 0.7            # music: first frame
    probs[:, 3] = 0.49           # overlap: never
    probs[:, 1] = 1.0            # noise: everything
    out = binarize(probs)
    assert list(out) == list(CLASSES)
    c, half = frame_centers(10), 0.01
    flat = lambda segs: [t for seg in segs for t in seg]  # noqa: E731
    assert flat(out["speech"]) == pytest.approx([c[2] - half, c[4] + half, c[9] - half, c[9] + half], abs=1e-12)
    assert out["speech"][0] == (0.0425, 0.1025)  # (320*2 + 40) / 16000, (320*5 + 40) / 16000
    assert out["music"] == [(0.0025, 0.0225)]
    assert out["noise"] == [(0.0025, 0.2025)]
    assert out["overlap"] == []


def test_binarize_per_class_threshold_and_errors():
    probs = np.full((3, 4), 0.3)
    out = binarize(probs, {"speech": 0.2, "music": 0.3})  # missing classes keep 0.5
    assert [bool(out[c]) for c in CLASSES] == [True, False, True, False]
    with pytest.raises(ValueError, match="unknown classes"):
        binarize(probs, {"laughter": 0.5})
    with pytest.raises(ValueError, match="shape"):
        binarize(np.zeros((3, 2)))
    assert binarize(np.zeros((0, 4))) == {c: [] for c in CLASSES}


def test_decisions_rttm(tmp_path):
    h5 = tmp_path / "probs.h5"
    with h5py.File(h5, "w") as f:
        p = np.zeros((5, 4), np.float32)
        p[1:3, 0] = 0.8
        f.create_dataset("a/probs", data=p)
        f.create_dataset("a/logits", data=np.log(p + 1e-6) - np.log(1 - p + 1e-6))
        q = np.zeros((4, 4), np.float32)
        q[:, 2] = 0.6
        f.create_dataset("b/probs", data=q)
        f.create_dataset("b/logits", data=np.log(q + 1e-6) - np.log(1 - q + 1e-6))
    out = tmp_path / "dec.rttm"
    assert decisions_rttm(h5, out, 0.5) == 2
    segs = read_rttm(out)
    # frames 1-2 -> [0.0225, 0.0625); RTTM keeps 3 decimals
    assert [s.label for s in segs["a"]] == ["speech"]
    assert (segs["a"][0].start, segs["a"][0].end) == pytest.approx((0.0225, 0.0625), abs=6e-4)
    assert [s.label for s in segs["b"]] == ["music"]
    assert (segs["b"][0].start, segs["b"][0].end) == pytest.approx((0.0025, 0.0825), abs=6e-4)
    assert decisions_rttm(h5, out, {"music": 0.7}) == 1
    assert decisions_rttm(h5, out, 0.5, dataset="logits", logits=True) == 2
    with pytest.raises(InputError, match="no dataset 'scores'"):
        decisions_rttm(h5, out, dataset="scores")


# ------------------------------------------------------------------------------------------- scoring

REF = {  # uri -> [(start, end, label)]
    "a": [(1, 5, "speech"), (0, 4, "music")],
    "b": [(0, 2, "speech"), (8, 9, "speech")],  # 8-9 lies outside b's UEM
    "c": [(0, 1, "speech")],                    # no hypothesis line at all for c
}
HYP = {
    "a": [(2, 6, "speech"), (0, 3, "music")],
    "b": [(1, 3, "speech"), (7, 9, "speech"),   # 7-9: false alarm outside the UEM
          (0, 1, "music"), (0, 6, "noise")],    # noise is not annotated: never scored
}
UEM = {"a": (0, 10), "b": (0, 6), "c": (0, 5)}


def _rttm(path, segs):
    with open(path, "w") as f:
        for uri, items in segs.items():
            for s, e, label in items:
                f.write(f"SPEAKER {uri} 1 {s:.3f} {e - s:.3f} <NA> <NA> {label} <NA> <NA>\n")
    return path


@pytest.fixture
def split(tmp_path):
    ref = _rttm(tmp_path / "ref.rttm", REF)
    hyp = _rttm(tmp_path / "hyp.rttm", HYP)
    uem = tmp_path / "uem.uem"
    uem.write_text("".join(f"{u} 1 {s:.3f} {e:.3f}\n" for u, (s, e) in UEM.items()))
    ann = tmp_path / "annotated.json"
    ann.write_text(json.dumps({"corpus": "x", "split": "test",
                               "classes": {"speech": True, "noise": False, "music": True, "overlap": False}}))
    return ref, uem, ann, hyp


def _pyannote_direct(label, collar):
    """pyannote's metric called directly on hand-built annotations, summed over the files."""
    metric = DetectionPrecisionRecallFMeasure(collar=collar)
    for uri, (s, e) in UEM.items():
        ref, hyp = Annotation(uri=uri), Annotation(uri=uri)
        for i, (a, b, lab) in enumerate(REF.get(uri, [])):
            if lab == label:
                ref[Segment(a, b), i] = lab
        for i, (a, b, lab) in enumerate(HYP.get(uri, [])):
            if lab == label:
                hyp[Segment(a, b), i] = lab
        metric(ref, hyp, uem=Timeline([Segment(s, e)], uri=uri))
    p, r, f = metric.compute_metrics()
    assert f == pytest.approx(abs(metric))
    return p, r, f


def test_score_split_by_hand_and_pyannote(split):
    df = score_split(*split).set_index("class")
    assert list(df.index) == ["speech", "music"]  # noise/overlap not annotated: absent
    # speech: a TP 3 FP 1 FN 1; b TP 1 FP 1 FN 1 (7-9 and 8-9 outside UEM); c FN 1
    sp = df.loc["speech"]
    assert (sp.true_positive, sp.false_positive, sp.false_negative) == pytest.approx((4, 2, 3))
    assert sp.precision == pytest.approx(4 / 6)
    assert sp.recall == pytest.approx(4 / 7)
    assert sp.f1 == pytest.approx(8 / 13)
    assert sp.hours == pytest.approx(7 / 3600)
    assert sp.files == 3
    # music: a TP 3 FN 1; b FP 1
    mu = df.loc["music"]
    assert (mu.precision, mu.recall, mu.f1) == pytest.approx((0.75, 0.75, 0.75))
    assert mu.hours == pytest.approx(4 / 3600)
    for label in ("speech", "music"):
        assert tuple(df.loc[label, ["precision", "recall", "f1"]]) == pytest.approx(_pyannote_direct(label, 0.0))


def test_score_split_collar_matches_pyannote(split):
    plain = score_split(*split).set_index("class")
    wide = score_split(*split, collar=0.5).set_index("class")
    for label in ("speech", "music"):
        assert tuple(wide.loc[label, ["precision", "recall", "f1"]]) == pytest.approx(_pyannote_direct(label, 0.5))
    assert wide.loc["speech", "f1"] != pytest.approx(plain.loc["speech", "f1"])
    assert wide.loc["speech", "hours"] == pytest.approx(plain.loc["speech", "hours"])  # hours ignore the collar


def test_score_split_errors(split, tmp_path):
    ref, uem, ann, hyp = split
    bad = _rttm(tmp_path / "bad.rttm", {"a": [(0, 1, "sp")]})
    with pytest.raises(InputError, match=r"bad.rttm:1: label 'sp'"):
        score_split(ref, uem, ann, bad)
    other = _rttm(tmp_path / "other.rttm", {"zz": [(0, 1, "speech")]})
    with pytest.raises(InputError, match="wrong split"):
        score_split(ref, uem, ann, other)
    with pytest.raises(InputError, match="annotated.json not found"):
        score_split(ref, uem, tmp_path / "nope.json", hyp)


# ------------------------------------------------------------------------------------------- fidelity


def test_frame_f1():
    a = np.array([1, 1, 0, 0])
    assert frame_f1(a, a) == 1.0
    assert frame_f1(a, 1 - a) == 0.0
    assert frame_f1(np.zeros(4), np.zeros(4)) == 1.0
    assert frame_f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)  # TP 1, FP 1, FN 1
    assert frame_f1([1, 1, 0, 0], [1, 0, 1, 0], mask=[1, 0, 0, 1]) == 1.0
    with pytest.raises(ValueError):
        frame_f1(np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------------------------------- tables


def test_segmentation_tables(tmp_path):
    rows = []
    for system, base in (("proxy-wavlm", 0.90), ("teacher", 0.95), ("proxy-spec", 0.80)):
        for corpus, classes in (("demo_radio", ("speech", "music", "noise")), ("demo_meeting", ("overlap", "speech"))):
            for k, c in enumerate(classes):
                rows.append({"system": system, "corpus": corpus, "class": c, "precision": base, "recall": base,
                             "f1": base - 0.01 * k, "hours": 1.0})
    rows.append({"system": "teacher", "corpus": "demo_radio", "class": "speech", "precision": 0.9,
                 "recall": 0.9, "f1": 0.5, "hours": 0.5, "domain": "sports"})
    df = pd.DataFrame(rows)
    settings = {"threshold": 0.5, "collar": 0.0, "uem": {"demo_radio": "whole files"}}
    wide = segmentation_tables(df, tmp_path / "s.tsv", tmp_path / "s.md", settings, tmp_path / "settings.json")

    assert list(wide["system"]) == ["teacher", "proxy-wavlm", "proxy-spec"]
    assert list(wide.columns) == ["system", "demo_radio / speech", "demo_radio / noise", "demo_radio / music",
                                  "demo_meeting / speech", "demo_meeting / overlap"]
    md = (tmp_path / "s.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert "demo_radio / speech" in table[0] and "demo_meeting / overlap" in table[0]
    assert "demo_meeting / music" not in md
    cells = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert cells == ["teacher", "95.0", "93.0", "94.0", "94.0", "95.0"]  # teacher first, F1 % one decimal
    assert "per domain, demo_radio" in md and "sports" in md
    assert len(pd.read_csv(tmp_path / "s.tsv", sep="\t")) == len(df)
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert saved["threshold"] == 0.5
    assert saved["classes"] == {"demo_radio": ["speech", "noise", "music"], "demo_meeting": ["speech", "overlap"]}

    segmentation_tables(df, tmp_path / "s.tsv", tmp_path / "s.md", settings, tmp_path / "settings.yaml")
    import yaml
    assert yaml.safe_load((tmp_path / "settings.yaml").read_text())["collar"] == 0.0


def test_constant_floor_decides_every_annotated_class_everywhere(tmp_path):
    """The trivial floor of the segmentation table: recall 1, precision the class's share of the UEM."""
    import json

    from proxyseg.evaluate.scoring import CONSTANT, constant_floor

    (tmp_path / "uem.uem").write_text("a 1 0.0 60.0\nb 1 10.0 50.0\n")
    (tmp_path / "reference.rttm").write_text(
        "SPEAKER a 1 5.0 20.0 <NA> <NA> speech <NA> <NA>\n"      # 20 s of 60
        "SPEAKER b 1 0.0 30.0 <NA> <NA> speech <NA> <NA>\n")     # 20 s of the 40 scored (10-50)
    (tmp_path / "annotated.json").write_text(json.dumps({"classes": {"speech": True, "music": True}}))
    rows = constant_floor("c", tmp_path).set_index("class")
    assert set(rows["system"]) == {CONSTANT} and set(rows["corpus"]) == {"c"}
    p = 40.0 / 100.0
    assert rows.loc["speech", "recall"] == pytest.approx(1.0)
    assert rows.loc["speech", "precision"] == pytest.approx(p)
    assert rows.loc["speech", "f1"] == pytest.approx(2 * p / (1 + p))
    assert rows.loc["music", "precision"] == 0.0  # no music anywhere: the floor scores 0
    assert list(constant_floor("c", tmp_path, only=["speech"])["class"]) == ["speech"]


def test_energy_floor_thresholds_on_dev_and_scores_test(tmp_path):
    """The energy detector of the segmentation table: speech is loud in both splits, so its dev-chosen
    threshold finds it on test; the threshold comes from dev only (test's own level would not matter)."""
    import json

    import h5py

    from proxyseg.evaluate.scoring import ENERGY, energy_floor

    def cache(path, loud):
        with h5py.File(path, "w") as h5:
            X = np.where(loud[:, None], np.log1p(1e2), np.log1p(1e-2)) * np.ones((1, 5))
            h5.create_dataset("f", data=X.astype(np.float16)).attrs["gain"] = 1.0

    T = 500  # 10 s of frames
    loud = np.zeros(T, bool)
    loud[100:300] = True  # frames 100-299: 2 s to 6 s, roughly
    cache(tmp_path / "dev.h5", loud)
    cache(tmp_path / "test.h5", loud)
    targets = np.zeros((T, 4), np.int8)
    targets[:, 3] = -1
    targets[100:300, 0] = 1
    with h5py.File(tmp_path / "targets.h5", "w") as h5:
        h5["f"] = targets
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "uem.uem").write_text("f 1 0.0 10.0\n")
    (labels / "reference.rttm").write_text("SPEAKER f 1 2.0125 4.0 <NA> <NA> speech <NA> <NA>\n")
    (labels / "annotated.json").write_text(json.dumps({"classes": {"speech": True}}))
    rows = energy_floor("c", tmp_path / "dev.h5", tmp_path / "targets.h5", tmp_path / "test.h5", labels)
    assert list(rows["system"]) == [ENERGY] and list(rows["class"]) == ["speech"]
    assert rows.loc[0, "f1"] > 0.99 and -20 < rows.loc[0, "threshold_db"] < 27
