"""`proxyseg segment` on hostile or broken inputs: file names that RTTM, HTML or paths cannot hold, bad files
in a batch, and an output folder inside the input folder."""

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from proxyseg.cli import main
from proxyseg.core.errors import InputError
from proxyseg.core.rttm import read_rttm
from proxyseg.proxy.model import Proxy
from proxyseg.segmenter.export import export_model
from proxyseg.segmenter.run import collect_audio, parse_thresholds, segment_files


def _export(root, seed=0):
    """A spectrogram-input model folder (random proxy drawn with ``seed``): seconds to build, no WavLM."""
    W = np.random.default_rng(0).random((257, 6)).astype(np.float32)
    W /= np.linalg.norm(W, axis=0, keepdims=True)
    np.savez(root / "dictionary.npz", W=W)
    torch.manual_seed(seed)
    proxy = Proxy(257, torch.from_numpy(W), "fixed", blocks=1, repeats=1)
    hp = {**proxy.hparams, "crop_frames": 40, "input": "spectrogram", "dictionary": "fixed"}
    torch.save({"state_dict": proxy.state_dict(), "hparams": hp}, root / "proxy.pt")
    with h5py.File(root / "spec.h5", "w") as h5:
        h5.attrs.update(n_fft=512, win_length=400)
    # the teacher, feature cache and WavLM are not read for spectrogram input
    export_model(root / "proxy.pt", root / "proxy.pt", root / "dictionary.npz", root / "spec.h5", root / "spec.h5",
                 "none", root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("model"))


def _tone(path, seconds=1.0, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.02 * np.random.default_rng(seed).normal(size=t.shape)
    sf.write(str(path), x.astype(np.float32), 16000, format=path.suffix[1:].upper())
    return path


def _run(model, inputs, out, report=False, **kw):
    return segment_files(model, inputs, out, thresholds=parse_thresholds(["0"]), device="cpu", report=report,
                         report_settings={"explain_audio": 1, "explain_seconds": 0.5, "tau": 0.0}, **kw)


# ------------------------------------------------------------------------------------- 7: URIs and RTTM

#: a name that, unsanitised, makes segments.rttm a valid RTTM with a forged URI (the rest is a comment)
FORGED = "u\t1\t0\t1\t<NA>\t<NA>\tspeech\t<NA>\t<NA>\nSPEAKER\tforged\t1\t0\t9\t<NA>\t<NA>\tspeech\t<NA>\t<NA>\n;;"


@pytest.mark.parametrize("stem,uri", [("a\tb 1 2 SPEAKER x", "a_b_1_2_SPEAKER_x"),
                                      (FORGED, "u_1_0_1_<NA>_<NA>_speech_<NA>_<NA>_"
                                               "SPEAKER_forged_1_0_9_<NA>_<NA>_speech_<NA>_<NA>_;;"),
                                      ("c\u2028d\x1fe\u00a0f\\g", "c_d_e_f_g")])
def test_file_name_cannot_forge_rttm_lines(model, tmp_path, stem, uri, caplog):
    audio = _tone(tmp_path / "in" / f"{stem}.wav")
    _tone(tmp_path / "in" / "plain.wav", seed=1)
    with caplog.at_level(logging.INFO, logger="proxyseg.segment"):
        done = _run(model, [tmp_path / "in"], tmp_path / "out")
    rttm = read_rttm(tmp_path / "out" / "segments.rttm")
    assert set(rttm) == {uri, "plain"}  # no URI forged by the file name
    assert sorted(d["uri"] for d in done) == sorted([uri, "plain"])
    assert rttm[uri] and {s.label for s in rttm[uri]} <= {"speech", "noise", "music", "overlap"}
    per_file = read_rttm(tmp_path / "out" / "rttm" / f"{uri}.rttm")
    assert [(s.start, s.end, s.label) for s in per_file[uri]] == [(s.start, s.end, s.label) for s in rttm[uri]]
    # every file and its URI in uris.tsv (the odd name quoted), a log line for the renamed one
    table = pd.read_csv(tmp_path / "out" / "uris.tsv", sep="\t", dtype=str)
    assert list(table.columns) == ["file", "uri"]
    assert dict(zip(table.uri, table.file)) == {uri: str(audio), "plain": str(tmp_path / "in" / "plain.wav")}
    assert any(repr(str(audio)) in m and uri in m for m in caplog.messages)


def test_names_mapping_to_one_uri_are_made_unique(model, tmp_path, caplog):
    d = tmp_path / "in"
    for i, name in enumerate(["a b.wav", "a_b.wav", "a\tb.wav", "a_b_2.wav", "sub/a_b.wav", "A_B.flac"]):
        _tone(d / name, seed=i)
    with caplog.at_level(logging.INFO, logger="proxyseg.segment"):
        found = collect_audio([d])
    uris = [u for u, _ in found]
    assert len(set(u.casefold() for u in uris)) == len(uris) == 6
    assert "a_b_2" in uris and dict(found)["a_b_2"] == d / "a_b_2.wav"  # a name's own URI is kept
    assert sum("same URI" in m for m in caplog.messages) == 4
    assert collect_audio([d]) == found  # the same names give the same URIs


@pytest.mark.parametrize("recorded", [True, False])
def test_stored_probabilities_of_another_file_are_not_reused(model, tmp_path, recorded):
    """URIs made unique depend on the other names: a file that uris.tsv records keeps its URI, and without it
    (``recorded`` False) ``probs/<uri>.h5`` is still reused only for the same file."""
    d = tmp_path / "in"
    _tone(d / "one.wav", seconds=1.0)
    first = _run(model, [d], tmp_path / "out")
    if not recorded:
        (tmp_path / "out" / "uris.tsv").unlink()
    _tone(d / "a" / "one.wav", seconds=2.0, seed=3)  # sorted first: "one" without uris.tsv, else "one_2"
    second = {r["uri"]: r for r in _run(model, [d], tmp_path / "out")}
    old, new = ("one", "one_2") if recorded else ("one_2", "one")
    assert first[0]["uri"] == "one" and first[0]["duration"] == second[old]["duration"] < 1.1
    assert second[new]["duration"] > 1.9 and second[new]["audio"] == str(d / "a" / "one.wav")


def _probs(out, uri="rec"):
    with h5py.File(out / "probs" / f"{uri}.h5") as h5:
        return h5["probs"][()]


def _report_data(out, uri="rec"):
    page = (out / "report" / f"{uri}.html").read_text()
    return json.loads(page.split('id="report-data">')[1].split("</script>")[0])


def _other_model(model, tmp_path):
    (tmp_path / "model_b").mkdir()
    return _export(tmp_path / "model_b", seed=1)


def _other_aggregate(model, tmp_path):
    copy = shutil.copytree(model, tmp_path / "model_c")
    settings = json.loads((copy / "settings.json").read_text())
    settings["aggregate"] = "logits_mean" if settings["aggregate"] != "logits_mean" else "prob_hamming"
    (copy / "settings.json").write_text(json.dumps(settings))
    return copy


def _replaced_same_size_and_time(audio):
    st = audio.stat()
    _tone(audio, seed=5)  # same length, other bytes
    os.utime(audio, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert audio.stat().st_size == st.st_size


def _nan_probs(out):
    with h5py.File(out / "probs" / "rec.h5", "r+") as h5:  # what a crashed run may have left
        h5["probs"][...] = np.nan


#: (what changes between two runs into one --out, what the log says) -> the second run recomputes
REUSE_CASES = {
    "another model": (lambda m, a, o, t: (_other_model(m, t), None), "another model folder"),
    "another aggregation": (lambda m, a, o, t: (_other_aggregate(m, t), None), "another model folder"),
    "recording replaced, same size and time": (lambda m, a, o, t: (m, _replaced_same_size_and_time(a)),
                                               "content changed"),
    "recording replaced, other length": (lambda m, a, o, t: (m, _tone(a, seconds=1.5, seed=5)), "file changed"),
    "NaN probabilities": (lambda m, a, o, t: (m, _nan_probs(o)), "NaN"),
}


@pytest.mark.parametrize("case", REUSE_CASES)
def test_stored_probabilities_are_reused_only_for_the_same_model_and_audio(model, tmp_path, case, caplog):
    """A second run into one --out recomputes a file's probabilities when the model, its settings or the
    recording changed, or when the stored ones are not numbers: they are those of a fresh run."""
    change, why = REUSE_CASES[case]
    audio = _tone(tmp_path / "in" / "rec.wav")
    _run(model, [audio], tmp_path / "out")
    first = _probs(tmp_path / "out")
    model2, _ = change(model, audio, tmp_path / "out", tmp_path)
    with caplog.at_level(logging.INFO, logger="proxyseg.segment"):
        _run(model2, [audio], tmp_path / "out", report=True)
    _run(model2, [audio], tmp_path / "fresh", report=True)
    fresh = _probs(tmp_path / "fresh")
    assert case == "NaN probabilities" or first.shape != fresh.shape or not np.allclose(first, fresh)
    np.testing.assert_array_equal(_probs(tmp_path / "out"), fresh)
    assert any("recomputed" in m and why in m for m in caplog.messages), caplog.messages
    # the report and decisions show the probabilities of the model it names
    assert _report_data(tmp_path / "out")["probs"] == _report_data(tmp_path / "fresh")["probs"]
    assert read_rttm(tmp_path / "out" / "segments.rttm") == read_rttm(tmp_path / "fresh" / "segments.rttm")


def test_unchanged_stored_probabilities_are_reused(model, tmp_path, caplog):
    audio = _tone(tmp_path / "in" / "rec.wav")
    _run(model, [audio], tmp_path / "out")
    before = (tmp_path / "out" / "probs" / "rec.h5").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="proxyseg.segment"):
        _run(model, [audio], tmp_path / "out")
    assert (tmp_path / "out" / "probs" / "rec.h5").stat().st_mtime_ns == before
    assert any("reused" in m for m in caplog.messages)
    with h5py.File(tmp_path / "out" / "probs" / "rec.h5") as h5:
        assert h5.attrs["audio_size"] == audio.stat().st_size and len(h5.attrs["model_sha256"]) == 64


@pytest.mark.parametrize("teacher_classes,nan_columns,finite", [
    (None, [], True), (None, [3], False), (["speech"], [1, 2, 3], True), (["speech"], [0], False),
    (["speech", "overlap"], [1, 2], True), (["speech", "overlap"], [1, 3], False)])
def test_nan_is_allowed_only_where_the_black_box_knows_no_class(tmp_path, teacher_classes, nan_columns, finite):
    from proxyseg.segmenter.run import _finite

    with h5py.File(tmp_path / "p.h5", "w") as h5:
        probs = np.full((5, 4), 0.5, np.float32)
        h5["probs"] = probs.copy() if teacher_classes else np.where(np.isin(np.arange(4), nan_columns), np.nan, probs)
        if teacher_classes:
            probs[:, nan_columns] = np.nan
            h5["teacher_probs"] = probs
            h5.attrs["teacher_classes"] = json.dumps(teacher_classes)
        assert _finite(h5) is finite


#: names near the 255-byte limit of a file name (with ".wav"): ASCII, 2- and 3-byte UTF-8, a 4-byte emoji tail
LONG = {"ascii": "a" * 240, "accents": "é" * 120, "cjk": "日本語" * 26 + "x", "emoji": "b" * 99 + "😀" * 30}


@pytest.mark.parametrize("kind", LONG)
def test_long_names_get_short_uris_and_do_not_stop_the_batch(model, tmp_path, kind):
    """A name of ~240 bytes made ``probs/.<uri>.h5.tmp-<pid>`` too long for the file system and stopped the batch:
    it is cut at a character boundary and ends with a hash of the whole name, so names alike stay apart."""
    d = tmp_path / "in"
    name = LONG[kind]
    long1, long2 = _tone(d / f"{name}.wav"), _tone(d / f"{name[:-1]}Z.wav", seed=1)
    _tone(d / "plain.wav", seed=2)
    done = {r["audio"]: r["uri"] for r in _run(model, [d], tmp_path / "out", report=True)}
    uris = [done[str(long1)], done[str(long2)]]
    assert done[str(d / "plain.wav")] == "plain" and uris[0] != uris[1]
    for uri in uris:
        assert len(uri.encode()) <= 100 and name.startswith(uri[:-9]) and len(uri[:-9]) > 20
        assert (tmp_path / "out" / "report" / f"{uri}.html").is_file()
    table = pd.read_csv(tmp_path / "out" / "uris.tsv", sep="\t", dtype=str)
    assert dict(zip(table.file, table.uri)) == {a: u for a, u in done.items()}
    assert set(read_rttm(tmp_path / "out" / "segments.rttm")) == set(done.values())


def test_an_output_that_cannot_be_written_fails_its_file_only(model, tmp_path, monkeypatch):
    """An OSError tied to one file (here its ``probs/<uri>.h5`` is a folder) fails that file; the others are
    segmented. A full disk stops the run: every later file would fail alike."""
    import errno

    from proxyseg.segmenter.run import Segmenter

    d = tmp_path / "in"
    for i, name in enumerate(["a", "blocked", "c"]):
        _tone(d / f"{name}.wav", seed=i)
    (tmp_path / "out" / "probs" / "blocked.h5" / "x").mkdir(parents=True)
    with pytest.raises(InputError, match="1 of 3 file") as err:
        _run(model, [d], tmp_path / "out")
    assert f"{d / 'blocked.wav'}: not segmented: [Errno 21] Is a directory" in str(err.value)
    assert set(read_rttm(tmp_path / "out" / "segments.rttm")) == {"a", "c"}
    process = Segmenter.process

    def full(self, audio, *args):
        if Path(audio).stem == "c":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return process(self, audio, *args)

    monkeypatch.setattr(Segmenter, "process", full)
    with pytest.raises(OSError, match="No space left"):
        _run(model, [d], tmp_path / "out2")


# ------------------------------------------------------------------------- runs sharing one output folder


def _index_uris(out):
    import re

    return sorted(unquote(u) for u in re.findall(r'<a href="([^"]+)\.html">', (out / "report" / "index.html").read_text()))


def _listed(out):
    """URIs of the index, uris.tsv and segments.rttm (each sorted)."""
    table = pd.read_csv(out / "uris.tsv", sep="\t", dtype=str)
    return _index_uris(out), sorted(table.uri), sorted(read_rttm(out / "segments.rttm"))


def test_runs_into_one_out_add_up(model, tmp_path):
    """A second run into one --out lists the first run's files too; its file with the same name gets a URI of
    its own, so the first's outputs stay; a file whose outputs were removed is no longer listed."""
    out = tmp_path / "out"
    first = _tone(tmp_path / "x" / "rec.wav")
    _run(model, [first], out, report=True)
    _tone(tmp_path / "y" / "rec.wav", seed=1)
    _tone(tmp_path / "y" / "other.wav", seed=2)
    second = _run(model, [tmp_path / "y"], out, report=True)
    assert {r["uri"]: r["audio"] for r in second} == {"rec_2": str(tmp_path / "y" / "rec.wav"),
                                                      "other": str(tmp_path / "y" / "other.wav")}
    assert _listed(out) == (["other", "rec", "rec_2"],) * 3
    table = pd.read_csv(out / "uris.tsv", sep="\t", dtype=str)
    assert dict(zip(table.uri, table.file))["rec"] == str(first)
    with h5py.File(out / "probs" / "rec.h5") as h5:
        assert h5.attrs["audio"] == str(first.resolve())
    # the first file again: its own URI, its probabilities reused
    before = (out / "probs" / "rec.h5").stat().st_mtime_ns
    assert [r["uri"] for r in _run(model, [first], out, report=True)] == ["rec"]
    assert (out / "probs" / "rec.h5").stat().st_mtime_ns == before
    assert _listed(out) == (["other", "rec", "rec_2"],) * 3
    (out / "probs" / "other.h5").unlink()
    _run(model, [first], out, report=True)
    assert _listed(out) == (["rec", "rec_2"],) * 3


def _cli(model, inputs, out, log):
    """``proxyseg segment`` in a process of its own; its stderr goes to ``log``."""
    import sys

    import proxyseg

    env = {**os.environ, "PYTHONPATH": str(Path(proxyseg.__file__).parents[1])}
    code = "import sys; from proxyseg.cli import main; sys.exit(main(sys.argv[1:]))"
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, "-c", code, "segment", *map(str, inputs), "--model", str(model),
                                 "--out", str(out), "--device", "cpu", "--threshold", "0", "--explain-audio", "1",
                                 "--explain-seconds", "0.5"], stderr=err, env=env)


@pytest.mark.slow  # two processes that import torch: 10 to 30 s
def test_concurrent_runs_into_one_out_take_turns(model, tmp_path):
    """Two ``proxyseg segment`` processes into one --out: each waits for the lock (held here until both wait),
    says so once, then both files are in the index, uris.tsv and segments.rttm."""
    import fcntl
    import time

    out = tmp_path / "out"
    out.mkdir()
    for i, name in enumerate("ab"):
        _tone(tmp_path / name / f"{name}.wav", seconds=3.0, seed=i)
    logs = [tmp_path / f"{name}.log" for name in "ab"]
    message = f"waiting for another proxyseg segment run writing to {out}"
    with open(out / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = [_cli(model, [tmp_path / name], out, log) for name, log in zip("ab", logs)]
        deadline = time.monotonic() + 120
        while (time.monotonic() < deadline and all(r.poll() is None for r in runs)
               and not all(message in log.read_text() for log in logs)):
            time.sleep(0.2)
    try:
        codes = [r.wait(timeout=300) for r in runs]
    finally:
        for r in runs:
            r.kill()
    text = [log.read_text() for log in logs]
    assert codes == [0, 0], text
    assert [t.count(message) for t in text] == [1, 1]
    assert _listed(out) == (["a", "b"],) * 3


# --------------------------------------------------------------------------------- 8: HTML and paths

NASTY = "<!--<script>x\"'&>"


def test_report_escapes_file_names(model, tmp_path):
    _tone(tmp_path / "in" / f"{NASTY}.wav")
    _run(model, [tmp_path / "in"], tmp_path / "out", report=True)
    report = tmp_path / "out" / "report"
    (page,) = [p for p in report.glob("*.html") if p.name != "index.html"]
    text = page.read_text()
    payload = text.split('<script type="application/json" id="report-data">')[1].split("</script>")[0]
    assert not set("<>&\u2028\u2029") & set(payload)
    data = json.loads(payload)
    assert data["uri"] == NASTY
    assert text.count("<script") == 2 and "<!--" not in text  # the name cannot open or close a script
    assert "&lt;!--&lt;script&gt;x&quot;&#x27;&amp;&gt;" in text
    index = (report / "index.html").read_text()
    assert index.count("<script") == 1 and "<!--" not in index
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser:  # the page runs: its script is not swallowed (tests/segmenter/test_segmenter.py installs chromium)
        run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                              "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
        assert 'data-ready="yes"' in run.stdout, run.stderr[-2000:]


def test_dot_names_stay_inside_their_folders(model, tmp_path):
    for i, name in enumerate(["..wav", "...wav", ".hidden.wav", "ok.wav"]):
        _tone(tmp_path / "in" / name, seed=i)
    out = tmp_path / "out"
    done = _run(model, [tmp_path / "in"], out, report=True)
    uris = {d["uri"] for d in done}
    assert uris == {"_", "__", "_hidden", "ok"}
    assert {p.name for p in out.iterdir()} == {"probs", "rttm", "report", "segments.rttm", "uris.tsv", ".lock"}
    assert {p.name for p in (out / "report").iterdir()} == {"index.html"} | uris | {f"{u}.html" for u in uris}
    assert {p.name for p in (out / "probs").iterdir()} == {f"{u}.h5" for u in uris}
    assert sorted(p.name for p in (out / "report" / "__").iterdir() if p.suffix == ".png") == ["spectrogram.png"]


def test_derived_paths_are_plain_children():
    from proxyseg.segmenter.report import inside

    out = Path("out")
    for bad in ("", ".", "..", ".x", "a/b", "../x"):
        with pytest.raises(ValueError):
            inside(out, bad)
    assert inside(out, "x.h5") == out / "x.h5"


@pytest.mark.parametrize("stem", ["", ".", "..", "...", "/", "a/../..", "\x00", "." * 300, "日" * 200,
                                  "\udcff" * 300])
def test_safe_uri_is_one_plain_path_component(stem):
    from proxyseg.segmenter.run import safe_uri

    uri = safe_uri(stem)
    assert uri and not uri.startswith(".") and "/" not in uri and "\\" not in uri and uri.isprintable()
    assert len(uri.encode()) <= 100


# ------------------------------------------------------------------------------------ 9: bad files


def test_bad_files_are_skipped_and_reported(model, tmp_path, capsys):
    d = tmp_path / "in"
    _tone(d / "good1.wav")
    (d / "empty.wav").write_bytes(b"")
    (d / "garbage.wav").write_bytes(b"RIFF not really a wave file" * 10)
    sf.write(str(d / "short.wav"), np.zeros(100, np.float32), 16000)  # < one frame
    _tone(d / "zz_good2.wav", seed=1)
    out = tmp_path / "out"
    args = ["segment", str(d), "--model", str(model), "--out", str(out), "--device", "cpu", "--threshold", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "3 of 5 file(s) not segmented" in err
    for name, reason in (("empty.wav", "cannot read audio"), ("garbage.wav", "cannot read audio"),
                         ("short.wav", "shorter than one frame")):
        assert f"{d / name}: {reason}" in err
    assert set(read_rttm(out / "segments.rttm")) == {"good1", "zz_good2"}
    assert {p.name for p in (out / "probs").iterdir()} == {"good1.h5", "zz_good2.h5"}
    assert (out / "report" / "index.html").read_text().count('.html">') == 2
    assert not (out / ".tmp").exists()
    # a bad file given alone: its own error, exit 2, no temporary folder
    assert main(["segment", str(d / "short.wav")] + args[2:]) == 2
    assert capsys.readouterr().err.strip() == f"proxyseg: error: {d / 'short.wav'}: shorter than one frame " \
                                               "(400 samples at 16 kHz): nothing to segment"
    assert not (out / ".tmp").exists()



@pytest.mark.parametrize("sr", [16000, 22050])
def test_nan_samples_skip_only_their_file(model, tmp_path, capsys, sr):
    d = tmp_path / "in"
    _tone(d / "good.wav")
    x = np.zeros(int(2.5 * sr), np.float32)
    x[int(2.0 * sr)] = np.nan  # opening the file finds nothing: reading its samples does
    sf.write(str(d / "nan.wav"), x, sr, subtype="FLOAT")
    out = tmp_path / "out"
    args = ["segment", str(d), "--model", str(model), "--out", str(out), "--device", "cpu", "--threshold", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 of 2 file(s) not segmented" in err and "Traceback" not in err
    assert f"{d / 'nan.wav'}: sample at 2.000 s is NaN or infinite" in err
    assert set(read_rttm(out / "segments.rttm")) == {"good"}
    assert {p.name for p in (out / "probs").iterdir()} == {"good.h5"}
    assert not (out / ".tmp").exists()

# ------------------------------------------------------------------------------ 10: --out inside input


@pytest.mark.parametrize("where", ["inside", "same", "parent"])
def test_outputs_are_never_read_as_inputs(model, tmp_path, where):
    d = tmp_path / "recs"
    _tone(d / "a.wav")
    _tone(d / "b" / "b.wav", seed=1)
    out = {"inside": d / "out", "same": d, "parent": tmp_path}[where]
    first = _run(model, [d], out, report=True)
    assert list((out / "report").rglob("*.wav")), "the report wrote explanation WAVs"
    second = _run(model, [d], out, report=True)
    assert [r["uri"] for r in first] == [r["uri"] for r in second] == ["a", "b"]
    assert {p.name for p in (out / "probs").iterdir()} == {"a.h5", "b.h5"}
    wav = next((out / "report").rglob("*.wav"))
    with pytest.raises(InputError, match="output folder"):
        _run(model, [wav], out)


def test_nan_samples_fail_their_file_and_store_nothing(model, tmp_path):
    """Probabilities that are not numbers are never stored (nor reused): the file is reported as failed."""
    d = tmp_path / "in"
    _tone(d / "good.wav")
    x = np.full(16000, 0.1, np.float32)
    x[4000:5000] = np.nan
    sf.write(str(d / "nan.wav"), x, 16000, subtype="FLOAT")
    with pytest.raises(InputError, match="1 of 2 file") as err:
        _run(model, [d], tmp_path / "out")
    assert str(d / "nan.wav") in str(err.value)
    assert {p.name for p in (tmp_path / "out" / "probs").iterdir()} == {"good.h5"}
