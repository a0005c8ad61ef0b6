"""The faithfulness test can fail: a known-answer judge that rests on one band passes the explanation that
points at that band and fails one that points elsewhere, with intervals that do not overlap; a relevance
shuffled across atoms scores as random; the rankings, masks, sampling and statistics by hand."""

import numpy as np
import pandas as pd
import pytest

from proxyseg.cli import main
from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, SAMPLE_RATE
from proxyseg.dsp import stft, stft_frequencies
from proxyseg.explain.faithfulness import (atom_bin_order, bootstrap, draw_segments, faithfulness_rows,
                                           faithfulness_summary, map_bin_order, prefix_mask, verdicts,
                                           write_judge_baselines)
from proxyseg.explain.judges import Judge

BAND = (1000.0, 2000.0)


class BandJudge(Judge):
    """A hand-built segmenter whose 'speech' rests on one band only: its logit is 8 x (the share of each
    frame's energy in 1-2 kHz - 0.3). It knows speech only and hears 0.5 s around a segment."""

    name = "band"
    classes = ("speech",)

    def context(self, segment_seconds):
        return 0.5, 0.5

    def logits(self, wavs):
        spec = stft(np.asarray(wavs, dtype=np.float32)).abs().square().double().numpy()  # (B, F, T)
        f = stft_frequencies(512)
        band = (f >= BAND[0]) & (f < BAND[1])
        share = spec[:, band].sum(1) / (spec.sum(1) + 1e-9)
        out = np.full((share.shape[0], 4, share.shape[1]), np.nan)
        out[:, 0] = 8.0 * (share - 0.3)
        return out


CENTRES = [1500, 300, 600, 3500, 5500]  # atom 0 lies in the judge's band, the others outside


@pytest.fixture
def band_files(tmp_path, narrowband_dictionary, one_file_split):
    """10 s of tones at CENTRES, the 1.5 kHz one holding half the energy (the judge decides speech), with
    narrow-band atoms at the same centres; H all ones; speech labelled everywhere."""
    W = narrowband_dictionary(CENTRES)
    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    x = 0.2 * np.sin(2 * np.pi * 1500 * t) + sum(0.1 * np.sin(2 * np.pi * f * t) for f in CENTRES[1:])
    return one_file_split(W, x.astype(np.float32), active=[0]), W


def _run(tmp_path, band_files, linear_proxy, atom, name, **kw):
    root, W = band_files
    linear_proxy(root / f"{name}.pt", W, {0: [(atom, 3.0)]})
    items = [("demo", root / "inf.h5", root / "spec.h5", root / "targets.h5", root / "manifest.tsv")]
    settings = {"segments": 8, "segment_seconds": 1.0, "draws": 5}
    curves, segments = faithfulness_rows(root / f"{name}.pt", items, BandJudge(), settings, seed=0, system=name,
                                         **kw)
    summary = faithfulness_summary(curves, segments).set_index(["metric"])
    return curves, segments, summary


def test_known_answer_passes_the_right_band_and_fails_the_wrong_one(tmp_path, band_files, linear_proxy):
    _, seg_good, good = _run(tmp_path, band_files, linear_proxy, 0, "good")
    _, _, bad = _run(tmp_path, band_files, linear_proxy, 1, "bad")
    assert (seg_good["decided_frames"] > 0).all() and len(seg_good) == 8
    g, b = good.loc["auc_gap_random_active"], bad.loc["auc_gap_random_active"]
    assert g["segments"] == 8 and g["ci_low"] > 0  # relevance order beats random active atoms
    assert b["ci_high"] < 0  # the wrong band: worse than random
    assert g["ci_low"] > b["ci_high"]  # the intervals do not overlap
    # removing the band's half of the energy flips every decided frame; the wrong band's half flips none
    assert good.loc["flip_rate_50", "value"] == pytest.approx(1.0)
    assert bad.loc["flip_rate_50", "value"] == pytest.approx(0.0)
    # the judge's own evidence (occlusion here) also finds the band: the good explanation is as strong
    assert good.loc["ratio_to_saliency_50", "value"] > 0.8
    assert bad.loc["ratio_to_saliency_50", "value"] < 0
    assert good.loc["auc_gap_loudest", "ci_low"] > 0 and good.loc["ins_auc_gap_random_active", "ci_low"] > 0
    # L-MAC's figures: the good explanation kept alone keeps (raises) the decision, removed it drops it
    assert good.loc["AI", "value"] == 100.0 and good.loc["AD", "value"] == 0.0 and good.loc["fid_in", "value"] == 1.0
    assert bad.loc["fid_in", "value"] == 0.0 and good.loc["FF", "value"] > bad.loc["FF", "value"]
    # the sanity gate: this hand-set proxy's Psi is random (its H does not follow the bins of its atoms), so
    # removing them does not move it the way its H-level read-out says: flagged (< 0.5), as it should be
    assert good.loc["proxy_sanity", "value"] < 0.5 and good.loc["proxy_sanity", "judge"] == "proxy"
    assert set(good["judge"]) == {"band", "proxy"}


def test_shuffled_relevance_scores_as_random(tmp_path, band_files, linear_proxy):
    _, _, good = _run(tmp_path, band_files, linear_proxy, 0, "good")
    _, _, shuffled = _run(tmp_path, band_files, linear_proxy, 0, "shuffled", shuffle_relevance=True)
    s = shuffled.loc["auc_gap_random_active"]
    assert s["ci_low"] < 0 < s["ci_high"] or abs(s["value"]) < 0.25 * good.loc["auc_gap_random_active", "value"]
    assert s["value"] < good.loc["auc_gap_random_active", "ci_low"]


class CountingJudge(BandJudge):
    """BandJudge that counts the waveforms it is asked about."""

    heard = 0

    def logits(self, wavs):
        CountingJudge.heard += len(wavs)
        return super().logits(wavs)


def test_the_judges_part_written_once_gives_every_proxy_the_same_rows(tmp_path, band_files, linear_proxy):
    root, W = band_files
    linear_proxy(root / "p.pt", W, {0: [(0, 3.0)]})
    items = [("demo", root / "inf.h5", root / "spec.h5", root / "targets.h5", root / "manifest.tsv")]
    settings = {"segments": 4, "segment_seconds": 1.0, "draws": 2}
    CountingJudge.heard = 0
    alone = faithfulness_rows(root / "p.pt", items, CountingJudge(), settings, seed=3, system="p")
    heard_alone = CountingJudge.heard
    # the judge's part: the same draw without the proxy's activations
    judge_items = [("demo", "-", *items[0][2:])]
    assert write_judge_baselines(judge_items, CountingJudge(), tmp_path / "judge.h5", settings, seed=3) == 4
    CountingJudge.heard = 0
    shared = faithfulness_rows(root / "p.pt", items, CountingJudge(), settings, seed=3, system="p",
                               shared=tmp_path / "judge.h5")
    for a, b in zip(alone, shared):
        pd.testing.assert_frame_equal(a, b)
    assert 0 < CountingJudge.heard < heard_alone  # the floor, loudest bins, saliency, base not asked again
    # written with other energy levels: every segment's fingerprint differs, so all is judged here again
    write_judge_baselines(judge_items, CountingJudge(), tmp_path / "stale.h5", {**settings, "energy_levels": [0.5]},
                          seed=3)
    CountingJudge.heard = 0
    stale = faithfulness_rows(root / "p.pt", items, CountingJudge(), settings, seed=3, system="p",
                              shared=tmp_path / "stale.h5")
    pd.testing.assert_frame_equal(alone[0], stale[0])
    assert CountingJudge.heard == heard_alone


def test_summary_columns_are_the_contract(tmp_path, band_files, linear_proxy):
    curves, segments, _ = _run(tmp_path, band_files, linear_proxy, 0, "good")
    summary = faithfulness_summary(curves, segments)
    assert list(summary.columns) == ["system", "judge", "class", "metric", "value", "ci_low", "ci_high", "segments"]
    need = {"auc_gap_random_active", "auc_gap_loudest", "ratio_to_saliency_25", "ratio_to_saliency_50",
            "flip_rate_50", "proxy_sanity", "AI", "AD", "AG", "FF", "fid_in"}
    assert need <= set(summary["metric"])
    assert set(curves["method"]) == {"explanation", "random_active", "loudest", "saliency"}  # no other class
    assert set(curves["direction"]) == {"deletion", "insertion"}
    assert sorted(curves["level"].unique()) == [0.1, 0.25, 0.5, 0.75]


def test_verdicts_pass_only_what_beats_random_and_moves_the_proxy():
    def rows(system, low, sanity):
        return [{"system": system, "judge": "teacher", "class": "speech", "metric": "auc_gap_random_active",
                 "value": low + 0.1, "ci_low": low, "ci_high": low + 0.2, "segments": 30},
                {"system": system, "judge": "proxy", "class": "speech", "metric": "proxy_sanity",
                 "value": sanity, "ci_low": sanity - 0.1, "ci_high": sanity + 0.1, "segments": 30}]
    summary = pd.DataFrame(rows("a", 0.05, 0.8) + rows("b", -0.05, 0.8) + rows("c", 0.05, 0.3)
                           + rows("d", 0.05, np.nan))
    got = dict(zip(verdicts(summary)["system"], verdicts(summary)["verdict"]))
    assert got == {"a": "pass", "b": "fail", "c": "not judgeable", "d": "not judgeable"}


def test_atom_bin_order_claims_bins_by_the_first_k():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    H = np.array([[2.0], [1.0]])  # bin 2: atom 0 explains 2/3, atom 1 1/3
    order, key = atom_bin_order(W, H, [1, 0])
    assert key.tolist() == [2, 1, 2] and order.tolist()[0] == 1
    order, key = atom_bin_order(W, H, [1])
    assert key.tolist() == [2, 1, 2]  # bins 0 and 2 never claimed by atom 1 alone: after it
    assert order.tolist() == [1, 2, 0]  # then by the share atom 1 explains (1/3 in bin 2, 0 in bin 0)


def test_map_bin_order_ranks_bins_by_the_relevance_of_the_atoms_that_make_them():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    H = np.array([[2.0], [1.0]])  # bin 2: atom 0 makes 2/3, atom 1 1/3
    order, key = map_bin_order(W, H, np.array([1.0, -1.0]))
    assert key is None and order.tolist() == [0, 2, 1]  # 1, 1/3, -1
    assert map_bin_order(W, H, np.array([-1.0, 1.0]))[0].tolist() == [1, 2, 0]


def _proxy_that_ignores(path, W, deaf, theta):
    """A spectrogram proxy whose Psi is hand-set: H_k follows the log-power of atom k's bins
    (``w_k . gLN(X)``), except the atoms ``deaf``, which are 1 whatever the input; the read-out ``theta``."""
    import torch

    from proxyseg.proxy.model import Proxy

    K = W.shape[1]
    model = Proxy(W.shape[0], torch.from_numpy(W), "fixed", blocks=1, repeats=1, bottleneck=K, hidden=4)
    with torch.no_grad():
        psi = model.psi
        psi.bottleneck.weight.copy_(torch.from_numpy(W.T)[:, :, None])
        psi.bottleneck.bias.zero_()
        psi.bottleneck.weight[list(deaf)] = 0.0
        psi.bottleneck.bias[list(deaf)] = 1.0
        psi.blocks[0].net[-1].weight.zero_()  # the block adds nothing: identity through its residual
        psi.blocks[0].net[-1].bias.zero_()
        psi.head[0].weight.fill_(1.0)  # PReLU with slope 1: identity
        psi.head[1].weight.copy_(torch.eye(K)[:, :, None])
        psi.head[1].bias.zero_()
        model.theta.weight.copy_(torch.as_tensor(theta, dtype=torch.float32)[:, :, None])
        model.theta.bias.fill_(-1.0)
    hp = {**model.hparams, "crop_frames": 50, "input": "spectrogram", "dictionary": "fixed"}
    torch.save({"state_dict": model.state_dict(), "hparams": hp}, path)
    return path


def test_occlusion_relevance_finds_what_the_proxy_rests_on_where_theta_alone_misleads(tmp_path, band_files):
    """Theta weighs atoms 1-3 (outside the judge's band) above atom 0 (in it), but Psi makes their activations
    constants: the paper's relevance (Theta x mean H) explains with atoms 1-3 and fails the judge; relevance
    by occlusion through the whole proxy finds atom 0, and passes (explain.relevance: occlusion)."""
    root, W = band_files
    theta = np.zeros((4, W.shape[1]))
    theta[0, :4] = [1.0, 4.0, 4.0, 4.0]
    path = _proxy_that_ignores(root / "deaf.pt", W, deaf=[1, 2, 3], theta=theta)
    items = [("demo", root / "inf.h5", root / "spec.h5", root / "targets.h5", root / "manifest.tsv")]
    settings = {"segments": 8, "segment_seconds": 1.0, "draws": 5}
    got = {}
    for relevance in ("linear", "occlusion"):
        curves, segments = faithfulness_rows(path, items, BandJudge(), settings, seed=0, system=relevance,
                                             explain={"relevance": relevance})
        got[relevance] = faithfulness_summary(curves, segments).set_index("metric")
    assert got["linear"].loc["auc_gap_random_active", "ci_high"] < 0
    assert got["linear"].loc["proxy_sanity", "value"] < 0.5  # and the sanity gate flags it
    assert got["occlusion"].loc["auc_gap_random_active", "ci_low"] > 0
    assert got["occlusion"].loc["flip_rate_50", "value"] == pytest.approx(1.0)
    # the removal moves the proxy as its own read-out says: the sanity gate holds with occlusion
    assert got["occlusion"].loc["proxy_sanity", "value"] >= 0.5
    # the same with bins ranked by the explanation's map (faithfulness.bins: map)
    curves, segments = faithfulness_rows(path, items, BandJudge(), {**settings, "bins": "map"}, seed=0,
                                         system="map", explain={"relevance": "occlusion"})
    by_map = faithfulness_summary(curves, segments).set_index("metric")
    assert by_map.loc["auc_gap_random_active", "ci_low"] > 0


def test_prefix_mask_reaches_the_energy_level():
    energy = np.array([[4.0, 3.0], [2.0, 1.0]])
    order = np.array([3, 2, 1, 0])
    mask, got, n = prefix_mask(order, energy, 0.25)
    assert n == 2 and got == pytest.approx(0.3) and mask.tolist() == [[False, False], [True, True]]
    mask, got, n = prefix_mask(order, energy, 1.0)
    assert mask.all() and got == pytest.approx(1.0)


def test_segments_are_drawn_across_files_not_the_first_of_a_sorted_list():
    targets = {f"f{i}": np.ones((500, 4), np.int8) for i in range(6)}
    got = draw_segments(targets, 50, 12, np.random.default_rng(0))["speech"]
    files = pd.Series([u for u, _ in got]).value_counts()
    assert len(got) == 12 and len(files) == 6 and files.max() == 2  # stratified: two per file
    assert sorted(s for _, s in got) != [0] * 6 + [50] * 6  # not the first windows of each file
    assert draw_segments(targets, 50, 12, np.random.default_rng(0)) == draw_segments(targets, 50, 12,
                                                                                     np.random.default_rng(0))


def test_bootstrap_interval_and_ratio():
    v, lo, hi = bootstrap(np.r_[np.ones(20), np.zeros(20)])
    assert v == 0.5 and 0.3 < lo < 0.5 < hi < 0.7
    v, lo, hi = bootstrap(np.full(10, 2.0), paired=np.full(10, 4.0))
    assert v == lo == hi == 0.5
    assert np.isnan(bootstrap([np.nan])[0])


def test_settings_are_checked():
    from proxyseg.settings import Faithfulness

    with pytest.raises(InputError, match="energy_levels"):
        Faithfulness.parse({"energy_levels": [0.5, 0.25]})
    with pytest.raises(InputError, match="refill"):
        Faithfulness.parse({"refill": "noise"})
    with pytest.raises(InputError, match="bins"):
        Faithfulness.parse({"bins": "atom"})
    with pytest.raises(InputError, match="energy_levels"):
        Faithfulness.parse({"energy_levels": [0.0, 0.5]})


def test_cli_writes_the_tables_and_a_figure_per_proxy(tmp_path, band_files, linear_proxy):
    root, W = band_files
    linear_proxy(root / "p.pt", W, {0: [(0, 3.0)]})
    curves, segments = faithfulness_rows(root / "p.pt", [("demo", root / "inf.h5", root / "spec.h5",
                                                          root / "targets.h5", root / "manifest.tsv")],
                                         BandJudge(), {"segments": 3, "segment_seconds": 1.0, "draws": 2}, system="p")
    from proxyseg.core.tables import write_table
    from proxyseg.explain.faithfulness import segments_path

    write_table(curves, root / "p.tsv")
    write_table(segments, segments_path(root / "p.tsv"))
    out = {k: tmp_path / f"t_{k}" for k in ("tsv", "md", "summary.tsv", "curves.tsv", "png")}
    assert main(["faithfulness-table", str(root / "p.tsv"), "--out-tsv", str(out["tsv"]), "--out-md", str(out["md"]),
                 "--out-summary", str(out["summary.tsv"]), "--out-curves", str(out["curves.tsv"]),
                 "--figures", str(out["png"])]) == 0
    summary = pd.read_csv(out["summary.tsv"], sep="\t")
    assert set(summary["class"]) == {"speech"} and set(summary["class"]) <= set(CLASSES)
    assert out["png"].stat().st_size > 5000 and "logit_drop_50" in out["md"].read_text()
    table = pd.read_csv(out["tsv"], sep="\t")
    assert {"explanation", "random_active", "saliency", "loudest"} <= set(table["removal"])


def test_teacher_judge_runs_wavlm_and_the_teacher_with_its_saliency(tmp_path):
    import h5py
    import torch

    from proxyseg.explain.judges import TeacherJudge
    from proxyseg.features.demo_wavlm import build_untrained_wavlm
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
    assert judge.context(1.0) == (0.5, 0.5)  # its 2 s training crop, centred on the segment
    wavs = np.random.default_rng(0).normal(0, 0.1, (3, 320 * 49 + 400)).astype(np.float32)
    logits = judge.logits(wavs)
    assert logits.shape == (3, 4, 50) and np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1])  # different clips, different judgements
    assert tuple(judge.features(wavs).shape) == (3, 32, 50)  # what a WavLM-input proxy reads
    sal = judge.saliency(wavs[0], 0, slice(10, 30), np.ones(20, bool), 512, 400)
    assert sal.shape == (257, 20) and np.isfinite(sal).all()
    assert (sal > 0).any() and (sal < 0).any()  # signed: evidence for and against the class
    assert all(p.grad is None for p in judge.net.parameters())  # the models stay frozen


def test_false_alarms_name_the_band_and_removing_it_stops_them(tmp_path, band_files, linear_proxy):
    """A 'music' file where the band judge says speech: the per-piece table names 1-2 kHz and removing the
    explanation stops every false alarm, random atoms of the same energy fewer; the figure is written."""
    from proxyseg.explain.falsealarms import write_false_alarms

    root, W = band_files
    linear_proxy(root / "p.pt", W, {0: [(0, 3.0)]})
    items = [("music", root / "inf.h5", root / "spec.h5", root / "targets.h5", root / "manifest.tsv", "-")]
    pieces, pooled = write_false_alarms(root / "p.pt", items, BandJudge(), tmp_path / "fa.tsv", tmp_path / "pooled.tsv",
                                        tmp_path / "fa.png", {"segments": 6, "segment_seconds": 1.0}, system="p")
    row = pieces.set_index("piece").loc["a"]
    assert row["segments"] == 6 and row["top_band"] == "1000-2000 Hz" and row["band_1000_2000"] > 0.9
    assert row["speech_minutes"] == pytest.approx(row["minutes"])  # the targets say speech everywhere
    flip = pooled.set_index("removal")["flip_rate"]
    assert flip["explanation"] == pytest.approx(1.0) and flip["random_active"] < 0.75
    assert (tmp_path / "fa.png").stat().st_size > 0 and pd.read_csv(tmp_path / "fa.tsv", sep="\t").shape[0] == 1


class SilentJudge(BandJudge):
    """A judge that never says speech."""

    def logits(self, wavs):
        return super().logits(wavs) * 0.0 - 5.0


def test_false_alarms_where_the_judge_never_fires_are_an_empty_table_not_an_error(tmp_path, band_files, linear_proxy):
    from proxyseg.explain.falsealarms import write_false_alarms

    root, W = band_files
    linear_proxy(root / "p.pt", W, {0: [(0, 3.0)]})
    items = [("music", root / "inf.h5", root / "spec.h5", root / "targets.h5", root / "manifest.tsv", "-")]
    pieces, pooled = write_false_alarms(root / "p.pt", items, SilentJudge(), tmp_path / "fa.tsv",
                                        tmp_path / "pooled.tsv", tmp_path / "fa.png",
                                        {"segments": 3, "segment_seconds": 1.0}, system="p")
    assert pooled.empty and pieces["segments"].tolist() == [0] and (tmp_path / "fa.png").exists()
