"""The folder adapter: unlabelled audio, every class unknown, for distilling a proxy from the teacher."""

import json
import logging

import h5py
import pandas as pd
import pytest

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, UNKNOWN, num_frames
from proxyseg.core.rttm import read_uem
from proxyseg.corpora.adapters import ADAPTERS, check_corpus, resolve_split
from proxyseg.corpora.harmonise import harmonise, resampled_length

# the schema's defaults, as Snakemake's validate fills them in: empty, hence not refused as labels
SCHEMA_DEFAULTS = {"label_map": {}, "uem": None, "domains": None, "unlisted": "error", "partition": "core"}


@pytest.fixture
def recordings(tmp_path, write_wav):
    """rec/ with three WAVs (one at 8 kHz stereo), a list file and a stray text file the glob must skip."""
    write_wav("rec/a.wav", seconds=1.0)
    write_wav("rec/b.wav", seconds=2.5, sr=8000, channels=2)
    write_wav("rec/c.wav", seconds=1.5)
    (tmp_path / "rec/notes.txt").write_text("not audio\n")
    (tmp_path / "rec/some.lst").write_text("c\na\n")
    return tmp_path / "rec"


def folder(root, splits=None, **extra):
    return {"adapter": "folder", "root": str(root), "splits": splits or {"train": {}}, **SCHEMA_DEFAULTS, **extra}


def test_registered():
    assert ADAPTERS["folder"][0] == "classes"


def test_glob_harmonises_to_unknown_targets(recordings, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        hours = harmonise("unlab", "train", folder(recordings), out)
    assert not [r for r in caplog.records if "no segment" in r.getMessage()]  # no labels by design: no warning
    assert (out / "files.lst").read_text() == "a\nb\nc\n"
    assert (out / "reference.rttm").read_text() == ""
    assert read_uem(out / "uem.uem") == {"a": [(0.0, 1.0)], "b": [(0.0, 2.5)], "c": [(0.0, 1.5)]}
    info = json.loads((out / "annotated.json").read_text())
    assert info["classes"] == {c: False for c in CLASSES}
    assert info["provenance"]["settings"]["adapter"] == "folder"
    manifest = pd.read_csv(out / "manifest.tsv", sep="\t").set_index("uri")
    assert manifest.loc["b", "sample_rate"] == 8000 and manifest.loc["b", "channels"] == 2
    with h5py.File(out / "targets.h5") as h5:
        assert sorted(h5) == ["a", "b", "c"]
        assert list(h5.attrs["annotated"]) == [False] * len(CLASSES)
        for uri, seconds, sr in (("a", 1.0, 16000), ("b", 2.5, 8000), ("c", 1.5, 16000)):
            t = h5[uri][:]
            assert t.shape == (num_frames(resampled_length(round(seconds * sr), sr)), len(CLASSES))
            assert manifest.loc[uri, "num_frames"] == len(t)
            assert (t == UNKNOWN).all()
    assert not hours["annotated"].any() and hours["hours"].isna().all()
    assert hours["scored_hours"].iloc[0] == pytest.approx(5.0 / 3600) and (hours["files"] == 3).all()
    assert (out / "class_hours.tsv").is_file()


def test_list_and_portion(recordings):
    spec = folder(recordings, {"listed": {"list": "some.lst"}, "head": {"portion": [0.0, 0.5]},
                               "tail": {"portion": [0.5, 1.0]}})
    listed = resolve_split("unlab", spec, "listed")
    assert listed.uris == ["c", "a"]  # listed order, not sorted
    assert listed.audio["c"] == recordings / "c.wav"
    assert listed.where("a") == (recordings / "some.lst", 2)
    assert listed.inputs == [recordings / "some.lst"]
    assert (listed.rttm, listed.uem, listed.annotated, listed.label_map) == ([], None, set(), {})
    head, tail = (resolve_split("unlab", spec, s).uris for s in ("head", "tail"))
    assert head == ["a"] and tail == ["b", "c"]  # disjoint, together every file
    assert set(check_corpus("unlab", spec, shared_files_ok=True)) == {"listed", "head", "tail"}
    with pytest.raises(InputError, match="'a' is in split 'listed' .* and in split 'head'"):
        check_corpus("unlab", spec)  # "listed" shares a file with "head"


def test_ogg_template_and_split_root(tmp_path, write_wav, recordings):
    write_wav("other/x.ogg", seconds=1.2, sr=22050)
    write_wav("other/y.ogg", seconds=0.8)
    write_wav("other/z.wav", seconds=0.8)  # not matching the template: left out
    spec = folder(recordings, {"train": {}, "test": {"root": str(tmp_path / "other")}}, audio="{uri}.ogg")
    assert resolve_split("unlab", spec, "test").uris == ["x", "y"]
    harmonise("unlab", "test", spec, tmp_path / "out")
    with h5py.File(tmp_path / "out/targets.h5") as h5:
        assert sorted(h5) == ["x", "y"] and all((h5[u][:] == UNKNOWN).all() for u in h5)
    with pytest.raises(InputError, match=r"no audio file matches .*rec/\{uri\}\.ogg"):  # rec/ holds only WAVs
        resolve_split("unlab", spec, "train")


def test_default_root_holds_split_folders(tmp_path, write_wav):
    write_wav("data/train/p.wav")
    write_wav("data/dev/q.wav")
    spec = folder(tmp_path / "data", {"train": {}, "dev": {}}, audio="{split}/{uri}.wav")
    assert resolve_split("unlab", spec, "dev").audio == {"q": tmp_path / "data/dev/q.wav"}


@pytest.mark.parametrize("key, value, where", [
    ("rttm", "all.rttm", "split"), ("uem", "all.uem", "split"), ("rttm", "all.rttm", "corpus"),
    ("uem", "all.uem", "corpus"), ("labels", "classes", "corpus"), ("label_map", {"sp": "speech"}, "corpus"),
    ("annotated", ["speech"], "corpus"), ("domains", "domains.tsv", "corpus")])
def test_label_keys_refused(recordings, key, value, where):
    spec = folder(recordings, {"train": {key: value}} if where == "split" else None,
                  **({key: value} if where == "corpus" else {}))
    with pytest.raises(InputError, match=rf"`{key}` is given, but a folder corpus has no labels.*generic adapter"):
        resolve_split("unlab", spec, "train")


def test_empty_folder_names_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"corpus 'unlab', split 'train': no `list` given and no audio file") as err:
        resolve_split("unlab", folder(tmp_path / "empty"), "train")
    assert str(err.value).endswith(str(tmp_path / "empty" / "{uri}.wav"))


def test_root_required_and_must_exist(tmp_path):
    with pytest.raises(InputError, match="the folder adapter needs `root`: the folder of the recordings"):
        resolve_split("unlab", {"adapter": "folder", "splits": {"train": {}}}, "train")
    with pytest.raises(InputError, match="root folder not found") as err:
        resolve_split("unlab", folder(tmp_path / "missing"), "train")
    assert str(tmp_path / "missing") in str(err.value)


def test_audio_without_uri_refused(recordings):
    with pytest.raises(InputError, match=r"`audio` 'a.wav' must contain \{uri\}"):
        resolve_split("unlab", folder(recordings, audio="a.wav"), "train")


def test_missing_listed_audio_named(recordings, tmp_path):
    (recordings / "some.lst").write_text("a\nghost\n")
    with pytest.raises(InputError, match="ghost is listed but its audio .*ghost.wav does not exist") as err:
        harmonise("unlab", "train", folder(recordings, {"train": {"list": "some.lst"}}), tmp_path / "out")
    assert (err.value.path, err.value.line) == (str(recordings / "some.lst"), 2)
    assert not (tmp_path / "out/targets.h5").exists()
