"""`proxyseg segment`: streaming pieces equal their whole-file counterparts, the exported model folder gives
the workflow's probabilities on the same audio, and the outputs (RTTM, HDF5, report) are complete."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from proxyseg.cli import main
from proxyseg.core.errors import InputError
from proxyseg.features.demo_wavlm import build_untrained_wavlm
from proxyseg.features.wavlm import extract_features
from proxyseg.core.frames import CLASSES, num_frames
from proxyseg.core.audio import load_audio
from proxyseg.core.rttm import read_rttm
from proxyseg.proxy.infer import infer_proxy
from proxyseg.proxy.model import Proxy
from proxyseg.segmenter.export import export_model, load_settings
from proxyseg.segmenter.run import collect_audio, parse_thresholds, segment_files
from proxyseg.segmenter.stream import AudioReader, spectrogram_range, stream_window_average
from proxyseg.dictionary.spectrogram import block_powers, log_power_spectrogram
from proxyseg.dictionary.spectrogram_cache import cache_spectrograms
from proxyseg.teacher.dump import dump_teacher, sliding_window_average
from proxyseg.teacher.model import Teacher


def _conv_forward(channels=3, seed=0):
    torch.manual_seed(seed)
    conv = torch.nn.Conv1d(channels, 4, 5, padding=2)
    conv2 = torch.nn.Conv1d(channels, 6, 3, padding=1)
    return lambda w: (conv(w), conv2(w))


@pytest.mark.parametrize("n", [7, 50, 51, 333, 1000])
@pytest.mark.parametrize("batch", [1, 3, 16])
@pytest.mark.parametrize("aggregate", ["prob_hamming", "logits_mean"])
def test_stream_window_average_equals_whole_file(n, batch, aggregate):
    x = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
    fwd = _conv_forward()
    with torch.no_grad():
        ref_a, ref_b, ref_n = sliding_window_average(fwd, x, n, 50, 5, batch, aggregate=aggregate)
    got_a, got_b = np.full_like(ref_a, np.nan), np.full_like(ref_b, np.nan)
    spans, written = [], []

    def read(a, b):
        spans.append(b - a)
        return x[a:b]

    def write(a, b, outs):
        written.append((a, b))
        got_a[a:b], got_b[a:b] = outs

    windows = stream_window_average(fwd, read, n, 50, 5, write, batch, aggregate=aggregate)
    assert windows == ref_n
    np.testing.assert_allclose(got_a, ref_a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_b, ref_b, rtol=1e-5, atol=1e-6)
    # frames come out in order, each once, and memory holds one batch span, not the file
    assert written[0][0] == 0 and written[-1][1] == n
    assert all(b0 == a1 for (_, b0), (a1, _) in zip(written, written[1:]))
    assert max(spans) <= (batch - 1) * 5 + 50


def _write_tone(path, seconds, sr, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    x = x + 0.05 * rng.normal(size=t.shape) * (t > seconds / 2)
    data = np.stack([x, 0.5 * x], axis=1) if channels == 2 else x
    sf.write(str(path), data.astype(np.float32), sr)


@pytest.mark.parametrize("sr,channels", [(16000, 1), (22050, 2), (8000, 1)])
def test_audio_reader_matches_load_audio(tmp_path, sr, channels):
    path = tmp_path / "a.wav"
    _write_tone(path, 3.0, sr, channels)
    whole = load_audio(path)
    reader = AudioReader(path)
    assert reader.num_samples == len(whole)
    for a, b in [(0, 4000), (12345, 23456), (len(whole) - 1000, len(whole) + 500), (-300, 200)]:
        got = reader.read(a, b)
        ref = np.zeros(b - a, dtype=np.float32)
        lo, hi = max(a, 0), min(b, len(whole))
        ref[lo - a:hi - a] = whole[lo:hi]
        tol = 1e-6 if sr == 16000 else 2e-3
        np.testing.assert_allclose(got, ref, atol=tol)


@pytest.mark.parametrize("n_fft,win", [(512, 400), (1024, 1024)])
def test_spectrogram_range_matches_whole_file(tmp_path, n_fft, win):
    path = tmp_path / "a.wav"
    _write_tone(path, 2.0, 16000)
    reader = AudioReader(path)
    whole = log_power_spectrogram(load_audio(path), n_fft=n_fft, win_length=win).T.numpy()
    for a, b in [(0, 10), (17, 60), (whole.shape[0] - 5, whole.shape[0])]:
        np.testing.assert_allclose(spectrogram_range(reader.read, a, b, n_fft, win), whole[a:b], atol=1e-4)


def test_parse_thresholds_and_collect(tmp_path):
    t = parse_thresholds(["0.4", "music=0.7"])
    assert t == {"speech": 0.4, "noise": 0.4, "music": 0.7, "overlap": 0.4}
    for bad in (["loud=0.3"], ["x"], ["1.5"]):
        with pytest.raises(InputError):
            parse_thresholds(bad)
    (tmp_path / "d" / "e").mkdir(parents=True)
    _write_tone(tmp_path / "d" / "one.wav", 1.0, 16000)
    _write_tone(tmp_path / "d" / "e" / "two.flac", 1.0, 16000)
    (tmp_path / "d" / "notes.txt").write_text("not audio")
    assert [u for u, _ in collect_audio([tmp_path / "d"])] == ["one", "two"]
    # a second "one" gets a URI of its own (tests/segmenter/test_segment_input.py has more)
    _write_tone(tmp_path / "d" / "e" / "one.wav", 1.0, 16000)
    assert collect_audio([tmp_path / "d"]) == [("one", tmp_path / "d" / "e" / "one.wav"),
                                               ("one_2", tmp_path / "d" / "one.wav"),
                                               ("two", tmp_path / "d" / "e" / "two.flac")]
    with pytest.raises(InputError):
        collect_audio([tmp_path / "missing.wav"])


# ---------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Tiny stand-ins of every trained artifact, run through the workflow's own stages, then exported."""
    root = tmp_path_factory.mktemp("segment")
    wavlm = root / "wavlm"
    build_untrained_wavlm(wavlm, seed=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(32,) * 7)
    audio = root / "audio"
    audio.mkdir()
    rows = []
    for uri, seconds, sr, ch in (("long", 7.3, 16000, 1), ("other_rate", 4.1, 22050, 2)):
        path = audio / f"{uri}.wav"
        _write_tone(path, seconds, sr, ch, seed=len(uri))
        n = len(load_audio(path))
        rows.append({"uri": uri, "audio": str(path), "duration": seconds, "sample_rate": sr, "channels": ch,
                     "num_frames": num_frames(n)})
    manifest = root / "manifest.tsv"
    pd.DataFrame(rows).to_csv(manifest, sep="\t", index=False)
    feats, spec, dump = root / "features.h5", root / "spec.h5", root / "dump.h5"
    extract_features(manifest, feats, model=str(wavlm), chunk_seconds=2.0, overlap_seconds=0.5, device="cpu")
    cache_spectrograms(manifest, spec)
    torch.manual_seed(0)
    teacher = Teacher(3, 32, blocks=2, repeats=1)
    torch.save({"state_dict": teacher.state_dict(), "hparams": {**teacher.hparams, "crop_frames": 50}},
               root / "teacher.pt")
    dump_teacher(root / "teacher.pt", feats, dump, device="cpu")
    W = np.random.default_rng(0).random((257, 8)).astype(np.float32)
    W /= np.linalg.norm(W, axis=0, keepdims=True)
    np.savez(root / "dictionary.npz", W=W)
    out = {"root": root, "audio": audio, "wavlm": wavlm, "spec": spec, "feats": feats}
    for inp, channels in (("wavlm", 32), ("spectrogram", 257)):
        torch.manual_seed(1)
        proxy = Proxy(channels, torch.from_numpy(W), "fixed", blocks=2, repeats=1)
        hp = {**proxy.hparams, "crop_frames": 40, "input": inp, "dictionary": "fixed"}
        torch.save({"state_dict": proxy.state_dict(), "hparams": hp}, root / f"proxy_{inp}.pt")
        infer_proxy(root / f"proxy_{inp}.pt", dump, spec, root / f"infer_{inp}.h5", device="cpu")
        export_model(root / f"proxy_{inp}.pt", root / "teacher.pt", root / "dictionary.npz", feats, spec,
                     str(wavlm), root / f"model_{inp}")
    return out


@pytest.mark.parametrize("inp", ["wavlm", "spectrogram"])
def test_segment_reproduces_workflow_probabilities(pipeline, inp, tmp_path):
    """The model folder applied to raw audio gives the probabilities the workflow's stages give."""
    root = pipeline["root"]
    settings = load_settings(root / f"model_{inp}")
    assert settings["input"] == inp and (("wavlm" in settings) == (inp == "wavlm"))
    if inp == "wavlm":
        assert settings["wavlm"]["copied"] and (root / f"model_{inp}" / "wavlm" / "config.json").is_file()
        assert settings["wavlm"]["layers"] == [0, 1, 2] and settings["wavlm"]["chunk_seconds"] == 2.0
    done = segment_files(root / f"model_{inp}", [pipeline["audio"]], tmp_path, device="cpu", batch_size=3,
                         report=False)
    assert [d["uri"] for d in done] == ["long", "other_rate"]
    with h5py.File(root / f"infer_{inp}.h5") as ref:
        for uri in ("long", "other_rate"):
            with h5py.File(tmp_path / "probs" / f"{uri}.h5") as got:
                assert got["probs"].shape == ref[uri]["probs"].shape
                assert got["H"].shape == ref[uri]["H"].shape
                tol = 2e-3 if uri == "long" else 5e-3  # WavLM batching, chunked resampling
                np.testing.assert_allclose(got["probs"][()], ref[uri]["probs"][()], atol=tol)
                assert got["X_preview"].shape[1] == 257
    rttm = read_rttm(tmp_path / "segments.rttm")
    assert set(rttm) <= {"long", "other_rate"}
    assert not list(tmp_path.glob(".tmp/*"))


def test_segment_brings_new_audio_to_the_level_the_proxy_was_trained_at(pipeline, tmp_path):
    """spectrogram.level_db: the model folder records it and segment scales each file as the cache did
    (its gain from the whole file, read in pieces), so the probabilities are the workflow's."""
    root = pipeline["root"]
    reader = AudioReader(pipeline["audio"] / "long.wav")
    np.testing.assert_array_equal(reader.block_powers(blocks_per_read=7), block_powers(load_audio(reader.path)))
    spec = tmp_path / "spec_level.h5"
    cache_spectrograms(root / "manifest.tsv", spec, level_db=-30.0)
    infer_proxy(root / "proxy_spectrogram.pt", root / "dump.h5", spec, tmp_path / "infer.h5", device="cpu")
    export_model(root / "proxy_spectrogram.pt", root / "teacher.pt", root / "dictionary.npz", None, spec, None,
                 tmp_path / "model")
    assert load_settings(tmp_path / "model")["spectrogram"]["level_db"] == -30.0
    assert load_settings(root / "model_spectrogram")["spectrogram"]["level_db"] is None
    segment_files(tmp_path / "model", [pipeline["audio"]], tmp_path / "out", device="cpu", report=False)
    with h5py.File(tmp_path / "infer.h5") as ref, h5py.File(spec) as cache, \
            h5py.File(root / "infer_spectrogram.h5") as raw:
        for uri in ("long", "other_rate"):
            with h5py.File(tmp_path / "out" / "probs" / f"{uri}.h5") as got:
                assert abs(got.attrs["gain"] - cache[uri].attrs["gain"]) < 1e-3 * cache[uri].attrs["gain"]
                np.testing.assert_allclose(got["probs"][()], ref[uri]["probs"][()], atol=5e-3)
            assert np.abs(ref[uri]["probs"][()] - raw[uri]["probs"][()]).max() > 0.01  # the level mattered


def test_segment_cli_report_and_resume(pipeline, tmp_path, capsys):
    root = pipeline["root"]
    args = ["segment", str(pipeline["audio"] / "long.wav"), "--model", str(root / "model_spectrogram"),
            "--out", str(tmp_path), "--threshold", "0", "--threshold", "overlap=1.01"]
    assert main(args) == 2  # 1.01 is not a probability
    args[-1] = "overlap=1"
    assert main(args + ["--device", "cpu", "--explain-audio", "1", "--explain-seconds", "2"]) == 0
    segs = read_rttm(tmp_path / "rttm" / "long.rttm")["long"]
    # threshold 0: every frame of speech, noise and music is active; overlap (threshold 1) is not
    assert sorted(s.label for s in segs) == ["music", "noise", "speech"]
    assert all(abs(s.start - 0.0025) < 1e-3 for s in segs)
    page = (tmp_path / "report" / "long.html").read_text()
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert len(data["segments"]) == 3 and len(data["probs"]) == len(CLASSES)
    audible = [s for s in data["segments"] if s["explanation"]]
    assert audible, "the longest segment of each class gets a listenable explanation"
    for s in audible:
        for key in ("explanation", "residual"):
            wav, sr = sf.read(tmp_path / "report" / s[key])
            assert sr == 16000 and abs(len(wav) / sr - s["audio_seconds"] - 0.005) < 0.01
    assert (tmp_path / "report" / "index.html").is_file()
    # a second run reuses the stored probabilities and rebuilds decisions with the new thresholds
    mtime = (tmp_path / "probs" / "long.h5").stat().st_mtime_ns
    assert main(args[:-4] + ["--threshold", "1", "--no-report"]) == 0
    assert (tmp_path / "probs" / "long.h5").stat().st_mtime_ns == mtime
    assert (tmp_path / "rttm" / "long.rttm").read_text() == ""


def test_segment_rejects_foreign_model_folder(tmp_path, pipeline):
    with pytest.raises(InputError, match="not a proxyseg model folder"):
        segment_files(tmp_path, [pipeline["audio"]], tmp_path / "out")


# ----------------------------------------------------------------------------------- headless browser

INSTRUMENT = """<script>(function(){
console.error = function(){ console.log('[console.error] ' + Array.from(arguments).join(' ')); };
window.addEventListener('error', function(ev){
  var t = ev.target;
  if (t && t !== window && (t.src || t.href)) { console.log('[resource-error] ' + (t.src || t.href)); }
}, true);
})();</script>"""


def _chromium():
    """Debian's chromium, installed with apt-get when missing (CI runs as root on a fresh machine)."""
    import os
    import shutil
    import subprocess

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("headless Chromium is not installed and cannot be: installing it needs root and apt-get "
                    "(Debian: apt-get install chromium)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "chromium"]):
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if cmd[1] == "install" and run.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip(f"apt-get could not install chromium (no package source reachable?): {run.stderr[-300:]}")


def _load(browser, page, tmp_path, fragment=""):
    """Open ``page`` (a copy instrumented to log console errors and failed loads) headless; (DOM, console)."""
    import re
    import subprocess

    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text().replace("<head>", "<head>" + INSTRUMENT, 1))
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--virtual-time-budget=5000",
                          "--dump-dom", probe.as_uri() + fragment], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    console = re.findall(r":CONSOLE[^\]]*\] \"(.*)\", source:", run.stderr)
    return run.stdout, console


@pytest.fixture(scope="module")
def report_dir(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    segment_files(pipeline["root"] / "model_wavlm", [pipeline["audio"]], out, thresholds=parse_thresholds(["0"]),
                  device="cpu", report_settings={"explain_audio": 2, "explain_seconds": 2.0})
    return out / "report"


@pytest.mark.browser
def test_report_in_headless_chromium(pipeline, report_dir, tmp_path):
    import re
    from urllib.parse import unquote

    browser = _chromium()
    dom, console = _load(browser, report_dir / "long.html", tmp_path, "#seg=0")
    assert any(m.startswith("proxyseg report ready") for m in console), console
    bad = [m for m in console if "Uncaught" in m or m.startswith("[console.error]") or m.startswith("[resource-error]")]
    assert not bad, bad
    assert 'data-ready="yes"' in dom
    for element in ('id="player"', 'id="spectrogram"', 'id="tracks"', 'id="panel"'):
        assert element in dom
    assert len(re.findall(r'class="track"', dom)) == len(CLASSES)
    assert len(re.findall(r'class="seg[ "]', dom)) == 4  # threshold 0: one segment per class
    # segment 0 is selected from the URL: its band chart and listenable explanation are shown
    assert 'class="seg selected"' in dom and 'data-selected="seg-0"' in dom
    assert len(re.findall(r'class="band"', dom)) == 7
    assert 'id="explanation-audio"' in dom and 'id="residual-audio"' in dom
    wavs = re.findall(r'src="(long/[^"]+\.wav)"', dom)
    assert len(wavs) == 2 and all((report_dir / w).is_file() for w in wavs)
    player = re.search(r'<audio id="player"[^>]*src="([^"]+)"', dom).group(1)
    assert (report_dir / unquote(player)).resolve() == (pipeline["audio"] / "long.wav").resolve()
    dom, console = _load(browser, report_dir / "index.html", tmp_path)
    assert "proxyseg index ready" in console and not [m for m in console if "Uncaught" in m]
    assert dom.count('.html">') == 2


def test_segmenter_normalises_wavlm_input_as_the_model_folder_says(pipeline, tmp_path):
    """``wavlm.do_normalize`` of the model folder (how its feature cache was extracted) decides whether the
    segmenter normalises each WavLM chunk; a folder without the key (exported before it was recorded) gets
    raw waveforms, as its cache had."""
    import shutil

    from transformers import WavLMModel

    from proxyseg.segmenter.export import SETTINGS
    from proxyseg.segmenter.run import Segmenter

    model = tmp_path / "model"
    shutil.copytree(pipeline["root"] / "model_wavlm", model)
    s = json.loads((model / SETTINGS).read_text())
    s["wavlm"].pop("do_normalize", None)
    (model / SETTINGS).write_text(json.dumps(s))
    assert not Segmenter(model, device="cpu").wavlm.do_normalize
    s["wavlm"]["do_normalize"] = True
    (model / SETTINGS).write_text(json.dumps(s))
    seg = Segmenter(model, device="cpu")
    assert seg.wavlm.do_normalize
    raw = WavLMModel.from_pretrained(model / "wavlm").eval()
    x = torch.from_numpy(0.05 + 0.3 * load_audio(pipeline["audio"] / "long.wav")[:32000])[None]
    with torch.inference_mode():
        got = seg.wavlm(x, output_hidden_states=True).hidden_states
        want = raw((x - x.mean()) / torch.sqrt(x.var(correction=0) + 1e-7), output_hidden_states=True).hidden_states
        plain = raw(x, output_hidden_states=True).hidden_states
    for g, w, p in zip(got, want, plain):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
    assert any(not torch.allclose(g, p, atol=1e-3) for g, p in zip(got, plain))


def test_segment_runs_a_black_box_beside_its_proxy(pipeline, tmp_path):
    """A proxy distilled from Silero: segment runs Silero too, stores its probabilities, writes its
    decisions and marks in the report where the two disagree."""
    pytest.importorskip("silero_vad")
    from proxyseg.teacher.blackbox import load_blackbox

    root = pipeline["root"]
    model = tmp_path / "model"
    export_model(root / "proxy_spectrogram.pt", None, root / "dictionary.npz", None, pipeline["spec"], None, model,
                 blackbox={"kind": "silero", "checkpoint": None})
    settings = load_settings(model)
    assert settings["blackbox"] == {"kind": "silero", "checkpoint": None, "copied": False, "classes": ["speech"],
                                    "path": None}
    out = tmp_path / "out"
    done = segment_files(model, [pipeline["audio"] / "long.wav"], out, {c: 0.5 for c in CLASSES}, device="cpu")
    assert done[0]["uri"] == "long"
    expected = load_blackbox("silero").logits(load_audio(pipeline["audio"] / "long.wav"))
    with h5py.File(out / "probs" / "long.h5") as h5:
        np.testing.assert_allclose(h5["teacher_logits"][()], expected, atol=1e-5)
        assert np.isnan(h5["teacher_probs"][:, 1:]).all() and h5["teacher_probs"].shape == h5["probs"].shape
        assert json.loads(h5.attrs["teacher_classes"]) == ["speech"]
        proxy_speech = h5["probs"][:, 0] >= 0.5
        teacher_speech = h5["teacher_probs"][:, 0] >= 0.5
    assert {s.label for s in read_rttm(out / "rttm" / "long.teacher.rttm").get("long", [])} <= {"speech"}
    # Silero taught speech only: the proxy's music, noise and overlap rows were never trained, so neither its
    # settings, its RTTM nor its report name them (even at a threshold of 0, where every frame would pass)
    assert settings["classes"] == ["speech"]
    zero = tmp_path / "zero"
    segment_files(model, [pipeline["audio"] / "long.wav"], zero, {c: 0.0 for c in CLASSES}, device="cpu")
    assert {s.label for s in read_rttm(zero / "rttm" / "long.rttm")["long"]} == {"speech"}
    with h5py.File(zero / "probs" / "long.h5") as h5:
        assert json.loads(h5.attrs["classes"]) == ["speech"]
    page = (out / "report" / "long.html").read_text()
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert data["classes"] == ["speech"] and len(data["probs"]) == 1
    assert data["teacher"]["name"] == "silero" and data["teacher"]["classes"] == ["speech"]
    disagree = sum(round((d["end"] - d["start"]) / 0.02) for d in data["teacher"]["disagree"])  # frames
    assert disagree == (proxy_speech != teacher_speech).sum() > 0
    assert "run beside it" in page
    # the black box's own decisions, each explained through the proxy and marked as disputable
    bb = data["teacher"]["segments"]
    assert len(bb) == len(read_rttm(out / "rttm" / "long.teacher.rttm").get("long", [])) > 0
    assert data["relevance"] == "linear" and "may dispute" in page
    for s in bb:
        assert s["class"] == "speech" and 0 <= s["proxy_agrees"] <= 1
        assert abs(sum(s["bands"]) - 1) < 1e-3 or not s["n_relevant"]
    heard = [s for s in bb if s["explanation"]]
    assert 0 < len(heard) <= 5
    # the explanation and its residual add up to the audio they were cut from (masks sum to one)
    s = max(heard, key=lambda s: s["end"] - s["start"])
    parts = [sf.read(out / "report" / s[k])[0] for k in ("explanation", "residual")]
    start = 320 * int(round((s["start"] * 16000 - (200 - 160)) / 320))  # its first frame's first sample
    whole = load_audio(pipeline["audio"] / "long.wav")[start:start + len(parts[0])]
    assert np.corrcoef(parts[0] + parts[1], whole)[0, 1] > 0.99
    # relevance by occlusion through the proxy where the model folder says so (the black-box configs' choice)
    occluded = tmp_path / "model_occlusion"
    export_model(root / "proxy_spectrogram.pt", None, root / "dictionary.npz", None, pipeline["spec"], None,
                 occluded, blackbox={"kind": "silero", "checkpoint": None}, relevance="occlusion")
    out2 = tmp_path / "out_occlusion"
    segment_files(occluded, [pipeline["audio"] / "long.wav"], out2, {c: 0.5 for c in CLASSES}, device="cpu")
    page2 = (out2 / "report" / "long.html").read_text()
    data2 = json.loads(page2.split('id="report-data">')[1].split("</script>")[0])
    assert data2["relevance"] == "occlusion"
    bb2 = data2["teacher"]["segments"]
    assert [(s["start"], s["end"]) for s in bb2] == [(s["start"], s["end"]) for s in bb]
    assert [s["relevant"] for s in bb2] != [s["relevant"] for s in bb]
    # a model folder naming a relevance proxyseg does not know is refused, naming its settings file
    settings_json = occluded / "settings.json"
    settings_json.write_text(settings_json.read_text().replace('"relevance": "occlusion"', '"relevance": "exact"'))
    with pytest.raises(InputError, match=r"settings\.json.*relevance 'exact'"):
        segment_files(occluded, [pipeline["audio"] / "long.wav"], tmp_path / "out_bad", device="cpu")
    # without --no-teacher, stored probabilities lacking the black box's are computed again
    plain = tmp_path / "plain"
    segment_files(model, [pipeline["audio"] / "long.wav"], plain, device="cpu", report=False, teacher=False)
    with h5py.File(plain / "probs" / "long.h5") as h5:
        assert "teacher_probs" not in h5
    segment_files(model, [pipeline["audio"] / "long.wav"], plain, device="cpu", report=False)
    with h5py.File(plain / "probs" / "long.h5") as h5:
        assert "teacher_probs" in h5


@pytest.mark.browser
def test_black_box_report_in_headless_chromium(pipeline, tmp_path):
    """The report of a model distilled from Silero draws the black box's curve and the disagreements."""
    import re

    pytest.importorskip("silero_vad")
    browser = _chromium()
    root = pipeline["root"]
    model = tmp_path / "model"
    export_model(root / "proxy_spectrogram.pt", None, root / "dictionary.npz", None, pipeline["spec"], None, model,
                 blackbox={"kind": "silero", "checkpoint": None})
    out = tmp_path / "out"
    segment_files(model, [pipeline["audio"] / "long.wav"], out, {c: 0.5 for c in CLASSES}, device="cpu")
    page = out / "report" / "long.html"
    data = json.loads(page.read_text().split('id="report-data">')[1].split("</script>")[0])
    dom, console = _load(browser, page, tmp_path)
    assert any(m.startswith("proxyseg report ready") for m in console), console
    bad = [m for m in console if "Uncaught" in m or m.startswith("[console.error]") or m.startswith("[resource-error]")]
    assert not bad, bad
    assert data["teacher"]["disagree"]
    assert len(re.findall(r'class="disagree"', dom)) == len(data["teacher"]["disagree"])
    assert len(re.findall(r'stroke-dasharray="4 3"', dom)) == 1  # Silero knows one class: speech
    assert "silero dashed, agreement F1" in dom
    # a black-box decision selected from the URL: its explanation, marked as disputable, with the dispute box
    assert len(re.findall(r'class="bbseg[ "]', dom)) == len(data["teacher"]["segments"])
    dom, console = _load(browser, page, tmp_path, "#bb=0")
    assert 'class="bbseg selected"' in dom and 'data-selected="bb-0"' in dom
    assert 'id="disputable"' in dom and 'id="dispute"' in dom and 'id="disputes"' in dom
    assert len(re.findall(r'class="band"', dom)) == 7
