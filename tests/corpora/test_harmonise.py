import json

import h5py
import pandas as pd
import pytest

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, UNKNOWN, frame_centers, num_frames
from proxyseg.corpora.harmonise import frames_in, harmonise, intersect, overlap_regions, union
from proxyseg.core.rttm import read_rttm, read_uem


def rttm_line(uri, onset, dur, name):
    return f"SPEAKER {uri} 1 {onset:.3f} {dur:.3f} <NA> <NA> {name} <NA> <NA>\n"


# ------------------------------------------------------------------ interval logic


def test_union_and_intersect():
    assert union([(2, 3), (0, 1), (0.5, 1.5), (3, 4)]) == [(0, 1.5), (2, 4)]
    assert intersect([(0, 2), (3, 5)], [(1, 4)]) == [(1, 2), (3, 4)]


def test_overlap_requires_two_different_speakers():
    turns = {"A": [(0.0, 5.0), (4.0, 6.0)], "B": [(3.0, 4.5), (8.0, 9.0)], "C": [(4.2, 7.0)]}
    # A overlapping itself (4-5) does not count; A&B 3-4.5, A&C 4.2-6, B&C none extra
    assert overlap_regions(turns) == [(3.0, 6.0)]
    assert overlap_regions({"A": [(0, 1)], "B": [(1, 2)]}) == []  # touching turns are not overlap


def test_frames_in_uses_frame_centres():
    centers = frame_centers(5)  # 0.0125, 0.0325, ...
    assert frames_in([(0.02, 0.05)], centers).tolist() == [False, True, False, False, False]


# ------------------------------------------------------------------ adapters end to end


@pytest.fixture
def radio(tmp_path, write_wav):
    write_wav("radio/a.wav", seconds=3.0)
    write_wav("radio/b.wav", seconds=2.0, sr=44100, channels=2)
    (tmp_path / "radio/train.lst").write_text("a\nb\n")
    (tmp_path / "radio/train.rttm").write_text(
        rttm_line("a", 0.0, 2.0, "sp") + rttm_line("a", 1.0, 2.0, "mu") + rttm_line("b", 0.5, 1.0, "no"))
    return {"adapter": "class_rttm", "audio": str(tmp_path / "radio/{uri}.wav"),
            "label_map": {"sp": "speech", "mu": "music", "no": "noise"},
            "splits": {"train": {"list": str(tmp_path / "radio/train.lst"),
                                 "rttm": str(tmp_path / "radio/train.rttm")}}}


def test_class_rttm_harmonisation(radio, tmp_path):
    out = tmp_path / "out"
    hours = harmonise("radio", "train", radio, out)
    ref = read_rttm(out / "reference.rttm")
    assert {(s.label, s.start, s.end) for s in ref["a"]} == {("speech", 0.0, 2.0), ("music", 1.0, 3.0)}
    info = json.loads((out / "annotated.json").read_text())
    assert info["classes"] == {"speech": True, "noise": True, "music": True, "overlap": False}
    manifest = pd.read_csv(out / "manifest.tsv", sep="\t")
    b = manifest.set_index("uri").loc["b"]
    assert (b.sample_rate, b.channels) == (44100, 2)
    assert b.num_frames == num_frames(32000)
    with h5py.File(out / "targets.h5") as h5:
        t = h5["a"][:]
        assert t.shape == (num_frames(48000), 4)
        assert (t[:, CLASSES.index("overlap")] == UNKNOWN).all()  # not annotated -> unknown, not negative
        speech = t[:, CLASSES.index("speech")]
        assert speech[:99].all() and not speech[101:].any()  # 0-2 s active at 50 frames/s
        assert (t[:, CLASSES.index("noise")] == 0).all()  # annotated class, absent from this file
    row = hours.set_index("class").loc["music"]
    assert row.hours == pytest.approx(2.0 / 3600)


def test_speaker_rttm_harmonisation_with_uem(tmp_path, write_wav):
    write_wav("m/x.flac", seconds=4.0)
    (tmp_path / "m/dev.lst").write_text("x\n")
    (tmp_path / "m/dev.rttm").write_text(
        rttm_line("x", 0.0, 2.0, "spk1") + rttm_line("x", 1.5, 1.5, "spk2") + rttm_line("x", 3.5, 0.5, "spk1"))
    (tmp_path / "m/dev.uem").write_text("x 1 0.500 3.800\n")
    spec = {"adapter": "speaker_rttm", "audio": str(tmp_path / "m/{uri}.flac"),
            "splits": {"dev": {"list": str(tmp_path / "m/dev.lst"), "rttm": str(tmp_path / "m/dev.rttm"),
                               "uem": str(tmp_path / "m/dev.uem")}}}
    out = tmp_path / "out"
    harmonise("m", "dev", spec, out)
    ref = {(s.label, s.start, s.end) for s in read_rttm(out / "reference.rttm")["x"]}
    # speech = union of turns cropped to the UEM; overlap = where spk1 and spk2 both talk
    assert ref == {("speech", 0.5, 3.0), ("speech", 3.5, 3.8), ("overlap", 1.5, 2.0)}
    assert read_uem(out / "uem.uem") == {"x": [(0.5, 3.8)]}
    with h5py.File(out / "targets.h5") as h5:
        t = h5["x"][:]
    centers = frame_centers(len(t))
    outside = (centers < 0.5) | (centers >= 3.8)
    assert (t[outside] == UNKNOWN).all()
    inside = ~outside
    assert (t[inside][:, [CLASSES.index("music"), CLASSES.index("noise")]] == UNKNOWN).all()
    ov = t[:, CLASSES.index("overlap")]
    assert ov[(centers > 1.55) & (centers < 1.95)].all() and not ov[inside & (centers > 2.05)].any()


# ------------------------------------------------------------------ malformed input


def _expect_error(spec, tmp_path, fragment, line=None):
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        harmonise("c", "train", spec, out)
    assert fragment in str(err.value)
    if line is not None:
        assert err.value.line == line
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    return err.value


def test_rttm_wrong_field_count(radio, tmp_path):
    path = tmp_path / "radio/train.rttm"
    path.write_text(rttm_line("a", 0, 1, "sp") + "SPEAKER a 1 1.0 2.0 <NA> <NA> sp\n")
    e = _expect_error(radio, tmp_path, "expected 10", line=2)
    assert e.path == str(path)


def test_rttm_negative_duration(radio, tmp_path):
    (tmp_path / "radio/train.rttm").write_text(rttm_line("a", 1, -0.5, "sp"))
    _expect_error(radio, tmp_path, "negative duration", line=1)


def test_label_missing_from_label_map(radio, tmp_path):
    (tmp_path / "radio/train.rttm").write_text(rttm_line("a", 0, 1, "sp") + rttm_line("a", 1, 1, "jingle"))
    e = _expect_error(radio, tmp_path, "'jingle' is not in the corpus's label_map", line=2)
    assert e.path.endswith("train.rttm")


def test_listed_file_missing(radio, tmp_path):
    (tmp_path / "radio/train.lst").write_text("a\nb\nghost\n")
    e = _expect_error(radio, tmp_path, "ghost is listed but its audio", line=3)
    assert e.path.endswith("train.lst")


def test_unreadable_audio(radio, tmp_path):
    (tmp_path / "radio/b.wav").write_bytes(b"this is not audio")
    e = _expect_error(radio, tmp_path, "cannot read audio")
    assert e.path.endswith("b.wav")


def test_label_map_to_null_drops_label(radio, tmp_path):
    (tmp_path / "radio/train.rttm").write_text(rttm_line("a", 0, 1, "sp") + rttm_line("a", 1, 1, "jingle"))
    radio["label_map"]["jingle"] = None
    harmonise("c", "train", radio, tmp_path / "out")
    labels = {s.label for s in read_rttm(tmp_path / "out/reference.rttm")["a"]}
    assert labels == {"speech"}
