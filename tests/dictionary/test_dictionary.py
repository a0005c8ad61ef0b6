"""NMF dictionary material (METHOD §4): the annotated segments of each class, class-pure, no frame twice."""

import json
import logging

import h5py
import numpy as np
import pytest

from proxyseg.dictionary.build import active_runs, draw_segments, pretrain_dictionary
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, FRAME_RATE, UNKNOWN

SP, NO, MU, OV = (CLASSES.index(c) for c in ("speech", "noise", "music", "overlap"))
F = 6  # frequency bins; column 0 of a spectrogram frame holds its (file, frame) id, to trace what was drawn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def radio_targets(seconds=200, offset=0.0):
    """(T, 4) targets like a radio programme: a 0.6 s noise event every 5 s, long speech and music runs
    (speech 0-12 s of every 20 s, music 8-19.5 s: they overlap), a short 0.25 s music sting at 19.7 s,
    overlap not annotated (unknown)."""
    t = (np.arange(int(seconds * FRAME_RATE)) + 0.5) / FRAME_RATE + offset
    out = np.zeros((len(t), len(CLASSES)), dtype=np.int8)
    out[:, NO] = (t % 5.0) < 0.6
    out[:, SP] = (t % 20.0) < 12.0
    out[:, MU] = (((t % 20.0) >= 8.0) & ((t % 20.0) < 19.5)) | (((t % 20.0) >= 19.7) & ((t % 20.0) < 19.95))
    out[:, OV] = UNKNOWN
    return out


def write_pair(tmp_path, name, targets: dict[str, np.ndarray], file_id=0):
    spec, tgt = tmp_path / f"{name}.spec.h5", tmp_path / f"{name}.targets.h5"
    with h5py.File(spec, "w") as s, h5py.File(tgt, "w") as t:
        s.attrs["freqs_hz"] = np.linspace(0, 8000, F)
        s.attrs["n_fft"], s.attrs["win_length"] = 10, 10
        for k, (uri, y) in enumerate(targets.items()):
            x = np.random.default_rng(k).uniform(0.1, 1.0, (len(y), F)).astype(np.float32)
            x[:, 0] = (file_id * 100 + k) * 1e5 + np.arange(len(y))  # traceable frame id
            s[uri] = x
            t[uri] = y
    return spec, tgt


@pytest.fixture
def radio(tmp_path):
    """Two training pairs (corpora), three programmes; file ids map back to their targets."""
    a = {"r1": radio_targets(200), "r2": radio_targets(150, offset=3.3)}
    b = {"r3": radio_targets(180, offset=7.1)}
    pairs = [write_pair(tmp_path, "a", a, 0), write_pair(tmp_path, "b", b, 1)]
    by_id = {0: a["r1"], 1: a["r2"], 100: b["r3"]}
    return pairs, by_id


def drawn_frames(X, counts, summary):
    """Split the drawn spectrogram by class (in draw order) into (file id, frame) pairs."""
    ids = X[0].astype(np.int64)
    out, at = {}, 0
    for name in counts:
        if name in summary:
            n = summary[name]["frames"]
            out[name] = [(int(i // 100000), int(i % 100000)) for i in ids[at:at + n]]
            at += n
    assert at == X.shape[1]
    return out


def purity(frames, by_id, c):
    return np.mean([by_id[f][i, c] == 1 for f, i in frames])


COUNTS = {"speech": 15, "noise": 60, "music": 15, "overlap": 5}


def test_drawn_frames_are_class_pure_distinct_and_within_bounds(radio, caplog):
    pairs, by_id = radio
    with caplog.at_level(logging.WARNING, logger="proxyseg.dictionary.build"):
        X, summary = draw_segments(pairs, COUNTS, 0.5, 4.0, np.random.default_rng(0))
    assert X.shape[0] == F
    frames = drawn_frames(X, COUNTS, summary)
    for name, c in (("speech", SP), ("noise", NO), ("music", MU)):
        assert purity(frames[name], by_id, c) >= 0.99, name
        assert summary[name]["active_share"] == 1.0
        assert len(set(frames[name])) == len(frames[name]), f"{name}: a frame drawn twice"
        assert summary[name]["segments"] == COUNTS[name] and summary[name]["frames"] == len(frames[name])
    # overlap is unknown in every file: nothing drawn, and a warning names the class and the counts
    assert summary["overlap"]["segments"] == 0 and summary["overlap"]["active_share"] is None
    assert any("5 overlap segment(s) requested" in r.message and "only 0" in r.message for r in caplog.records)
    # noise events (0.6 s) are kept whole at min 0.5 s; the 0.25 s music stings are skipped
    assert summary["noise"]["skipped_short"] == 0 and summary["music"]["skipped_short"] > 0
    assert summary["noise"]["frames"] == COUNTS["noise"] * 30  # 0.6 s = 30 frames each
    # classes overlap in this programme: the summary says how often speech is active in music segments
    assert 0 < summary["music"]["also_active"]["speech"] < 1 and summary["music"]["also_active"]["overlap"] is None


def test_segments_are_maximal_runs_skipped_when_short_cut_to_max(radio):
    pairs, by_id = radio
    counts = {"speech": 1000, "noise": 1000, "music": 1000}
    X, summary = draw_segments(pairs, counts, 1.0, 4.0, np.random.default_rng(1))
    frames = drawn_frames(X, counts, summary)
    assert summary["noise"]["segments"] == 0 and summary["noise"]["skipped_short"] == summary["noise"]["runs"] > 0
    # each music run of 11.5 s gives one central 4 s segment; its 0.25 s stings are skipped
    music = frames["music"]
    starts = [k for k in range(len(music)) if k == 0 or music[k] != (music[k - 1][0], music[k - 1][1] + 1)]
    lengths = np.diff(starts + [len(music)])
    assert (lengths == 4 * FRAME_RATE).all() and len(lengths) == summary["music"]["segments"]
    assert summary["music"]["cut_to_max"] == summary["music"]["segments"]
    assert summary["music"]["skipped_short"] > 0
    for k in starts:  # centred: the run extends equally (±1 frame) on both sides of the segment
        f, i = music[k]
        y = by_id[f][:, MU]
        run = active_runs(y == 1)
        s, e = next((s, e) for s, e in run if s <= i < e)
        if s > 0 and e < len(y):  # whole run inside the file
            assert abs((i - s) - (e - (i + 4 * FRAME_RATE))) <= 1
    # every segment lies within one run (active throughout)
    assert purity(music, by_id, MU) == 1.0 and purity(frames["speech"], by_id, SP) == 1.0
    assert max(lengths) <= 4.0 * FRAME_RATE


def test_same_seed_same_draw_other_seed_other_draw(radio):
    pairs, _ = radio
    counts = {"speech": 10, "noise": 40, "music": 10}
    a, sa = draw_segments(pairs, counts, 0.5, 4.0, np.random.default_rng(7))
    b, sb = draw_segments(pairs, counts, 0.5, 4.0, np.random.default_rng(7))
    c, _ = draw_segments(pairs, counts, 0.5, 4.0, np.random.default_rng(8))
    assert np.array_equal(a, b) and sa == sb
    assert not np.array_equal(a[0], c[0])


def old_draw_purity(by_id, c, n, rng, min_seconds=1.0, max_seconds=4.0):
    """The former draw (start at a random active frame, run a random 1-4 s whatever follows)."""
    active = [(f, np.flatnonzero(y[:, c] == 1)) for f, y in by_id.items()]
    sizes = np.array([len(i) for _, i in active], dtype=float)
    hits = []
    for k in rng.choice(len(active), size=n, p=sizes / sizes.sum()):
        f, idx = active[k]
        start = int(rng.choice(idx))
        length = int(round(rng.uniform(min_seconds, max_seconds) * FRAME_RATE))
        hits.extend(by_id[f][start:start + length, c] == 1)
    return float(np.mean(hits))


def test_the_purity_check_would_catch_the_former_draw(radio):
    """The test above is meaningful: the former draw gave mostly non-noise frames as 'noise'."""
    _, by_id = radio
    assert old_draw_purity(by_id, NO, 500, np.random.default_rng(0)) < 0.3
    assert old_draw_purity(by_id, MU, 500, np.random.default_rng(0)) < 0.99


def test_active_runs():
    runs = active_runs(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool))
    assert runs.tolist() == [[0, 2], [4, 5], [6, 9]]
    assert active_runs(np.zeros(4, bool)).shape == (0, 2)


def test_unknown_frames_break_runs_and_are_never_drawn(tmp_path):
    y = np.zeros((400, len(CLASSES)), dtype=np.int8)
    y[:, NO] = 1
    y[200:210, NO] = UNKNOWN  # outside the UEM: two runs of 4 s, not one of 8 s
    pairs = [write_pair(tmp_path, "u", {"u1": y})]
    X, summary = draw_segments(pairs, {"noise": 5}, 1.0, 10.0, np.random.default_rng(0))
    assert summary["noise"]["runs"] == 2 and summary["noise"]["segments"] == 2 and X.shape[1] == 390


def test_nothing_to_draw_and_bad_bounds(tmp_path):
    y = np.zeros((300, len(CLASSES)), dtype=np.int8)
    pairs = [write_pair(tmp_path, "z", {"z1": y})]
    with pytest.raises(InputError, match="nothing to learn"):
        draw_segments(pairs, {"speech": 3}, 1.0, 4.0, np.random.default_rng(0))
    with pytest.raises(InputError, match="min_seconds"):
        draw_segments(pairs, {"speech": 3}, 5.0, 4.0, np.random.default_rng(0))


def test_pretrain_dictionary_records_what_was_drawn(radio, tmp_path):
    pairs, _ = radio
    settings = {"components": 4, "iterations": 3, "min_seconds": 0.5,
                "segments": {"speech": 3, "noise": 4, "music": 2, "overlap": 0}}
    record = pretrain_dictionary(pairs, tmp_path / "out", settings, seed=0)
    assert record["segments_drawn"] == {"speech": 3, "noise": 4, "music": 2}
    assert record["frames"] == sum(c["frames"] for c in record["segments"].values())
    summary = json.loads((tmp_path / "out" / "dictionary.json").read_text())["settings"]["segments"]
    assert {k: v["active_share"] for k, v in summary.items()} == {"speech": 1.0, "noise": 1.0, "music": 1.0}
    assert summary["noise"]["frames"] == 4 * 30
    W = np.load(tmp_path / "out" / "dictionary.npz")["W"]
    assert W.shape == (F, 4)


def test_per_class_dictionary_gives_each_class_its_own_atoms(tmp_path):
    """nmf.per_class: speech frames have energy in bins 1-2 only, noise frames in bins 4-5 only; with one
    sub-dictionary per class the speech atoms hold (almost) no noise bins and the other way round, and the
    atoms' classes are recorded; the joint NMF (the paper) does not promise that."""
    T = 2000
    y = np.zeros((T, len(CLASSES)), np.int8)
    y[: T // 2, SP] = 1
    y[T // 2:, NO] = 1
    spec, tgt = tmp_path / "s.h5", tmp_path / "t.h5"
    x = np.full((T, F), 1e-3, np.float32)
    rng = np.random.default_rng(0)
    x[: T // 2, 1:3] = rng.uniform(0.5, 1.0, (T // 2, 2))
    x[T // 2:, 4:6] = rng.uniform(0.5, 1.0, (T // 2, 2))
    with h5py.File(spec, "w") as s, h5py.File(tgt, "w") as t:
        s.attrs["freqs_hz"] = np.linspace(0, 8000, F)
        s.attrs["n_fft"], s.attrs["win_length"] = 10, 10
        s["f"], t["f"] = x, y
    settings = {"components": 5, "iterations": 30, "min_seconds": 0.5, "per_class": True,
                "segments": {"speech": 4, "noise": 4, "music": 0, "overlap": 0}}
    record = pretrain_dictionary([(spec, tgt)], tmp_path / "out", settings, seed=0)
    assert record["atom_classes"] == ["speech", "speech", "speech", "noise", "noise"]
    assert json.loads((tmp_path / "out" / "dictionary.json").read_text())["settings"]["atom_classes"] == record["atom_classes"]
    W = np.load(tmp_path / "out" / "dictionary.npz")["W"]
    assert W.shape == (F, 5)
    share = lambda cols, bins: float(np.square(W[bins][:, cols]).sum() / np.square(W[:, cols]).sum())  # noqa: E731
    assert share([0, 1, 2], [1, 2]) > 0.95 and share([3, 4], [4, 5]) > 0.95
    with pytest.raises(InputError, match="per_class"):
        pretrain_dictionary([(spec, tgt)], tmp_path / "out2", {**settings, "components": 1}, seed=0)
