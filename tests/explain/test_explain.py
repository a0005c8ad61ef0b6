import json

import numpy as np
import pytest
import torch

from proxyseg.explain import relevance as ex
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES
from proxyseg.core.provenance import provenance_json
from proxyseg.dsp import stft_frequencies

# Hand-made example: K = 3 components, T = 2 frames.
H = np.array([[1.0, 3.0],
              [4.0, 0.0],
              [0.0, 1.0]])  # z = mean_t H = [2, 2, 0.5]
THETA = np.array([[1.0, 0.5, -2.0],    # speech : raw [2, 1, -1]      -> / 2  -> [1, .5, -.5]
                  [-1.0, -1.0, -1.0],  # noise  : raw [-2, -2, -.5]   -> max <= 0 -> zeros
                  [0.0, 0.25, 4.0],    # music  : raw [0, .5, 2]      -> / 2  -> [0, .25, 1]
                  [3.0, -3.0, 0.0]])   # overlap: raw [6, -6, 0]      -> / 6  -> [1, -1, 0]
R_EXPECTED = np.array([[1.0, 0.0, 0.0, 1.0],
                       [0.5, 0.0, 0.25, -1.0],
                       [-0.5, 0.0, 1.0, 0.0]])


def test_local_relevance_by_hand():
    r = ex.local_relevance(H, THETA)
    assert r.shape == (3, 4)
    np.testing.assert_allclose(r, R_EXPECTED)
    raw = ex.local_relevance(H, THETA, normalise=False)
    np.testing.assert_allclose(raw[:, 0], [2.0, 1.0, -1.0])
    np.testing.assert_allclose(raw[:, 1], [-2.0, -2.0, -0.5])


def test_local_relevance_accepts_torch_and_checks_shapes():
    r = ex.local_relevance(torch.tensor(H, dtype=torch.float32), torch.tensor(THETA))
    np.testing.assert_allclose(r, R_EXPECTED, rtol=1e-6)
    with pytest.raises(ValueError):
        ex.local_relevance(H, THETA[:, :2])
    with pytest.raises(ValueError):
        ex.local_relevance(np.zeros((3, 0)), THETA)


def test_zero_activations_give_zero_relevance():
    r = ex.local_relevance(np.zeros((3, 5)), THETA)
    assert np.array_equal(r, np.zeros((3, 4)))
    assert all(v.size == 0 for v in ex.relevant_components(r).values())


def test_frame_relevance():
    fr = ex.frame_relevance(H, THETA)
    assert fr.shape == (3, 2, 4)
    # frame 0: H[:, 0] = [1, 4, 0]; speech raw [1, 2, 0] -> [0.5, 1, 0]
    np.testing.assert_allclose(fr[:, 0, 0], [0.5, 1.0, 0.0])
    # frame 1: H[:, 1] = [3, 0, 1]; speech raw [3, 0, -2] -> [1, 0, -2/3]
    np.testing.assert_allclose(fr[:, 1, 0], [1.0, 0.0, -2.0 / 3.0])
    assert np.array_equal(fr[:, :, 1], np.zeros((3, 2)))  # noise: no positive contribution
    seg = ex.frame_relevance(H, THETA, normalise="segment")
    np.testing.assert_allclose(seg[:, :, 0], np.array([[1, 3], [2, 0], [0, -2]]) / 3.0)
    raw = ex.frame_relevance(H, THETA, normalise="none")
    np.testing.assert_allclose(raw.mean(axis=1), ex.local_relevance(H, THETA, normalise=False))
    with pytest.raises(ValueError):
        ex.frame_relevance(H, THETA, normalise="bogus")


def test_relevant_components_tau_and_order():
    rel = ex.relevant_components(R_EXPECTED)
    assert list(rel) == list(CLASSES)
    assert rel["speech"].tolist() == [0]  # 0.5 is not > 0.5
    assert rel["noise"].tolist() == []
    assert rel["music"].tolist() == [2]
    assert rel["overlap"].tolist() == [0]
    rel = ex.relevant_components(R_EXPECTED, tau=0.2)
    assert rel["speech"].tolist() == [0, 1]
    assert rel["music"].tolist() == [2, 1]  # sorted by relevance, not by index
    r = np.array([[0.6, 0, 0, 0], [1.0, 0, 0, 0], [0.6, 0, 0, 0]])
    assert ex.relevant_components(r)["speech"].tolist() == [1, 0, 2]  # ties keep index order


def test_explanation_mask_partition_of_unity():
    rng = np.random.default_rng(0)
    W = rng.random((20, 6)) + 0.01
    Hs = rng.random((6, 30)) + 0.01
    masks = [ex.explanation_mask(W, Hs, [k]) for k in range(6)]
    for m in masks:
        assert m.shape == (20, 30)
        assert m.min() >= 0.0 and m.max() <= 1.0
    np.testing.assert_allclose(sum(masks), 1.0, atol=1e-6)
    np.testing.assert_allclose(ex.explanation_mask(W, Hs, [0, 3]), masks[0] + masks[3], atol=1e-12)
    np.testing.assert_allclose(ex.explanation_mask(W, Hs, [3, 0, 3]), masks[0] + masks[3], atol=1e-12)
    boolean = np.zeros(6, dtype=bool)
    boolean[[1, 4]] = True
    np.testing.assert_allclose(ex.explanation_mask(W, Hs, boolean), masks[1] + masks[4], atol=1e-12)
    assert np.array_equal(ex.explanation_mask(W, Hs, []), np.zeros((20, 30)))
    # zero reconstruction: the eps keeps the mask finite (0)
    Hz = Hs.copy()
    Hz[:, 5] = 0
    m = ex.explanation_mask(W, Hz, range(6))
    assert np.all(np.isfinite(m)) and np.all(m[:, 5] == 0)
    # a signed dictionary (learned_random) is used through its non-negative part
    signed = W - 0.3
    np.testing.assert_allclose(ex.explanation_mask(signed, Hs, [0, 2]),
                               ex.explanation_mask(np.maximum(signed, 0.0), Hs, [0, 2]))
    assert np.array_equal(ex.explanation_mask(-W, Hs, [0]), np.zeros((20, 30)))
    with pytest.raises(ValueError):
        ex.explanation_mask(W, -Hs, [0])
    with pytest.raises(ValueError):
        ex.explanation_mask(W, Hs, [6])


def test_masked_audio_identity_mask_reconstructs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(16000).astype(np.float32)
    from proxyseg.dsp import stft

    F, T = stft(x).shape
    y = ex.masked_audio(x, np.ones((F, T)))
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y[400:15000], x[400:15000], atol=1e-4)
    z = ex.masked_audio(x, np.zeros((F, T)))
    assert np.abs(z).max() == 0
    with pytest.raises(ValueError):
        ex.masked_audio(x, np.ones((F, T + 1)))


def test_class_prototypes_formula_and_clipping():
    W = np.array([[1.0, 0.0],
                  [0.5, 0.5],
                  [0.0, 2.0]])
    rbar = np.array([[1.0, -1.0, 0.5, 0.0],
                     [-0.5, -2.0, 1.0, 0.25]])
    P = ex.class_prototypes(rbar, W)
    expected = np.zeros((3, 4))
    for f in range(3):
        for c in range(4):
            expected[f, c] = sum(max(rbar[k, c], 0.0) * W[f, k] for k in range(2))
    np.testing.assert_allclose(P, expected)
    np.testing.assert_allclose(P[:, 0], W[:, 0])  # negative relevance of atom 1 is clipped
    assert np.array_equal(P[:, 1], np.zeros(3))
    with pytest.raises(ValueError):
        ex.class_prototypes(rbar[:1], W)


def test_band_mass_sums_to_one_and_single_bin():
    freqs = stft_frequencies(512)  # 0, 31.25, ..., 8000 Hz
    F = freqs.size
    P = np.zeros((F, 4))
    P[16, 0] = 3.0      # 500 Hz -> [500, 1000)
    P[256, 1] = 1.0     # 8000 Hz (Nyquist) -> the closed top band [4000, 8000]
    P[:, 2] = np.random.default_rng(0).random(F)
    df = ex.band_mass(P, freqs)
    assert list(df.columns) == ["class", "band_low_hz", "band_high_hz", "mass"]
    assert len(df) == 4 * len(ex.DEFAULT_BANDS)
    sums = df.groupby("class")["mass"].sum()
    for cls in ("speech", "noise", "music"):
        assert sums[cls] == pytest.approx(1.0)
    sp = df[df["class"] == "speech"].set_index("band_low_hz")["mass"]
    assert sp[500.0] == pytest.approx(1.0) and sp.drop(500.0).sum() == 0
    no = df[df["class"] == "noise"].set_index("band_low_hz")["mass"]
    assert no[4000.0] == pytest.approx(1.0)
    assert df[df["class"] == "overlap"]["mass"].isna().all()  # nothing relevant: NaN, not a fake share
    # custom bands; bins outside every band are ignored
    df2 = ex.band_mass(P, freqs, bands=[(0, 400), (400, 600)])
    assert df2[df2["class"] == "speech"]["mass"].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        ex.band_mass(P, freqs, bands=[(0, 500), (400, 600)])
    with pytest.raises(ValueError):
        ex.band_mass(-P, freqs)


def test_accumulator_mean_matches_manual():
    rng = np.random.default_rng(2)
    acc = ex.PrototypeAccumulator(5)
    rs, labels = [], []
    for i in range(12):
        r = rng.standard_normal((5, 4))
        cls = [CLASSES[i % 3]] + (["overlap"] if i % 4 == 0 else [])
        acc.add(r, cls)
        rs.append(r)
        labels.append(cls)
    mean = acc.mean()
    for c, name in enumerate(CLASSES):
        chosen = [r[:, c] for r, cls in zip(rs, labels) if name in cls]
        assert acc.counts[c] == len(chosen)
        np.testing.assert_allclose(mean[:, c], np.mean(chosen, axis=0))
    assert acc.counts_by_class() == {"speech": 4, "noise": 4, "music": 4, "overlap": 3}
    empty = ex.PrototypeAccumulator(5)
    assert np.array_equal(empty.mean(), np.zeros((5, 4)))
    other = ex.PrototypeAccumulator(5)
    other.add(rs[0], 0)
    both = ex.PrototypeAccumulator(5)
    both.merge(acc)
    both.merge(other)
    assert both.counts[0] == acc.counts[0] + 1
    acc3 = ex.PrototypeAccumulator(3)
    r = acc3.add_segment(H, THETA, ["music", 2])  # the same class twice counts once
    np.testing.assert_allclose(r, R_EXPECTED)
    assert acc3.counts.tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError):
        acc3.add(R_EXPECTED, "jazz")


def test_select_segments():
    T = 400
    targets = np.zeros((T, 4), dtype=np.int64)
    targets[0:100, 0] = 1             # speech in windows 0 and 50
    targets[100:175, 2] = 1           # music: window 100 fully, window 150 at exactly 50 %
    targets[:, 3] = -1                # overlap unknown: never selected
    targets[200:400, 1] = 1           # noise in 4 windows
    cands = ex.candidate_segments(targets, 50)
    assert cands["speech"].tolist() == [0, 50]
    assert cands["music"].tolist() == [100, 150]
    assert cands["noise"].tolist() == [200, 250, 300, 350]
    assert cands["overlap"].tolist() == []
    sel = ex.select_segments(targets, 50, per_class=2, rng=7)
    assert sel["speech"] == [0, 50] and sel["overlap"] == []
    assert len(sel["noise"]) == 2 and set(sel["noise"]) <= {200, 250, 300, 350}
    assert sel["noise"] == sorted(sel["noise"])
    assert sel == ex.select_segments(targets, 50, per_class=2, rng=7)  # reproducible
    assert ex.select_segments(targets, 50, per_class=2, rng=np.random.default_rng(7)) == sel
    # decisions (bool) and a stricter threshold
    decisions = targets > 0
    assert ex.candidate_segments(decisions, 50, min_fraction=0.9)["music"].tolist() == [100]
    # pooling several files
    across = ex.select_segments_across({"b": targets, "a": targets[:120]}, 50, per_class=3, rng=0)
    assert len(across["speech"]) == 3
    assert all(f in ("a", "b") for f, _ in across["speech"])
    assert across == ex.select_segments_across({"a": targets[:120], "b": targets}, 50, per_class=3, rng=0)
    assert ex.select_segments(targets[:10], 50, per_class=2)["speech"] == []


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def _example(F=257, T=100, K=8, seed=3):
    rng = np.random.default_rng(seed)
    W = rng.random((F, K))
    W /= np.linalg.norm(W, axis=0)
    Hs = rng.random((K, T))
    theta = rng.standard_normal((4, K))
    X = np.log1p(rng.random((F, T)) * 10)
    probs = rng.random((T, 4))
    return W, Hs, theta, X, probs


def test_plot_local_explanation(tmp_path):
    W, Hs, theta, X, probs = _example()
    r = ex.local_relevance(Hs, theta)
    comps = ex.relevant_components(r)
    freqs = stft_frequencies(512)
    out = tmp_path / "figs" / "local.png"
    ex.plot_local_explanation(out, X, probs, r, W, freqs, "speech", comps["speech"], "segment 0")
    assert _is_png(out)
    # default components (r > tau), torch inputs, a single relevance column, no relevant component
    out2 = tmp_path / "local2.png"
    ex.plot_local_explanation(out2, torch.tensor(X), torch.tensor(probs), np.zeros(8), torch.tensor(W), freqs,
                              "music", title="nothing relevant")
    assert _is_png(out2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs", "local2.png"]


def test_plot_prototypes_and_save_load(tmp_path):
    W, Hs, theta, X, probs = _example()
    acc = ex.PrototypeAccumulator(8)
    for i in range(5):
        acc.add_segment(Hs[:, i * 20:(i + 1) * 20], theta, ["speech", "music"] if i % 2 else "noise")
    P = ex.class_prototypes(acc.mean(), W)
    freqs = stft_frequencies(512)
    out = tmp_path / "prototypes.png"
    ex.plot_prototypes(out, P, freqs, acc.counts)
    assert _is_png(out)
    ex.plot_prototypes(tmp_path / "p2.png", P, freqs, acc.counts_by_class(), normalise=False,
                       log_frequency=False)
    assert _is_png(tmp_path / "p2.png")

    npz = tmp_path / "proto" / "prototypes.npz"
    ex.save_prototypes(npz, P, acc.mean(), acc.counts, freqs, provenance_json(segments=5, tau=0.5))
    assert sorted(p.name for p in npz.parent.iterdir()) == ["prototypes.npz"]
    loaded = ex.load_prototypes(npz)
    np.testing.assert_allclose(loaded.P, P)
    np.testing.assert_allclose(loaded.mean_relevance, acc.mean())
    assert loaded.counts.tolist() == acc.counts.tolist()
    np.testing.assert_allclose(loaded.freqs_hz, freqs)
    assert loaded.classes == CLASSES
    assert loaded.provenance["settings"] == {"segments": 5, "tau": 0.5}
    with pytest.raises(ValueError):
        ex.save_prototypes(tmp_path / "bad.npz", P[:10], acc.mean(), acc.counts, freqs, "{}")
    assert not (tmp_path / "bad.npz").exists()
    with pytest.raises(InputError):
        ex.load_prototypes(tmp_path / "missing.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(InputError, match="missing"):
        ex.load_prototypes(tmp_path / "foreign.npz")


def test_figure_error_leaves_no_file(tmp_path, monkeypatch):
    W, Hs, theta, X, probs = _example()
    r = ex.local_relevance(Hs, theta)
    freqs = stft_frequencies(512)
    out = tmp_path / "local.png"
    with pytest.raises(ValueError):  # bad input: fails before anything is written
        ex.plot_local_explanation(out, X, probs[:10], r, W, freqs, "speech")
    assert list(tmp_path.iterdir()) == []

    from matplotlib.figure import Figure

    def broken_savefig(self, fname, *args, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"\x89PNG partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError):
        ex.plot_local_explanation(out, X, probs, r, W, freqs, "speech")
    with pytest.raises(RuntimeError):
        ex.plot_prototypes(tmp_path / "p.png", ex.class_prototypes(r, W), freqs, [1, 1, 1, 1])
    assert list(tmp_path.iterdir()) == []


def test_provenance_string_must_be_json(tmp_path):
    with pytest.raises(json.JSONDecodeError):
        ex.save_prototypes(tmp_path / "p.npz", np.zeros((3, 4)), np.zeros((2, 4)), [0, 0, 0, 0],
                           np.arange(3.0), "not json")
    assert not (tmp_path / "p.npz").exists()


# ------------------------------------------------- learned_random dictionaries and the log-domain mask (METHOD §7)

def _explain_inputs(root, W, K=6, seconds=6.0, seed=0):
    """A learned_random proxy checkpoint with dictionary ``W`` and the files the explain stage reads:
    inference (H, probs), spectrogram cache, targets and the manifest beside them, for one noise file."""
    import h5py
    import pandas as pd
    import soundfile as sf

    from proxyseg.proxy.model import Proxy
    from proxyseg.dictionary.spectrogram import log_power_spectrogram

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    proxy = Proxy(W.shape[0], torch.zeros(W.shape), "learned_random", blocks=1, repeats=1)
    with torch.no_grad():
        proxy.w_param.copy_(torch.as_tensor(W, dtype=torch.float32))
    hp = {**proxy.hparams, "crop_frames": 50, "input": "spectrogram", "dictionary": "learned_random"}
    torch.save({"state_dict": proxy.state_dict(), "hparams": hp}, root / "model.pt")
    x = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    sf.write(root / "a.wav", x, 16000)
    X = log_power_spectrogram(x).numpy().T
    T = X.shape[0]
    with h5py.File(root / "spec.h5", "w") as h5:
        h5.attrs.update(n_fft=512, win_length=400, freqs_hz=stft_frequencies(512))
        h5["a"] = X.astype(np.float16)
    with h5py.File(root / "infer.h5", "w") as h5:
        h5["a/H"] = rng.random((T, W.shape[1])).astype(np.float16)
        h5["a/probs"] = rng.random((T, 4)).astype(np.float32)
    (root / "labels").mkdir(exist_ok=True)
    targets = np.zeros((T, 4), dtype=np.int8)
    targets[:, 0] = 1
    targets[T // 2:, 2] = 1
    with h5py.File(root / "labels" / "targets.h5", "w") as h5:
        h5["a"] = targets
    pd.DataFrame([{"uri": "a", "audio": str(root / "a.wav")}]).to_csv(root / "labels" / "manifest.tsv",
                                                                      sep="\t", index=False)
    return root / "model.pt", [(str(root / "infer.h5"), str(root / "spec.h5"), str(root / "labels" / "targets.h5"))], x


def test_explain_stage_with_a_signed_learned_random_dictionary(tmp_path):
    """learned_random W gets negative entries in training; the explain stage used to crash on them
    (band_mass: 'needs a non-negative prototype P', from P = W max(r, 0) with the raw W). Masks and
    prototypes now use W+ = max(W, 0); the negative part is kept beside them and in the figures."""
    import pandas as pd
    import soundfile as sf

    from proxyseg.explain.prototypes import explain_proxy

    rng = np.random.default_rng(5)
    W = rng.random((257, 6)) - 0.3  # about 30 % negative entries
    checkpoint, items, x = _explain_inputs(tmp_path / "in", W)
    with pytest.raises(ValueError, match="non-negative"):  # what the stage ran into
        ex.band_mass(W @ np.maximum(rng.standard_normal((6, 4)), 0), stft_frequencies(512))
    out = tmp_path / "out"
    record = explain_proxy(checkpoint, items, out, {"prototype_segments": 5, "local_per_class": 1})
    assert record["dictionary"]["mode"] == "learned_random" and 0.1 < record["dictionary"]["negative_share"] < 0.5
    proto = ex.load_prototypes(out / "prototypes.npz")
    Wf = W.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(proto.P, ex.class_prototypes(proto.mean_relevance, np.maximum(Wf, 0)), rtol=1e-5)
    assert (proto.P >= 0).all() and proto.P_negative is not None and proto.P_negative.any()
    # P - P_negative is the signed projection of the raw W
    np.testing.assert_allclose(proto.P - proto.P_negative, Wf @ np.maximum(proto.mean_relevance, 0),
                               rtol=1e-5, atol=1e-9)
    bands = pd.read_csv(out / "band_mass.tsv", sep="\t")
    for cls in ("speech", "music"):
        assert bands[bands["class"] == cls]["mass"].sum() == pytest.approx(1.0)
    assert _is_png(out / "prototypes.png") and _is_png(out / "local" / "speech_0.png")
    # the listenable explanation and its residual (linear domain) add up to the audio
    local = record["local"][0]
    a, _ = sf.read(local["audio"])
    b, _ = sf.read(local["residual"])
    start = int(round(local["start"] * 16000))
    np.testing.assert_allclose((a + b)[400:-400], x[start:start + len(a)][400:-400], atol=3e-4)
    assert np.abs(a).max() > 0
    # a non-negative dictionary has no negative part
    assert not ex.negative_prototypes(proto.mean_relevance, np.abs(W)).any() and ex.negative_share(np.abs(W)) == 0


def test_masked_audio_log_domain():
    from proxyseg.dsp import stft

    rng = np.random.default_rng(4)
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    F, T = stft(x).shape
    W = rng.random((F, 5)) + 0.01
    Hs = rng.random((5, T)) + 0.01
    part = ex.explanation_mask(W, Hs, [0, 3])
    for domain in ex.MASK_DOMAINS:
        for mask in (part, 1.0 - part):
            y = ex.masked_audio(x, mask, domain=domain)
            assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    # all components relevant: the input back (up to the STFT round trip); none: silence
    y = ex.masked_audio(x, ex.explanation_mask(W, Hs, range(5)), domain="log")
    np.testing.assert_allclose(y[400:-400], x[400:-400], atol=1e-4)
    assert np.abs(ex.masked_audio(x, ex.explanation_mask(W, Hs, []), domain="log")).max() == 0
    # a partial mask is not the linear-domain part (a mask of 1/2 keeps sqrt(exp(X / 2) - 1), not |S| / 2):
    # the log domain keeps about sqrt(M) of quiet bins (|S|^2 << 1) and less of loud ones ((1 + |S|^2)^M - 1)
    y = ex.masked_audio(x, part, domain="log")
    lin = ex.masked_audio(x, part, domain="linear")
    assert np.linalg.norm(lin - y) > 0.05 * np.linalg.norm(y)
    with pytest.raises(ValueError, match="mask domain"):
        ex.masked_audio(x, part, domain="mel")
    # spectrogram.level_db: the mask takes its fraction of the X the proxy saw (the file at gain g), and
    # the explanation keeps the file's own level
    g = 10 ** (18 / 20)
    np.testing.assert_allclose(ex.masked_audio(x, part, domain="log", level_gain=g),
                               ex.masked_audio(g * x, part, domain="log") / g, atol=1e-5)
    np.testing.assert_allclose(ex.masked_audio(x, part, domain="linear", level_gain=g), lin, atol=1e-6)


def test_explain_stage_log_domain_setting(tmp_path):
    from proxyseg.explain.prototypes import explain_proxy

    W = np.random.default_rng(6).random((257, 6))
    checkpoint, items, x = _explain_inputs(tmp_path / "in", W)
    settings = {"prototype_segments": 2, "local_per_class": 1, "mask_domain": "log"}
    record = explain_proxy(checkpoint, items, tmp_path / "out", settings)
    import soundfile as sf

    a, sr = sf.read(record["local"][0]["audio"])
    assert sr == 16000 and np.isfinite(a).all() and np.abs(a).max() > 0
    assert record["settings"]["mask_domain"] == "log" and record["dictionary"]["negative_share"] == 0
    with pytest.raises(InputError, match="mask_domain"):
        explain_proxy(checkpoint, items, tmp_path / "bad", {**settings, "mask_domain": "mel"})
