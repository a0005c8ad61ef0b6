"""Bad input never passes in silence: each mistake stops with the file and line to fix, or warns by name."""

import importlib
import json
import logging
import pkgutil

import numpy as np
import pytest
import soundfile as sf

import proxyseg
from proxyseg.corpora.adapters import check_corpus, read_domains, read_table, resolve_split
from proxyseg.corpora.adapters.pyannote import _read_mapping
from proxyseg.core.audio import audio_info, load_audio
from proxyseg.core.errors import InputError
from proxyseg.corpora.harmonise import harmonise
from proxyseg.segmenter.stream import AudioReader
from proxyseg.core.rttm import read_list, read_rttm, read_uem


def rttm(uri, onset, dur, name):
    return f"SPEAKER {uri} 1 {onset:.3f} {dur:.3f} <NA> <NA> {name} <NA> <NA>\n"


@pytest.fixture
def corpus(tmp_path, write_wav):
    """A generic class-labelled corpus: audio a, b (train) and c (test), one RTTM per split, lists."""
    root = tmp_path / "c"
    for i, uri in enumerate("abc"):
        write_wav(f"c/audio/{uri}.wav", seconds=2.0, seed=i)
    (root / "train.lst").write_text("a\nb\n")
    (root / "test.lst").write_text("c\n")
    (root / "train.rttm").write_text(rttm("a", 0, 1, "speech") + rttm("b", 0.5, 1, "music"))
    (root / "test.rttm").write_text(rttm("c", 0, 1, "speech"))
    return {"adapter": "generic", "labels": "classes", "root": str(root), "audio": "audio/{uri}.wav",
            "splits": {"train": {"list": "train.lst", "rttm": "train.rttm"},
                       "test": {"list": "test.lst", "rttm": "test.rttm"}}}


def run(spec, tmp_path, split="train"):
    return harmonise("c", split, spec, tmp_path / "out" / split)


# ------------------------------------------------------------------ 1. RTTM URIs outside the split


def test_rttm_uri_differing_in_case_from_the_list_is_a_typo(corpus, tmp_path):
    (tmp_path / "c/train.rttm").write_text(rttm("a", 0, 1, "speech") + rttm("B", 0.5, 1, "music"))
    with pytest.raises(InputError, match=r"'B'.*listed as 'b'.*train.lst:2") as err:
        run(corpus, tmp_path)
    assert err.value.path.endswith("train.rttm") and err.value.line == 2
    corpus["unlisted"] = "warn"  # a typo stays an error
    with pytest.raises(InputError, match="listed as 'b'"):
        run(corpus, tmp_path)


def test_rttm_uri_typo_stops_the_cli(corpus, tmp_path, capsys):
    import json

    from proxyseg.cli import main

    (tmp_path / "c/train.rttm").write_text(rttm("a", 0, 1, "speech") + rttm("B", 0.5, 1, "music"))
    code = main(["harmonise", "--corpus", "c", "--split", "train", "--out-dir", str(tmp_path / "o"),
                 "--settings", json.dumps(corpus)])
    err = capsys.readouterr().err
    assert code == 2 and "train.rttm:2: URI 'B' is listed as 'b'" in err and "Traceback" not in err


def test_rttm_uri_in_no_split_is_an_error_or_a_warning(corpus, tmp_path, caplog):
    (tmp_path / "c/train.rttm").write_text(rttm("a", 0, 1, "speech") + rttm("b", 0, 1, "music")
                                           + rttm("zz", 0, 1, "speech"))
    with pytest.raises(InputError, match=r"'zz' is in no split of corpus 'c'.*unlisted: warn") as err:
        run(corpus, tmp_path)
    assert err.value.path.endswith("train.rttm") and err.value.line == 3
    corpus["unlisted"] = "warn"
    with caplog.at_level(logging.WARNING, logger="proxyseg.corpora.adapters"):
        run(corpus, tmp_path)
    assert "zz" in caplog.text and "train.rttm" in caplog.text
    corpus["unlisted"] = "maybe"
    with pytest.raises(InputError, match="`unlisted` must be error or warn"):
        resolve_split("c", corpus, "train")


def test_one_rttm_shared_by_the_splits_is_fine(corpus, tmp_path, caplog):
    """A URI of another split of the corpus (or of the split's list, outside its `portion`) is no error."""
    (tmp_path / "c/all.rttm").write_text((tmp_path / "c/train.rttm").read_text()
                                         + (tmp_path / "c/test.rttm").read_text())
    for split in ("train", "test"):
        corpus["splits"][split]["rttm"] = "all.rttm"
    with caplog.at_level(logging.WARNING):
        run(corpus, tmp_path, "train")
        run(corpus, tmp_path, "test")
    corpus["splits"] = {"train": {"list": "train.lst", "rttm": "train.rttm", "portion": [0.0, 0.5]},
                        "dev": {"list": "train.lst", "rttm": "train.rttm", "portion": [0.5, 1.0]}}
    with caplog.at_level(logging.WARNING):
        run(corpus, tmp_path, "train")
    assert caplog.text == ""
    (tmp_path / "c/all.rttm").write_text((tmp_path / "c/all.rttm").read_text() + rttm("C", 0, 1, "speech"))
    corpus["splits"] = {"train": {"list": "train.lst", "rttm": "all.rttm"},
                        "test": {"list": "test.lst", "rttm": "all.rttm"}}
    with pytest.raises(InputError, match=r"'C'.*listed as 'c'.*test.lst:1") as err:
        run(corpus, tmp_path, "train")
    assert err.value.line == 4


def test_listed_file_without_any_segment_warns(corpus, tmp_path, caplog):
    (tmp_path / "c/train.rttm").write_text(rttm("a", 0, 1, "speech"))
    with caplog.at_level(logging.WARNING, logger="proxyseg.corpora.adapters"):
        run(corpus, tmp_path)
    assert "no segment" in caplog.text and "['b']" in caplog.text and "train.rttm" in caplog.text


# ------------------------------------------------------------------ 2. UEM regions past the end of the audio


def test_uem_region_after_the_end_of_the_file(corpus, tmp_path):
    (tmp_path / "c/train.uem").write_text("a 1 0.000 2.000\nb 1 0.000 1.000\nb 1 7.000 9.000\n")
    corpus["splits"]["train"]["uem"] = "train.uem"
    with pytest.raises(InputError, match=r"starts at 7.0 s, after the end of .*b.wav \(2.000 s\)") as err:
        run(corpus, tmp_path)
    assert err.value.path.endswith("train.uem") and err.value.line == 3
    (tmp_path / "c/train.uem").write_text("a 1 0.000 2.000\nb 1 1.000 9.000\n")  # partly past the end: clipped
    run(corpus, tmp_path)
    assert read_uem(tmp_path / "out/train/uem.uem")["b"] == [(1.0, 2.0)]


# ------------------------------------------------------------------ 3. audio shorter than one frame


@pytest.mark.parametrize("samples", [0, 300])
def test_audio_shorter_than_a_frame(corpus, tmp_path, samples):
    sf.write(tmp_path / "c/audio/b.wav", np.zeros(samples, np.float32), 16000)
    with pytest.raises(InputError, match=r"b: its audio .*b.wav is shorter than one frame") as err:
        run(corpus, tmp_path)
    assert err.value.path.endswith("train.lst") and err.value.line == 2


def test_truncated_or_corrupt_audio(corpus, tmp_path):
    wav = tmp_path / "c/audio/b.wav"
    wav.write_bytes(wav.read_bytes()[:60])  # header and a few samples
    with pytest.raises(InputError, match="shorter than one frame"):
        run(corpus, tmp_path)
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError, match="cannot read audio") as err:
        run(corpus, tmp_path)
    assert err.value.path.endswith("b.wav")


# ------------------------------------------------------------------ 4. text files that are not UTF-8

LATIN1 = "caf\xe9".encode("latin-1")


@pytest.mark.parametrize("reader, text", [
    (read_rttm, b"SPEAKER a 1 0 1 <NA> <NA> sp <NA> <NA>\nSPEAKER a 1 1 1 <NA> <NA> " + LATIN1 + b" <NA> <NA>\n"),
    (read_uem, b"a 1 0 1\n" + LATIN1 + b" 1 0 1\n"),
    (read_list, b"a\n" + LATIN1 + b"\n"),
    (lambda p: read_table(p, ("uri",), "table"), b"uri\tdomain\n" + LATIN1 + b"\tx\n"),
    (read_domains, b"uri domain\n" + LATIN1 + b" x\n"),
    (_read_mapping, b"a x\n" + LATIN1 + b" y\n"),
])
def test_text_that_is_not_utf8_names_file_and_line(tmp_path, reader, text):
    path = tmp_path / "f.txt"
    path.write_bytes(text)
    with pytest.raises(InputError, match="not UTF-8") as err:
        reader(path)
    assert err.value.path == str(path) and err.value.line == 2


def test_list_that_is_not_utf8_stops_at_parse_time(corpus, tmp_path):
    (tmp_path / "c/test.lst").write_bytes(b"c\n" + LATIN1 + b"\n")
    with pytest.raises(InputError, match=r"test.lst:2: .*not UTF-8.*save it as UTF-8"):
        check_corpus("c", corpus)


def test_database_yml_that_is_not_utf8(tmp_path):
    (tmp_path / "database.yml").write_bytes(b"Databases:\n  X: " + LATIN1 + b"/{uri}.wav\n")
    spec = {"adapter": "pyannote", "database": str(tmp_path / "database.yml"), "protocol": "X.A.B",
            "splits": {"train": {}}}
    with pytest.raises(InputError, match="not UTF-8") as err:
        resolve_split("c", spec, "train")
    assert err.value.line == 2


def test_utf8_byte_order_mark_is_not_part_of_the_first_uri(tmp_path):
    (tmp_path / "l.lst").write_bytes(b"\xef\xbb\xbfa\nb\n")
    assert read_list(tmp_path / "l.lst") == ["a", "b"]


# ------------------------------------------------------------------ 5. URIs that cannot name files


@pytest.mark.parametrize("uri, reason", [
    ("../../x", "'/'"), ("a\\b", "'\\\\'"), (".hidden", "starts with '.'"), ("..", "starts with '.'"),
    ("a\x07b", "control"), ("a\u200bb", "control"),
])
def test_uri_that_cannot_name_output_files(corpus, tmp_path, uri, reason):
    (tmp_path / "c/train.lst").write_text(f"a\n{uri}\n")
    with pytest.raises(InputError, match=reason) as err:
        check_corpus("c", corpus)  # Snakemake resolves every split at parse time
    assert err.value.path.endswith("train.lst") and err.value.line == 2
    assert "rename" in str(err.value)


def test_uri_with_a_space_from_the_audio_folder(tmp_path, write_wav):
    write_wav("g/my file.wav")
    (tmp_path / "g/r.rttm").write_text("")
    spec = {"adapter": "generic", "labels": "speakers", "root": str(tmp_path / "g"), "audio": "{uri}.wav",
            "splits": {"test": {"rttm": "{uri}.rttm"}}}
    with pytest.raises(InputError, match=r"my file.wav: .*'my file' contains whitespace.*rename"):
        resolve_split("g", spec, "test")


# ------------------------------------------------------------------ 6. duplicates


def test_duplicate_uri_names_it_and_both_lines(tmp_path):
    (tmp_path / "l.lst").write_text("a\nb\n# c\na\n")
    with pytest.raises(InputError, match=r"'a' is listed on lines 1 and 4") as err:
        read_list(tmp_path / "l.lst")
    assert err.value.path == str(tmp_path / "l.lst") and err.value.line == 4


# ------------------------------------------------------------------ 7. NaN or infinite samples


def _float_wav(path, bad_at=None, value=np.nan, sr=16000, seconds=2.0, channels=1):
    """A float-coded WAV (PCM cannot hold NaN) with ``value`` at second ``bad_at`` of its last channel."""
    x = (0.1 * np.random.default_rng(0).standard_normal((int(seconds * sr), channels))).astype(np.float32)
    if bad_at is not None:
        x[int(bad_at * sr), -1] = value
    sf.write(path, x, sr, subtype="FLOAT")
    return path


def _load_all(path):
    return load_audio(path)


def _load_part(path):  # from 1 s on: the time named is still the file's
    return load_audio(path, 1.0)


def _audio_info(path):
    return audio_info(path, samples=True)


def _reader(path):
    r = AudioReader(path)
    return r.read(0, r.num_samples)


def _reader_blocks(path):  # as `proxyseg segment` reads: a piece at a time
    r = AudioReader(path)
    return [r.read(a, a + 4000) for a in range(0, r.num_samples, 4000)]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("sr, channels", [(16000, 1), (44100, 2)])
@pytest.mark.parametrize("reader", [_load_all, _load_part, _audio_info, _reader, _reader_blocks])
def test_nan_or_inf_samples_name_file_and_time(tmp_path, reader, value, sr, channels):
    path = _float_wav(tmp_path / "x.wav", 1.5, value, sr=sr, channels=channels)
    with pytest.raises(InputError, match=r"x.wav: sample at 1.500 s is NaN or infinite.*repair the file, or drop"):
        reader(path)
    reader(_float_wav(tmp_path / "x.wav"))  # finite float samples pass


def test_nan_samples_stop_harmonise_naming_the_file(corpus, tmp_path, capsys):
    from proxyseg.cli import main

    _float_wav(tmp_path / "c/audio/b.wav", 0.25)
    code = main(["harmonise", "--corpus", "c", "--split", "train", "--out-dir", str(tmp_path / "o"),
                 "--settings", json.dumps(corpus)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'c/audio/b.wav'}: sample at 0.250 s is NaN or infinite" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 8. annotations past the end of the audio


def _outside(tmp_path, split="train"):
    return json.loads((tmp_path / "out" / split / "annotated.json").read_text())["outside_audio"]


@pytest.mark.parametrize("train_rttm, uem, counts", [
    # audio a and b are 2 s long: a segment cut at the end, one wholly after it, one within the rounding slack
    (rttm("a", 0, 1.5, "speech") + rttm("a", 1.5, 1.0, "music") + rttm("a", 1.99, 0.025, "speech")
     + rttm("b", 0, 1.9, "speech")
     + rttm("b", 1.95, 0.5, "music"), None,
     {"rttm_segments_dropped": 0, "rttm_segments_cut": 2, "rttm_seconds_past_end": 0.95, "uem_regions_clipped": 0,
      "uem_seconds_clipped": 0.0, "files": ["a", "b"]}),
    (rttm("a", 0, 1.9, "speech") + rttm("b", 0, 1.9, "speech") + rttm("b", 2.5, 0.5, "music"), None,
     {"rttm_segments_dropped": 1, "rttm_segments_cut": 0, "rttm_seconds_past_end": 0.5, "uem_regions_clipped": 0,
      "uem_seconds_clipped": 0.0, "files": ["b"]}),
    (rttm("a", 0, 1, "speech") + rttm("b", 0, 1, "music"), "a 1 0 2.01\nb 1 0.5 5.0\n",
     {"rttm_segments_dropped": 0, "rttm_segments_cut": 0, "rttm_seconds_past_end": 0.0, "uem_regions_clipped": 1,
      "uem_seconds_clipped": 3.0, "files": ["b"]}),
])
def test_annotations_past_the_end_are_counted_and_warned(corpus, tmp_path, caplog, train_rttm, uem, counts):
    (tmp_path / "c/train.rttm").write_text(train_rttm)
    if uem:
        (tmp_path / "c/train.uem").write_text(uem)
        corpus["splits"]["train"]["uem"] = "train.uem"
    with caplog.at_level(logging.WARNING, logger="proxyseg.corpora.harmonise"):
        run(corpus, tmp_path)
    assert _outside(tmp_path) == counts
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "corpus 'c', split 'train': annotations past the end of the audio" in lines[0]
    assert str(counts["files"]) in lines[0]


def test_annotations_inside_the_audio_warn_nothing(corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="proxyseg.corpora.harmonise"):
        run(corpus, tmp_path)
    assert caplog.text == "" and _outside(tmp_path)["files"] == []


def test_rttm_in_milliseconds_is_an_error(corpus, tmp_path):
    (tmp_path / "c/train.rttm").write_text(rttm("a", 0, 1000, "speech") + rttm("b", 0, 400, "music")
                                           + rttm("b", 500, 1000, "music"))
    with pytest.raises(InputError, match=r"RTTM times past the end of the audio: are they in milliseconds\?") as err:
        run(corpus, tmp_path)
    assert err.value.path.endswith("train.rttm") and err.value.line == 1
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 9. a file in two splits


def test_file_in_two_splits_is_an_error(corpus, tmp_path):
    (tmp_path / "c/test.lst").write_text("c\nb\n")
    (tmp_path / "c/test.rttm").write_text(rttm("c", 0, 1, "speech") + rttm("b", 0, 1, "speech"))
    with pytest.raises(InputError, match=r"corpus 'c': 'b' is in split 'train' \(.*train.lst:2\) and in split "
                                         r"'test' \(.*test.lst:2\).*`shared_files: true`"):
        check_corpus("c", corpus)
    assert set(check_corpus("c", corpus, shared_files_ok=True)) == {"train", "test"}
    assert set(check_corpus("c", {**corpus, "shared_files": True})) == {"train", "test"}


# ------------------------------------------------------------------ 14. __all__


def test_every_name_in_all_exists():
    missing = []
    for info in pkgutil.walk_packages(proxyseg.__path__, "proxyseg."):
        module = importlib.import_module(info.name)
        missing += [f"{info.name}.{n}" for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert missing == []
    namespace = {}
    exec("from proxyseg.corpora.adapters import *", namespace)
    assert "resolve_split" in namespace
