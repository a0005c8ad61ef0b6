"""Faithfulness: removal sets, probability drops by hand, the input-level residual, rows and summary."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from proxyseg.cli import main
from proxyseg.faithfulness import (KINDS, faithfulness_rows, faithfulness_summary, probability_drops,
                                   removal_sets, residual_spectrogram)
from proxyseg.frames import CLASSES
from proxyseg.proxy.model import Proxy


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
def proxy_files(tmp_path):
    """A spectrogram-input proxy whose class 'speech' rests on atom 0 only, and matching H / X / targets."""
    F, K, T = 257, 6, 300
    rng = np.random.default_rng(0)
    W = rng.random((F, K)).astype(np.float32)
    W /= np.linalg.norm(W, axis=0, keepdims=True)
    torch.manual_seed(0)
    model = Proxy(F, torch.from_numpy(W), "fixed", blocks=1, repeats=1)
    with torch.no_grad():
        model.theta.weight.zero_()
        model.theta.weight[0, 0, 0] = 3.0
        model.theta.weight[0, 1:, 0] = 0.05
        model.theta.bias.fill_(-1.0)
    hp = {**model.hparams, "crop_frames": 50, "input": "spectrogram", "dictionary": "fixed"}
    torch.save({"state_dict": model.state_dict(), "hparams": hp}, tmp_path / "proxy.pt")
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
    rows = faithfulness_rows(proxy_files / "proxy.pt", items, {"draws": 3, "segment_seconds": 1.0}, seed=0,
                             system="p")
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
    items = ["demo", str(proxy_files / "inf.h5"), str(proxy_files / "spec.h5"), str(proxy_files / "targets.h5")]
    out = proxy_files / "rows.tsv"
    assert main(["faithfulness", "--checkpoint", str(proxy_files / "proxy.pt"), "--items", *items, "--system",
                 "p", "--out", str(out), "--settings", '{"draws": 2, "segment_seconds": 1.0}']) == 0
    assert main(["faithfulness", "--checkpoint", str(proxy_files / "proxy.pt"), "--items", *items[:3],
                 "--system", "p", "--out", str(out)]) == 2
    assert main(["faithfulness-table", str(out), "--out-tsv", str(proxy_files / "t.tsv"), "--out-md",
                 str(proxy_files / "t.md"), "--out-png", str(proxy_files / "f.png")]) == 0
    table = pd.read_csv(proxy_files / "t.tsv", sep="\t")
    assert list(table["class"]) == ["speech", "music"] and set(table["class"]) <= set(CLASSES)
    assert (proxy_files / "f.png").stat().st_size > 5000 and "ratio_random" in (proxy_files / "t.md").read_text()
