"""Corpus adapters: fixture corpora in each layout, written here in the exact on-disk formats."""

import json

import h5py
import pandas as pd
import pytest

from proxyseg.corpora.adapters import check_corpus, resolve_split
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, UNKNOWN, frame_centers
from proxyseg.corpora.harmonise import harmonise
from proxyseg.core.rttm import read_rttm, read_uem
from proxyseg.evaluate.scoring import score_split

SP, NO, MU, OV = (CLASSES.index(c) for c in ("speech", "noise", "music", "overlap"))


def rttm(uri, onset, dur, name):
    return f"SPEAKER {uri} 1 {onset:.3f} {dur:.3f} <NA> <NA> {name} <NA> <NA>\n"


def reference(out):
    return {(s.uri, s.label, s.start, s.end) for segs in read_rttm(out / "reference.rttm").values() for s in segs}


def annotated(out):
    return json.loads((out / "annotated.json").read_text())["classes"]


# ------------------------------------------------------------------------------------------- AragonRadio


@pytest.fixture
def aragon(tmp_path, write_wav):
    root = tmp_path / "AragonRadio"
    write_wav("AragonRadio/audio/prog1.wav", seconds=6.0)
    write_wav("AragonRadio/audio/prog2.wav", seconds=4.0, sr=44100, channels=2)
    (root / "rttm").mkdir()
    (root / "lists").mkdir()
    (root / "lists/train.lst").write_text("prog1\nprog2\n")
    (root / "rttm/train.rttm").write_text(
        rttm("prog1", 0.0, 3.0, "sp") + rttm("prog1", 2.0, 3.0, "mu") + rttm("prog1", 4.5, 1.0, "no")
        + rttm("prog2", 1.0, 2.0, "sp") + rttm("prog2", 1.5, 1.0, "sp"))
    return {"adapter": "aragon", "root": str(root), "splits": {"train": {}}}


def test_aragon_layout_defaults(aragon, tmp_path):
    out = tmp_path / "out"
    harmonise("aragon", "train", aragon, out)
    assert annotated(out) == {"speech": True, "noise": True, "music": True, "overlap": False}
    assert reference(out) == {("prog1", "speech", 0.0, 3.0), ("prog1", "music", 2.0, 5.0),
                              ("prog1", "noise", 4.5, 5.5), ("prog2", "speech", 1.0, 3.0)}
    with h5py.File(out / "targets.h5") as h5:
        t = h5["prog1"][:]
    c = frame_centers(len(t))
    assert (t[:, OV] == UNKNOWN).all()  # overlapped speech is not annotated: unknown, never negative
    assert (t[(c > 2.05) & (c < 2.95)][:, [SP, MU]] == 1).all()  # classes overlap in time
    assert (t[c > 5.6][:, [SP, MU, NO]] == 0).all()
    assert "domain" not in pd.read_csv(out / "manifest.tsv", sep="\t").columns


def test_aragon_label_map_override_drops_labels(aragon, tmp_path):
    aragon["label_map"] = {"sp": "speech", "mu": None, "no": "noise"}
    out = tmp_path / "out"
    harmonise("aragon", "train", aragon, out)
    assert annotated(out)["music"] is False
    assert {lab for _, lab, _, _ in reference(out)} == {"speech", "noise"}


def test_aragon_rejects_malformed_layout(aragon, tmp_path):
    (tmp_path / "AragonRadio/rttm/train.rttm").unlink()
    with pytest.raises(InputError, match=r"AragonRadio/rttm/train.rttm: RTTM file not found"):
        harmonise("aragon", "train", aragon, tmp_path / "out")
    with pytest.raises(InputError, match=r"rttm/train.rttm: corpus 'aragon', split 'train': file not found; "
                                         r"it should be the RTTM"):
        check_corpus("aragon", aragon)
    (tmp_path / "AragonRadio/rttm/train.rttm").write_text(rttm("prog1", 0, 1, "sp") + rttm("prog1", 1, 1, "jingle"))
    with pytest.raises(InputError, match=r"'jingle' is not in the corpus's label_map") as err:
        harmonise("aragon", "train", aragon, tmp_path / "out")
    assert err.value.path.endswith("train.rttm") and err.value.line == 2
    aragon["root"] = str(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"nowhere: corpus 'aragon', split 'train': root folder not found; it should "
                                         r"be the AragonRadio folder holding audio/<uri>.wav"):
        check_corpus("aragon", aragon)


def test_aragon_listed_file_without_audio(aragon, tmp_path):
    (tmp_path / "AragonRadio/lists/train.lst").write_text("prog1\nprog2\nghost\n")
    with pytest.raises(InputError, match="ghost is listed but its audio") as err:
        harmonise("aragon", "train", aragon, tmp_path / "out")
    assert err.value.path.endswith("lists/train.lst") and err.value.line == 3


# ------------------------------------------------------------------------------------------- DIHARD III

TABLE_HEADER = "uri\tin_core\tlang\tdomain\tsource\tlen\tscored_len\tspeakers\tchannels\n"


@pytest.fixture
def dihard(tmp_path, write_wav):
    """An LDC-layout release: three recordings in two domains, two of them in the core partition."""
    root = tmp_path / "LDC2020E12"
    files = {"DH_DEV_0001": ("True", "meeting"), "DH_DEV_0002": ("False", "meeting"),
             "DH_DEV_0003": ("True", "clinical")}
    for i, uri in enumerate(files):
        write_wav(f"LDC2020E12/data/flac/{uri}.flac", seconds=5.0, seed=i)
    (root / "data/rttm").mkdir(parents=True)
    (root / "data/rttm/DH_DEV_0001.rttm").write_text(
        rttm("DH_DEV_0001", 0.0, 3.0, "spk1") + rttm("DH_DEV_0001", 2.0, 2.0, "spk2")
        + rttm("DH_DEV_0001", 2.5, 1.0, "spk1"))  # spk1 overlapping itself is not overlap
    (root / "data/rttm/DH_DEV_0002.rttm").write_text(rttm("DH_DEV_0002", 1.0, 1.0, "A"))
    (root / "data/rttm/DH_DEV_0003.rttm").write_text(
        rttm("DH_DEV_0003", 0.5, 4.0, "P") + rttm("DH_DEV_0003", 1.0, 0.5, "C"))
    for part, regions in (("core", {"DH_DEV_0001": (0.0, 2.5), "DH_DEV_0003": (0.0, 5.0)}),
                          ("full", {u: (0.0, 5.0) for u in files})):
        (root / f"data/uem_scoring/{part}").mkdir(parents=True)
        (root / f"data/uem_scoring/{part}/all.uem").write_text(
            "".join(f"{u} 1 {a:.3f} {b:.3f}\n" for u, (a, b) in regions.items()))
    (root / "docs").mkdir()
    (root / "docs/recordings.tbl").write_text(TABLE_HEADER + "".join(
        f"{u}\t{core}\tEnglish\t{dom}\tsrc\t5.0\t5.0\t2\t1\n" for u, (core, dom) in files.items()))
    return {"adapter": "dihard", "partition": "core", "root": str(root), "splits": {"dev": {}}}


def test_dihard_core_partition(dihard, tmp_path):
    out = tmp_path / "out"
    harmonise("dihard3", "dev", dihard, out)
    manifest = pd.read_csv(out / "manifest.tsv", sep="\t")
    assert dict(zip(manifest.uri, manifest.domain)) == {"DH_DEV_0001": "meeting", "DH_DEV_0003": "clinical"}
    assert annotated(out) == {"speech": True, "noise": False, "music": False, "overlap": True}
    # core UEM scores DH_DEV_0001 up to 2.5 s only: reference cropped there
    assert read_uem(out / "uem.uem")["DH_DEV_0001"] == [(0.0, 2.5)]
    ref = reference(out)
    assert {r for r in ref if r[0] == "DH_DEV_0001"} == {("DH_DEV_0001", "speech", 0.0, 2.5),
                                                         ("DH_DEV_0001", "overlap", 2.0, 2.5)}
    assert ("DH_DEV_0003", "overlap", 1.0, 1.5) in ref
    with h5py.File(out / "targets.h5") as h5:
        t = h5["DH_DEV_0001"][:]
    c = frame_centers(len(t))
    assert (t[c >= 2.5] == UNKNOWN).all()  # outside the UEM
    assert (t[c < 2.5][:, [MU, NO]] == UNKNOWN).all() and (t[(c > 2.05) & (c < 2.45), OV] == 1).all()


def test_dihard_full_partition_and_portion(dihard, tmp_path):
    dihard["partition"] = "full"
    out = tmp_path / "full"
    harmonise("dihard3", "dev", dihard, out)
    assert (out / "files.lst").read_text().split() == ["DH_DEV_0001", "DH_DEV_0002", "DH_DEV_0003"]
    assert read_uem(out / "uem.uem")["DH_DEV_0001"] == [(0.0, 5.0)]
    assert ("DH_DEV_0001", "overlap", 2.0, 3.5) in reference(out)
    # portions split each domain: meeting has 2 files (1 + 1), clinical 1 (0 + 1)
    dihard["splits"] = {"train": {"portion": [0.0, 0.5]}, "dev": {"portion": [0.5, 1.0]}}
    train, dev = (resolve_split("d", dihard, s).uris for s in ("train", "dev"))
    assert train == ["DH_DEV_0001"] and dev == ["DH_DEV_0002", "DH_DEV_0003"]


def score_dihard(dihard, tmp_path):
    """Harmonise the DIHARD fixture into ``tmp_path/out`` and score speech in DH_DEV_0001 and DH_DEV_0003 per domain."""
    out = tmp_path / "out"
    harmonise("dihard3", "dev", dihard, out)
    hyp = tmp_path / "hyp.rttm"
    hyp.write_text(rttm("DH_DEV_0001", 0.0, 2.5, "speech") + rttm("DH_DEV_0003", 0.5, 2.0, "speech"))
    manifest = pd.read_csv(out / "manifest.tsv", sep="\t")
    return score_split(out / "reference.rttm", out / "uem.uem", out / "annotated.json", hyp,
                       domains=dict(zip(manifest.uri, manifest.domain)))


def test_dihard_per_domain_scores(dihard, tmp_path):
    rows = score_dihard(dihard, tmp_path)
    speech = rows[rows["class"] == "speech"].set_index("domain")
    assert set(speech.index) == {"", "clinical", "meeting"}
    assert speech.loc["meeting", "recall"] == pytest.approx(1.0)
    assert speech.loc["clinical", "recall"] == pytest.approx(2.0 / 4.0)
    assert speech.loc["", "recall"] == pytest.approx(4.5 / 6.5)  # durations summed over both domains
    assert speech.loc["clinical", "files"] == 1 and speech.loc["", "files"] == 2


@pytest.mark.parametrize("breakage, fragment", [
    ("docs/recordings.tbl", "docs/recordings.tbl: corpus 'dihard3', split 'dev': DIHARD III table of recordings "
                            "not found"),
    ("data/uem_scoring/core/all.uem", "no scoring UEM for the core partition"),
    ("data/flac", "folder data/flac/ not found"),
    ("data/rttm/DH_DEV_0003.rttm", "data/rttm/DH_DEV_0003.rttm: corpus 'dihard3', split 'dev': file not found"),
])
def test_dihard_rejects_malformed_layout(dihard, tmp_path, breakage, fragment):
    import shutil

    target = tmp_path / "LDC2020E12" / breakage
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(InputError) as err:
        check_corpus("dihard3", dihard)
    assert fragment in str(err.value)


def test_dihard_table_errors_name_the_line(dihard, tmp_path):
    table = tmp_path / "LDC2020E12/docs/recordings.tbl"
    table.write_text("uri\tin_core\tlang\n" + "DH_DEV_0001\tTrue\tEnglish\n")
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['domain'\]") as err:
        resolve_split("dihard3", dihard, "dev")
    assert err.value.path == str(table) and err.value.line == 1
    table.write_text(TABLE_HEADER + "DH_DEV_0001\tyes\tEnglish\tmeeting\tsrc\t5\t5\t2\t1\n")
    with pytest.raises(InputError, match="in_core must be True or False") as err:
        resolve_split("dihard3", dihard, "dev")
    assert err.value.line == 2


def test_dihard_table_duplicate_names_both_lines(dihard, tmp_path):
    table = tmp_path / "LDC2020E12/docs/recordings.tbl"
    table.write_text(table.read_text() + "DH_DEV_0001\tTrue\tEnglish\tmeeting\tsrc\t5.0\t5.0\t2\t1\n")
    with pytest.raises(InputError, match=r"URI 'DH_DEV_0001' is on lines 2 and 5") as err:
        resolve_split("dihard3", dihard, "dev")
    assert err.value.path == str(table) and err.value.line == 5


# ------------------------------------------------------------------------------------------- generic


def test_generic_speaker_turns_per_file_rttm_without_list(tmp_path, write_wav):
    write_wav("corpus/wav/m1.wav", seconds=4.0)
    write_wav("corpus/wav/m2.wav", seconds=4.0, seed=1)
    (tmp_path / "corpus/ann").mkdir()
    (tmp_path / "corpus/ann/m1.rttm").write_text(rttm("m1", 0.0, 2.0, "a") + rttm("m1", 1.0, 2.0, "b"))
    (tmp_path / "corpus/ann/m2.rttm").write_text(rttm("m2", 0.5, 1.0, "a"))
    (tmp_path / "corpus/domains.tsv").write_text("uri\tdomain\nm1\tlab\nm2\tfield\n")
    spec = {"adapter": "generic", "labels": "speakers", "root": str(tmp_path / "corpus"), "audio": "wav/{uri}.wav",
            "domains": "domains.tsv", "splits": {"test": {"rttm": "ann/{uri}.rttm"}}}
    out = tmp_path / "out"
    harmonise("g", "test", spec, out)
    assert (out / "files.lst").read_text().split() == ["m1", "m2"]  # every audio file matching the template
    assert reference(out) == {("m1", "speech", 0.0, 3.0), ("m1", "overlap", 1.0, 2.0), ("m2", "speech", 0.5, 1.5)}
    manifest = pd.read_csv(out / "manifest.tsv", sep="\t")
    assert dict(zip(manifest.uri, manifest.domain)) == {"m1": "lab", "m2": "field"}
    (tmp_path / "corpus/ann/m2.rttm").write_text(rttm("m2", 0.5, 1.0, "a") + rttm("m1", 0.5, 1.0, "a"))
    with pytest.raises(InputError, match="holds segments of m1, but this file is the RTTM of m2") as err:
        harmonise("g", "test", spec, out)
    assert err.value.path.endswith("ann/m2.rttm") and err.value.line == 2


def test_generic_class_labels_with_uem_and_list(tmp_path, write_wav):
    write_wav("c/a.wav", seconds=5.0)
    (tmp_path / "c/test.lst").write_text("a\n")
    (tmp_path / "c/test.rttm").write_text(rttm("a", 0.0, 4.0, "talk") + rttm("a", 3.0, 2.0, "song"))
    (tmp_path / "c/test.uem").write_text("a 1 1.000 4.000\n")
    spec = {"adapter": "generic", "labels": "classes", "audio": str(tmp_path / "c/{uri}.wav"),
            "label_map": {"talk": "speech", "song": "music"},
            "splits": {"test": {"list": str(tmp_path / "c/test.lst"), "rttm": str(tmp_path / "c/test.rttm"),
                                "uem": str(tmp_path / "c/test.uem")}}}
    out = tmp_path / "out"
    harmonise("g", "test", spec, out)
    assert reference(out) == {("a", "speech", 1.0, 4.0), ("a", "music", 3.0, 4.0)}  # cropped to the UEM
    assert annotated(out) == {"speech": True, "noise": False, "music": True, "overlap": False}


def test_generic_requires_label_kind_and_audio(tmp_path):
    spec = {"adapter": "generic", "audio": "{uri}.wav", "splits": {"test": {"rttm": "x.rttm"}}}
    with pytest.raises(InputError, match="needs `labels`"):
        resolve_split("g", spec, "test")
    spec = {"adapter": "generic", "labels": "speakers", "splits": {"test": {"rttm": "x.rttm"}}}
    with pytest.raises(InputError, match="`audio` is required"):
        resolve_split("g", spec, "test")


def test_generic_uem_missing_a_listed_file(tmp_path, write_wav):
    write_wav("c/a.wav", seconds=2.0)
    write_wav("c/b.wav", seconds=2.0)
    (tmp_path / "c/l.lst").write_text("a\nb\n")
    (tmp_path / "c/r.rttm").write_text(rttm("a", 0, 1, "x"))
    (tmp_path / "c/u.uem").write_text("a 1 0 2\n")
    spec = {"adapter": "generic", "labels": "speakers", "root": str(tmp_path / "c"), "audio": "{uri}.wav",
            "splits": {"t": {"list": "l.lst", "rttm": "r.rttm", "uem": "u.uem"}}}
    with pytest.raises(InputError, match=r"u.uem: no scored region for b"):
        harmonise("g", "t", spec, tmp_path / "out")


def test_former_adapter_names_are_the_generic_layout(tmp_path, write_wav):
    write_wav("c/a.wav", seconds=2.0)
    (tmp_path / "c/l.lst").write_text("a\n")
    (tmp_path / "c/r.rttm").write_text(rttm("a", 0, 1, "sp"))
    spec = {"adapter": "class_rttm", "audio": str(tmp_path / "c/{uri}.wav"), "label_map": {"sp": "speech"},
            "splits": {"t": {"list": str(tmp_path / "c/l.lst"), "rttm": str(tmp_path / "c/r.rttm")}}}
    source = resolve_split("c", spec, "t")
    assert (source.adapter, source.labels, source.annotated) == ("generic", "classes", {"speech"})


# ------------------------------------------------------------------------------------------- pyannote


@pytest.fixture
def protocol(tmp_path, write_wav):
    for i, uri in enumerate(["s1", "s2", "s3"]):
        write_wav(f"db/audio/{uri}.wav", seconds=3.0, seed=i)
    lists = tmp_path / "db/lists"
    lists.mkdir()
    (lists / "train.lst").write_text("s1\ns2\n")
    (lists / "dev.lst").write_text("s3\n")
    (lists / "train.rttm").write_text(rttm("s1", 0.0, 2.0, "A") + rttm("s1", 1.0, 1.5, "B") + rttm("s2", 0, 1, "A"))
    (lists / "dev.rttm").write_text(rttm("s3", 0.5, 1.0, "A"))
    (lists / "dev.uem").write_text("s3 1 0.000 2.000\n")
    (lists / "domains.map").write_text("s1 studio\ns2 street\ns3 studio\n")
    (tmp_path / "db/database.yml").write_text("""
Databases:
  MyDB: audio/{uri}.wav
Protocols:
  MyDB:
    SpeakerDiarization:
      Mini:
        train:
          uri: lists/train.lst
          annotation: lists/train.rttm
          domain: lists/domains.map
        development:
          uri: lists/dev.lst
          annotation: lists/dev.rttm
          annotated: lists/dev.uem
          domain: lists/domains.map
""")
    return {"adapter": "pyannote", "database": str(tmp_path / "db/database.yml"),
            "protocol": "MyDB.SpeakerDiarization.Mini", "splits": {"train": {}, "dev": {}}}


def test_pyannote_protocol(protocol, tmp_path):
    out = tmp_path / "out"
    harmonise("p", "train", protocol, out)
    assert reference(out) >= {("s1", "speech", 0.0, 2.5), ("s1", "overlap", 1.0, 2.0)}
    manifest = pd.read_csv(out / "manifest.tsv", sep="\t")
    assert dict(zip(manifest.uri, manifest.domain)) == {"s1": "studio", "s2": "street"}
    harmonise("p", "dev", protocol, tmp_path / "dev")  # dev -> the protocol's development subset
    assert read_uem(tmp_path / "dev/uem.uem") == {"s3": [(0.0, 2.0)]}
    assert annotated(tmp_path / "dev")["overlap"] is True


def test_pyannote_rejects_unknown_protocol_and_subset(protocol, tmp_path):
    protocol["protocol"] = "MyDB.SpeakerDiarization.Other"
    with pytest.raises(InputError, match=r"database.yml: corpus 'p': protocol .* not found .*MyDB.SpeakerDiarization"
                                         r".Mini"):
        resolve_split("p", protocol, "train")
    protocol["protocol"] = "MyDB.SpeakerDiarization.Mini"
    protocol["splits"]["test"] = {}
    with pytest.raises(InputError, match="has no subset 'test'"):
        resolve_split("p", protocol, "test")
    (tmp_path / "db/database.yml").unlink()
    with pytest.raises(InputError, match="database.yml: corpus 'p', split 'train': database.yml not found"):
        resolve_split("p", protocol, "train")


def test_per_domain_rows_beside_the_corpus_total(dihard, tmp_path):
    from proxyseg.evaluate.scoring import segmentation_tables

    rows = score_dihard(dihard, tmp_path)
    rows.insert(0, "corpus", "dihard3")
    rows.insert(0, "system", "teacher")
    segmentation_tables(rows, tmp_path / "s.tsv", tmp_path / "s.md", {"threshold": 0.5, "collar": 0.0},
                        tmp_path / "s.json")
    md = (tmp_path / "s.md").read_text().split("per domain, dihard3")[1]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")][2:]
    assert [r[:2] for r in body] == [["teacher", "all"], ["teacher", "clinical"], ["teacher", "meeting"]]
    assert body[1][2] == "66.7"  # clinical speech F1: precision 1, recall 0.5
    assert set(pd.read_csv(tmp_path / "s.tsv", sep="\t", keep_default_na=False)["domain"]) == {"", "clinical",
                                                                                            "meeting"}


def test_generic_audio_template_may_name_the_split(tmp_path, write_wav):
    """`audio: "{split}/{uri}.wav"`: each split's recordings in a folder of its name (the template check
    allowed {split}, and resolving used to fail on it with a KeyError)."""
    for split in ("train", "test"):
        write_wav(f"{split}/a_{split}.wav", seconds=1.0)
        (tmp_path / f"{split}.rttm").write_text(f"SPEAKER a_{split} 1 0.10 0.50 <NA> <NA> spk1 <NA> <NA>\n")
    spec = {"adapter": "generic", "labels": "speakers", "root": str(tmp_path), "audio": "{split}/{uri}.wav",
            "splits": {s: {"rttm": f"{s}.rttm"} for s in ("train", "test")}}
    for split in ("train", "test"):
        source = resolve_split("c", spec, split)
        assert source.uris == [f"a_{split}"] and source.audio[f"a_{split}"] == tmp_path / split / f"a_{split}.wav"
