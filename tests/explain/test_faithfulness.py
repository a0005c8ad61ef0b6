"""Faithfulness: removal sets, probability drops by hand, the input-level residual, rows and summary."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from proxyseg.cli import main
from proxyseg.core.errors import InputError
from proxyseg.explain.faithfulness import (KINDS, TeacherJudge, faithfulness_rows, faithfulness_summary,
                                   probability_drops, removal_sets, residual_spectrogram)
from proxyseg.core.frames import CLASSES, SAMPLE_RATE
from proxyseg.dictionary.spectrogram import stft, stft_frequencies


def test_removal_sets_sizes_and_membership():
    r = np.array([1.0, 0.8, 0.1, 0.0, -0.3, -2.0])
    z = np.array([1.0, 1.0, 0.5, 0.0, 0.2, 0.4])
    sets = removal_sets(r, z, 0.5, np.random.default_rng(0), draws=4)
    assert sets["relevant"][0].tolist() == [0, 1]
    assert sorted(sets["least"][0].tolist()) == [4, 5]
    assert len(sets["random"]) == 4 and all(len(s) == 2 and len(set(s)) == 2 for s in sets["random"])
    assert all(set(s) <= {0, 1, 2, 4, 5} for s in sets["random_active"])  # component 3 is inactive


def test_probability_drops_by_hand():
    theta = np.zeros((4, 3))
    theta[0] = [4.0, 0.0, -2.0]
    bias = np.zeros(4)
    H = np.array([[1.0, 1.0], [5.0, 5.0], [0.5, 0.5]])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    base = sig(4.0 - 1.0)
    d = probability_drops(H, theta, bias, 0, {"relevant": [np.array([0])], "least": [np.array([2])],
                                              "random": [np.array([1]), np.array([0])], "none": [np.array([], int)]})
    assert d["base"] == pytest.approx(base)
    assert d["relevant"] == pytest.approx(base - sig(-1.0))
    assert d["least"] == pytest.approx(base - sig(4.0)) and d["least"] < 0
    assert d["random"] == pytest.approx(np.mean([0.0, base - sig(-1.0)]))
    assert d["none"] == 0.0


def test_residual_spectrogram():
    X = np.log1p(np.array([[4.0, 0.0], [9.0, 1.0]]))
    assert np.allclose(residual_spectrogram(X, np.zeros_like(X)), X)
    assert np.allclose(residual_spectrogram(X, np.ones_like(X)), 0.0)
    half = residual_spectrogram(X, np.full_like(X, 0.5))  # half the magnitude = a quarter of the power
    assert np.allclose(np.expm1(half), np.expm1(X) / 4)


@pytest.fixture
def proxy_files(tmp_path, linear_proxy):
    """A spectrogram-input proxy whose class 'speech' rests on atom 0 only, and matching H / X / targets."""
    F, K, T = 257, 6, 300
    rng = np.random.default_rng(0)
    W = rng.random((F, K)).astype(np.float32)
    W /= np.linalg.norm(W, axis=0, keepdims=True)
    linear_proxy(tmp_path / "proxy.pt", W, {0: [(0, 3.0), (slice(1, None), 0.05)]})
    H = rng.random((T, K)).astype(np.float32) + 0.2
    X = (H @ W.T).astype(np.float16)
    targets = np.zeros((T, 4), np.int8)
    targets[:, 0] = 1
    targets[:150, 2] = 1  # music active, but the classifier has no weight for it: nothing is relevant
    targets[:, 3] = -1
    with h5py.File(tmp_path / "inf.h5", "w") as f:
        f.create_group("a").create_dataset("H", data=H.astype(np.float16))
    with h5py.File(tmp_path / "spec.h5", "w") as f:
        f.create_dataset("a", data=X)
    with h5py.File(tmp_path / "targets.h5", "w") as f:
        f.create_dataset("a", data=targets)
    return tmp_path


def test_rows_and_summary(proxy_files):
    items = [("demo", proxy_files / "inf.h5", proxy_files / "spec.h5", proxy_files / "targets.h5")]
    rows = faithfulness_rows(proxy_files / "proxy.pt", items, {"draws": 3, "segment_seconds": 1.0,
                                                              "classifier": "proxy"}, seed=0, system="p")
    speech = rows[rows["class"] == "speech"]
    assert len(speech) == 6 and not speech["no_relevant"].any()
    assert (speech["n_relevant"] == 1).all()
    # speech rests on atom 0: removing it costs far more than removing a random atom
    assert (speech["drop_relevant"] > 2 * speech["drop_random"]).all()
    assert {"input_drop_relevant", "input_drop_random"} <= set(rows.columns)
    assert set(rows["class"]) == {"speech", "music"}  # noise inactive, overlap unknown: no segment
    assert rows[rows["class"] == "music"]["no_relevant"].all()
    summary = faithfulness_summary(rows)
    assert summary.set_index("class").loc["music", "no_relevant"] == 3
    s = summary.set_index("class").loc["speech"]
    assert s["segments"] == 6 and s["ratio_random"] == pytest.approx(s["drop_relevant"] / s["drop_random"])
    assert all(f"drop_{k}" in summary for k in KINDS)


def test_cli_table_and_figure(proxy_files):
    items = ["demo", str(proxy_files / "inf.h5"), str(proxy_files / "spec.h5"), str(proxy_files / "targets.h5"),
             str(proxy_files / "manifest.tsv")]
    out = proxy_files / "rows.tsv"
    assert main(["faithfulness", "--checkpoint", str(proxy_files / "proxy.pt"), "--items", *items, "--system",
                 "p", "--out", str(out), "--settings", '{"draws": 2, "segment_seconds": 1.0, "classifier": "proxy"}']) == 0
    assert main(["faithfulness", "--checkpoint", str(proxy_files / "proxy.pt"), "--items", *items[:4],
                 "--system", "p", "--out", str(out)]) == 2
    # judged by the teacher (the default) without a teacher: a clear error, not a proxy-only table
    assert main(["faithfulness", "--checkpoint", str(proxy_files / "proxy.pt"), "--items", *items,
                 "--system", "p", "--out", str(proxy_files / "none.tsv")]) == 2
    assert not (proxy_files / "none.tsv").exists()
    assert main(["faithfulness-table", str(out), "--out-tsv", str(proxy_files / "t.tsv"), "--out-md",
                 str(proxy_files / "t.md"), "--out-png", str(proxy_files / "f.png")]) == 0
    table = pd.read_csv(proxy_files / "t.tsv", sep="\t")
    assert list(table["class"]) == ["speech", "music"] and set(table["class"]) <= set(CLASSES)
    assert (proxy_files / "f.png").stat().st_size > 5000 and "ratio_random" in (proxy_files / "t.md").read_text()


# ------------------------------------------------------------------------------- judged by the teacher

class BandJudge:
    """A stand-in for the teacher whose 'speech' probability is the share of each frame's energy below
    600 Hz: it rests on the low band, which the proxy's atom 0 (and only it) covers."""

    def probs(self, wavs):
        spec = stft(np.asarray(wavs, dtype=np.float32)).abs().square().double().numpy()  # (B, F, T)
        low = stft_frequencies(512) < 600
        p = spec[:, low].sum(1) / (spec.sum(1) + 1e-9)
        out = np.full((p.shape[0], 4, p.shape[1]), 0.5)
        out[:, 0] = p
        return out


@pytest.fixture
def tone_files(tmp_path, linear_proxy, narrowband_dictionary, one_file_split):
    """3 s of a 300 Hz tone (speech, for the judge) plus tones at 1.5, 2.5, 3.5, 4.5 and 5.5 kHz; a
    spectrogram-input proxy with narrow-band atoms, atom 0 at 300 Hz; speech rests on atom 0."""
    centres = [300, 1500, 2500, 3500, 4500, 5500]
    W = narrowband_dictionary(centres)
    linear_proxy(tmp_path / "proxy.pt", W, {0: [(0, 3.0), (slice(1, None), 0.05)]})
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    x = sum(0.1 * np.sin(2 * np.pi * f * t) for f in centres).astype(np.float32)
    return one_file_split(W, x, active=[0])


@pytest.mark.parametrize("domain", ["linear", "log"])
def test_teacher_judges_the_audio_without_the_relevant_components(tone_files, domain):
    items = [("demo", tone_files / "inf.h5", tone_files / "spec.h5", tone_files / "targets.h5",
              tone_files / "manifest.tsv")]
    settings, explain = {"draws": 4, "segment_seconds": 1.0, "teacher_segments": 1}, {"mask_domain": domain}
    rows = faithfulness_rows(tone_files / "proxy.pt", items, settings, seed=0, system="p", judge=BandJudge(),
                             explain=explain)
    speech = rows[rows["class"] == "speech"]
    judged = speech.dropna(subset=["teacher_base"])
    assert len(judged) == 1 and len(speech) == 2  # the teacher hears only the first teacher_segments
    # the judge's speech rests on the 300 Hz tone: removing atom 0's audio takes most of its probability,
    # removing random atoms takes little (a draw hits atom 0 one time in six)
    assert (judged["teacher_drop_relevant"] > 0.9 * judged["teacher_base"]).all()
    assert (judged["teacher_drop_relevant"] > 2 * judged["teacher_drop_random"]).all()
    assert (judged["teacher_drop_least"] < 0.1).all()
    # the explanation alone (the 300 Hz tone) keeps the class: no average drop, an increase
    assert (judged["teacher_expl"] > judged["teacher_base"]).all()
    s = faithfulness_summary(rows).set_index("class").loc["speech"]
    assert s["teacher_segments"] == 1 and s["teacher_AD"] == 0.0 and s["teacher_AI"] == 100.0
    assert s["teacher_ratio_random"] > 2  # (inf here: removing random atoms raised the judge's probability)
    assert "drop_relevant" in s  # the proxy's internal check is still there (classifier both)
    teacher_only = faithfulness_rows(tone_files / "proxy.pt", items, {**settings, "classifier": "teacher"},
                                     seed=0, system="p", judge=BandJudge(), explain=explain)
    assert "teacher_drop_relevant" in teacher_only and "drop_relevant" not in teacher_only
    with pytest.raises(ValueError, match="needs the teacher"):
        faithfulness_rows(tone_files / "proxy.pt", items, settings, seed=0, system="p")
    with pytest.raises(InputError, match="classifier"):
        faithfulness_rows(tone_files / "proxy.pt", items, {"classifier": "oracle"}, judge=BandJudge())
    with pytest.raises(InputError, match="mask_domain"):
        faithfulness_rows(tone_files / "proxy.pt", items, {}, judge=BandJudge(), explain={"mask_domain": "db"})


def test_teacher_judge_runs_wavlm_and_the_teacher(tmp_path):
    from proxyseg.features.wavlm import build_untrained_wavlm
    from proxyseg.teacher.model import Teacher

    build_untrained_wavlm(tmp_path / "w", seed=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(32,) * 7)
    torch.manual_seed(0)
    teacher = Teacher(3, 32, bottleneck=8, hidden=16, blocks=1, repeats=1).eval()
    torch.save({"state_dict": teacher.state_dict(), "hparams": {**teacher.hparams, "crop_frames": 100},
                "provenance": {}}, tmp_path / "teacher.pt")
    with h5py.File(tmp_path / "features.h5", "w") as f:
        f.attrs["layers"] = np.array([0, 1, 2])
    judge = TeacherJudge(tmp_path / "teacher.pt", str(tmp_path / "w"), tmp_path / "features.h5", device="cpu")
    wavs = np.random.default_rng(0).normal(0, 0.1, (3, 320 * 49 + 400)).astype(np.float32)
    p = judge.probs(wavs)
    assert p.shape == (3, 4, 50) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    assert not np.allclose(p[0], p[1])  # different clips, different judgements
