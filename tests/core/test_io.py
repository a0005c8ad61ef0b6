import numpy as np
import pytest
import soundfile as sf

from proxyseg.core.atomic import atomic_dir, atomic_open
from proxyseg.cli import main
from proxyseg.core.audio import load_audio
from proxyseg.core.rttm import read_list, read_uem


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_open(target) as f:
        f.write("whole")
    assert target.read_text() == "whole" and len(list(tmp_path.iterdir())) == 1


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "corpus"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    assert [p.name for p in target.iterdir()] == ["a"]


def test_load_audio_downmixes_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    sf.write(tmp_path / "s.wav", np.stack([tone, tone], axis=1), 44100)
    x = load_audio(tmp_path / "s.wav")
    assert x.dtype == np.float32 and x.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins for 1 s at 16 kHz


def test_uem_and_list_errors_name_the_line(tmp_path):
    (tmp_path / "u.uem").write_text("a 1 0 10\nb 1 5 2\n")
    with pytest.raises(Exception, match=r"u.uem:2: bad region"):
        read_uem(tmp_path / "u.uem")
    (tmp_path / "l.lst").write_text("a\nb c\n")
    with pytest.raises(Exception, match=r"l.lst:2: expected one URI"):
        read_list(tmp_path / "l.lst")


def test_cli_reports_input_errors_without_traceback(tmp_path, capsys):
    spec = ('{"adapter": "class_rttm", "audio": "%s/{uri}.wav", "label_map": {}, '
            '"splits": {"train": {"list": "%s/nope.lst", "rttm": "x.rttm"}}}' % (tmp_path, tmp_path))
    code = main(["harmonise", "--corpus", "c", "--split", "train", "--out-dir", str(tmp_path / "o"),
                 "--settings", spec])
    err = capsys.readouterr().err
    assert code == 2 and "nope.lst: list file not found" in err and "Traceback" not in err


def test_every_stage_has_help(capsys):
    for stage in ["demo-corpus", "demo-wavlm", "harmonise", "class-hours", "extract-features",
                  "train-teacher", "dump-teacher"]:
        with pytest.raises(SystemExit) as e:
            main([stage, "--help"])
        assert e.value.code == 0
        assert "usage: proxyseg " + stage in capsys.readouterr().out


def test_class_hours_table_has_a_row_per_split_that_exists(tmp_path):
    """A corpus without a test split (unlabelled audio) gets no test row, and n/a marks unannotated classes."""
    import pandas as pd

    from proxyseg.core.tables import class_hours_table

    rows = []
    for corpus, splits, annotated in (("ami", ("train", "test"), True), ("prompts", ("train",), False)):
        for split in splits:
            path = tmp_path / f"{corpus}_{split}.tsv"
            pd.DataFrame([{"corpus": corpus, "split": split, "class": c, "annotated": annotated,
                           "hours": 0.5 if annotated else float("nan"), "scored_hours": 1.0, "files": 2}
                          for c in ("speech", "overlap")]).to_csv(path, sep="\t", index=False)
            rows.append(str(path))
    wide = class_hours_table(rows, tmp_path / "hours.tsv", tmp_path / "hours.md")
    assert list(zip(wide["corpus"], wide["split"])) == [("ami", "train"), ("ami", "test"), ("prompts", "train")]
    table = (tmp_path / "hours.md").read_text().split("\n\n", 1)[1]
    assert " nan " not in table and table.count("n/a") == 2
