"""Teacher: masked loss, model shapes and size, data crops, training, sliding-window dump."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from proxyseg.core.errors import InputError
from proxyseg.core.provenance import portable_path
from proxyseg.nn.tcn import TCN, GlobalLayerNorm, TemporalBlock, count_parameters
from proxyseg.teacher.data import DevCrops, TrainCrops, scan_pairs
from proxyseg.teacher.dump import dump_teacher, sliding_window_average, window_starts
from proxyseg.teacher.model import LayerFusion, Teacher, load_teacher
from proxyseg.teacher import train as teacher_train
from proxyseg.teacher.train import masked_bce, masked_bce_sum, train_teacher
from proxyseg.training import RESUME_NAME
from synthetic import class_activity

L, D = 2, 16


# --------------------------------------------------------------------------------------------- helpers
def _synthetic_file(rng, n, informative=True):
    """States (n, L, D) where dims 0..3 of every layer encode the activity of the 4 classes, + targets.

    Segments are short against a crop so that each crop holds both states of a class: the per-crop
    instance norm removes each dimension's mean, so only the contrast within a crop carries information.
    """
    act = class_activity(rng, n)
    states = rng.normal(0, 1, (n, L, D)).astype(np.float32)
    if informative:
        states[:, :, :4] += 3.0 * (2 * act[:, None, :] - 1)
    return states.astype(np.float16), act


def _write_pair(tmp_path, name, lengths, seed, unknown_class=None, targets_delta=None):
    rng = np.random.default_rng(seed)
    feats, targs = tmp_path / f"{name}_features.h5", tmp_path / f"{name}_targets.h5"
    with h5py.File(feats, "w") as fh, h5py.File(targs, "w") as th:
        fh.attrs["model"] = "synthetic"
        fh.attrs["layers"] = np.arange(L)
        for i, n in enumerate(lengths):
            states, act = _synthetic_file(rng, n)
            if unknown_class is not None:
                act[:, unknown_class] = -1
            fh.create_dataset(f"{name}{i}", data=states)
            nt = n + (targets_delta or {}).get(i, 0)
            t = np.full((nt, 4), -1, dtype=np.int8)
            t[:min(n, nt)] = act[:min(n, nt)]
            th.create_dataset(f"{name}{i}", data=t)
    return feats, targs


SMALL = {"crop_seconds": 1.0, "batch_size": 8, "lr": 3e-3, "max_epochs": 6, "patience": 10,
         "steps_per_epoch": 6,
         "bottleneck": 16, "hidden": 32, "kernel": 3, "blocks": 2, "repeats": 1}


# ------------------------------------------------------------------------------------------- (1) loss
def test_masked_bce_ignores_unknown_entries():
    torch.manual_seed(0)
    targets = torch.randint(-1, 2, (3, 4, 50)).float()
    logits = torch.randn(3, 4, 50, requires_grad=True)
    loss = masked_bce(logits, targets)
    known = targets != -1
    ref = F.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert torch.allclose(loss, ref, atol=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~known] == 0)
    assert torch.any(logits.grad[known] != 0)

    # changing the logits where the target is unknown changes nothing
    other = logits.detach().clone()
    other[~known] = torch.randn(int((~known).sum())) * 100
    assert torch.allclose(masked_bce(other, targets), loss.detach(), atol=1e-6)


def test_masked_bce_nothing_known_is_zero_with_grad():
    logits = torch.randn(2, 4, 10, requires_grad=True)
    loss = masked_bce(logits, torch.full((2, 4, 10), -1.0))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_masked_bce_pos_weight_scales_only_known_positives():
    torch.manual_seed(1)
    targets = torch.randint(-1, 2, (2, 4, 30)).float()
    logits = torch.randn(2, 4, 30)
    weight = torch.tensor([1.0, 1.0, 1.0, 3.0])[:, None]
    total, count = masked_bce_sum(logits, targets, weight)
    plain = F.binary_cross_entropy_with_logits(logits, targets.clamp(min=0), reduction="none")
    factor = torch.where(targets == 1, weight.expand_as(logits[0]), torch.ones(()))  # pos x w, neg x 1
    expected = torch.where(targets >= 0, plain * factor, torch.zeros(())).sum()
    assert count == (targets >= 0).sum()
    assert torch.allclose(total, expected, rtol=1e-5)
    assert total > masked_bce_sum(logits, targets)[0]  # overlap positives exist, so weighting adds loss


# ------------------------------------------------------------------------------------------ (2) model
def test_layer_fusion_weights_and_instance_norm():
    torch.manual_seed(0)
    fusion = LayerFusion(5, 8)
    with torch.no_grad():
        fusion.logits.copy_(torch.randn(5))
    w = fusion.weights()
    assert torch.all(w >= 0) and torch.isclose(w.sum(), torch.tensor(1.0))
    states = torch.randn(3, 40, 5, 8) * 4 + 2
    out = fusion(states)
    assert out.shape == (3, 8, 40)
    assert torch.allclose(out.mean(-1), torch.zeros(3, 8), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(3, 8), atol=1e-3)
    # the pre-normalisation mix is the softmax-weighted sum of the layers
    mixed = fusion.mix(states)
    assert torch.allclose(mixed, (states * w[None, None, :, None]).sum(2).transpose(1, 2), atol=1e-5)


def test_tcn_length_and_parameter_count():
    # METHOD section 3 defaults with S of 1024 channels: 331,939 parameters (the paper's "about 0.33 M").
    tcn = TCN(1024, 4)
    assert count_parameters(tcn) == 331_939
    assert len(tcn.blocks) == 15
    assert [b.net[3].dilation[0] for b in tcn.blocks] == [1, 2, 4] * 5
    teacher = Teacher(25, 1024)
    assert teacher.num_parameters() == {"total": 331_964, "tcn": 331_939, "fusion": 25}
    for t in (1, 7, 200, 333):
        assert tcn(torch.randn(2, 1024, t)).shape == (2, 4, t)
    logits, s = Teacher(3, 16, bottleneck=8, hidden=16)(torch.randn(2, 37, 3, 16))
    assert logits.shape == (2, 4, 37) and s.shape == (2, 16, 37)
    with pytest.raises(ValueError):
        TemporalBlock(8, 16, kernel=4)


@pytest.mark.parametrize("kernel,dilation,length", [(3, 1, 37), (3, 4, 37), (5, 2, 11), (1, 1, 9), (3, 8, 3)])
def test_written_out_block_matches_its_conv1d_layers(kernel, dilation, length):
    # The block computes its convolutions by hand for speed; outputs and every gradient must match what
    # its own nn.Conv1d layers (the checkpoint's parameters) compute.
    torch.manual_seed(kernel * 10 + dilation)
    block = TemporalBlock(8, 16, kernel, dilation)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    x = torch.randn(3, 8, length, requires_grad=True)
    ours, ref = block(x), x + block.net(x)
    assert torch.allclose(ours, ref, atol=1e-5)
    g = torch.randn_like(ref)
    params = [x, *block.parameters()]
    for a, b in zip(torch.autograd.grad(ours, params, g), torch.autograd.grad(ref, params, g)):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_global_layer_norm_normalises_over_channels_and_time():
    gln = GlobalLayerNorm(6)
    x = torch.randn(3, 6, 20) * 5 + 3
    y = gln(x)
    assert torch.allclose(y.mean((1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var((1, 2), unbiased=False), torch.ones(3), atol=1e-4)


def test_teacher_rebuilds_from_hparams():
    m = Teacher(3, 16, bottleneck=8, hidden=16, blocks=2, repeats=2)
    m2 = Teacher.from_hparams({**m.hparams, "crop_frames": 50})
    m2.load_state_dict(m.state_dict())
    assert m2.hparams == m.hparams


# ------------------------------------------------------------------------------------------- data
def test_crops_padding_lengths_and_errors(tmp_path, caplog):
    feats, targs = _write_pair(tmp_path, "a", [30, 120], seed=1, targets_delta={1: -5})
    with caplog.at_level(logging.WARNING, logger="proxyseg.teacher"):
        entries, nl, d = scan_pairs([(feats, targs)])
    assert (nl, d) == (L, D)
    assert {e.uri: e.num_frames for e in entries} == {"a0": 30, "a1": 115}
    assert sum("differ in length" in r.message for r in caplog.records) == 1

    dev = DevCrops([(feats, targs)], crop_frames=50)
    assert [dev.entries[k].uri for k, _ in dev.items] == ["a0", "a1", "a1", "a1"]
    states, t = dev[0]
    assert states.dtype == torch.float32 and states.shape == (50, L, D) and t.shape == (50, 4)
    assert torch.all(t[30:] == -1) and torch.all(states[30:] == 0) and torch.all(t[:30] >= 0)
    with h5py.File(feats, "r", locking=False) as fh:
        np.testing.assert_array_equal(states[:30].numpy(), fh["a0"][:].astype(np.float32))
    states, t = dev[3]  # a1 frames 100..115 then padding
    assert torch.all(t[15:] == -1) and torch.all(t[:15] >= 0)

    train = TrainCrops([(feats, targs)], crop_frames=50, num_items=40, seed=3)
    train.set_epoch(1)
    first = [train.locate(i) for i in range(40)]
    assert first == [train.locate(i) for i in range(40)]
    for k, start in first:
        assert 0 <= start <= max(train.entries[k].num_frames - 50, 0)
    train.set_epoch(2)
    assert first != [train.locate(i) for i in range(40)]

    # a URI in one file but not the other
    bad_t = tmp_path / "bad_targets.h5"
    with h5py.File(bad_t, "w") as th:
        th.create_dataset("a0", data=np.zeros((30, 4), np.int8))
        th.create_dataset("zzz", data=np.zeros((30, 4), np.int8))
    with pytest.raises(InputError) as err:
        scan_pairs([(feats, bad_t)])
    assert str(feats) in str(err.value) and str(bad_t) in str(err.value)


def test_dataloader_workers_match_single_process(tmp_path):
    feats, targs = _write_pair(tmp_path, "a", [80, 150], seed=2)
    ds = TrainCrops([(feats, targs)], crop_frames=40, num_items=12, seed=5)
    ds.set_epoch(1)
    single = [b for b in torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)]
    ds.close()
    multi = [b for b in torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)]
    for (s1, t1), (s2, t2) in zip(single, multi):
        assert torch.equal(s1, s2) and torch.equal(t1, t2)


def test_preloaded_crops_equal_streamed_crops(tmp_path, caplog):
    feats, targs = _write_pair(tmp_path, "a", [80, 150], seed=2, targets_delta={1: -3})
    streamed = TrainCrops([(feats, targs)], crop_frames=40, num_items=12, seed=5)
    preloaded = TrainCrops([(feats, targs)], crop_frames=40, num_items=12, seed=5)
    assert preloaded.preload(max_mb=1)
    for ds in (streamed, preloaded):
        ds.set_epoch(3)
    for i in range(12):
        assert all(torch.equal(u, v) for u, v in zip(streamed[i], preloaded[i]))
    dev = DevCrops([(feats, targs)], crop_frames=40)
    dev_memory = DevCrops([(feats, targs)], crop_frames=40)
    assert dev_memory.preload(max_mb=1)
    assert all(torch.equal(u, v) for i in range(len(dev)) for u, v in zip(dev[i], dev_memory[i]))
    # over the limit: nothing is loaded, crops keep coming from HDF5
    too_big = TrainCrops([(feats, targs)], crop_frames=40, num_items=12, seed=5)
    with caplog.at_level(logging.INFO, logger="proxyseg.teacher"):
        assert not too_big.preload(max_mb=1e-4)
    assert "streaming crops from HDF5" in caplog.text and too_big._memory is None
    too_big.set_epoch(3)
    assert torch.equal(too_big[2][0], streamed[2][0])


# --------------------------------------------------------------------------------------- (3) training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    train_pair = _write_pair(tmp, "tr", [400, 300], seed=10, unknown_class=2)
    dev_pair = _write_pair(tmp, "dv", [200, 30], seed=11, unknown_class=2)
    out1 = tmp / "run1"
    rec = train_teacher([train_pair], [dev_pair], out1, SMALL, seed=7)
    return tmp, train_pair, dev_pair, out1, rec


def test_training_writes_outputs_and_learns(trained):
    tmp, _, _, out, rec = trained
    for name in ("model.pt", "curve.tsv", "curve.png", "train.json"):
        assert (out / name).is_file()
    assert not list(out.glob(".*tmp*"))
    rows = [line.split("\t") for line in (out / "curve.tsv").read_text().splitlines()]
    assert rows[0] == ["epoch", "train_loss", "dev_loss", "lr", "seconds"]
    dev = [float(r[2]) for r in rows[1:]]
    assert len(dev) == SMALL["max_epochs"]
    assert min(dev) < 0.8 * dev[0], dev
    info = json.loads((out / "train.json").read_text())
    assert info["best_epoch"] == 1 + int(np.argmin(dev))
    assert info["best_dev_loss"] == pytest.approx(min(dev), abs=1e-5)
    assert info["seed"] == 7 and info["device"] == "cpu" and info["num_params"] > 0
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert set(ckpt) == {"state_dict", "hparams", "provenance"}
    assert ckpt["hparams"]["crop_frames"] == 50 and ckpt["hparams"]["num_layers"] == L
    model, _ = load_teacher(out / "model.pt", "cpu")
    assert not model.training


def test_training_is_deterministic(trained):
    tmp, train_pair, dev_pair, out1, _ = trained
    out2 = tmp / "run2"
    train_teacher([train_pair], [dev_pair], out2, SMALL, seed=7)
    a = torch.load(out1 / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(out2 / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_streaming_training_matches_preloaded_training(trained):
    tmp, train_pair, dev_pair, out1, _ = trained
    out = tmp / "streamed"
    train_teacher([train_pair], [dev_pair], out, SMALL, seed=7, runtime={"preload_mb": 0})
    a = torch.load(out1 / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_rejects_unknown_setting(tmp_path):
    pair = _write_pair(tmp_path, "x", [60], seed=0)
    with pytest.raises(InputError):
        train_teacher([pair], [pair], tmp_path / "out", {"learning_rate": 1.0}, seed=0)


def test_regularised_training_learns_and_rejects_bad_values(trained, tmp_path):
    """Channel dropout and weight decay (options for small corpora) still learn; bad values are refused."""
    _, train_pair, dev_pair, _, _ = trained
    rec = train_teacher([train_pair], [dev_pair], tmp_path / "reg", {**SMALL, "dropout": 0.2, "weight_decay": 0.01},
                        seed=7)
    dev = [float(line.split("\t")[2]) for line in (tmp_path / "reg" / "curve.tsv").read_text().splitlines()[1:]]
    assert min(dev) < 0.8 * dev[0], dev
    assert rec["settings"]["dropout"] == 0.2
    with pytest.raises(InputError, match=r"teacher\.dropout: 1.0 must be < 1"):
        train_teacher([train_pair], [dev_pair], tmp_path / "bad", {**SMALL, "dropout": 1.0}, seed=7)


def test_cosine_schedule_and_pos_weight_train_and_are_recorded(trained, tmp_path):
    """lr decays from lr to ~0 over max_epochs (logged per epoch); pos_weight is checked and recorded."""
    _, train_pair, dev_pair, _, _ = trained
    rec = train_teacher([train_pair], [dev_pair], tmp_path / "cos",
                        {**SMALL, "lr_schedule": "cosine", "pos_weight": {"overlap": 2.0}}, seed=7)
    rows = [line.split("\t") for line in (tmp_path / "cos" / "curve.tsv").read_text().splitlines()[1:]]
    lrs = [float(r[3]) for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-6 < lrs[0] < SMALL["lr"]
    dev = [float(r[2]) for r in rows]
    assert min(dev) < 0.8 * dev[0], dev
    assert rec["settings"]["pos_weight"] == {"overlap": 2.0} and rec["settings"]["lr_schedule"] == "cosine"
    for bad in ({"laughter": 2.0}, {"overlap": "high"}, {"overlap": 0}, [2.0]):
        with pytest.raises(InputError, match="pos_weight"):
            train_teacher([train_pair], [dev_pair], tmp_path / "bad", {**SMALL, "pos_weight": bad}, seed=7)
    with pytest.raises(InputError, match="lr_schedule"):
        train_teacher([train_pair], [dev_pair], tmp_path / "bad", {**SMALL, "lr_schedule": "step"}, seed=7)


def test_weight_averaging_learns_and_saves_the_averaged_weights(trained, tmp_path):
    """ema > 0: the dev loss and the checkpoint are those of the averaged weights, which still learn."""
    _, train_pair, dev_pair, out_plain, _ = trained
    rec = train_teacher([train_pair], [dev_pair], tmp_path / "ema", {**SMALL, "ema": 0.8}, seed=7)
    dev = [float(line.split("\t")[2]) for line in (tmp_path / "ema" / "curve.tsv").read_text().splitlines()[1:]]
    assert min(dev) < 0.8 * dev[0], dev
    assert rec["settings"]["ema"] == 0.8
    averaged = torch.load(tmp_path / "ema" / "model.pt", weights_only=True)["state_dict"]
    plain = torch.load(out_plain / "model.pt", weights_only=True)["state_dict"]
    assert averaged.keys() == plain.keys()  # a plain Teacher state dict (no n_averaged), same layout
    assert any(not torch.equal(averaged[k], plain[k]) for k in plain)  # same seed, other weights
    model, _ = load_teacher(tmp_path / "ema" / "model.pt", "cpu")
    assert not model.training
    with pytest.raises(InputError, match=r"teacher\.ema: 1.0 must be < 1"):
        train_teacher([train_pair], [dev_pair], tmp_path / "bad", {**SMALL, "ema": 1.0}, seed=7)


def test_interrupted_training_leaves_no_output(trained, tmp_path, monkeypatch, kill_in_epoch):
    """A job killed after an improving epoch leaves no model.pt that looks finished, no curve, no temporary:
    only the hidden state to resume from."""
    _, train_pair, dev_pair, _, _ = trained
    calls = kill_in_epoch(teacher_train, 2)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_teacher([train_pair], [dev_pair], out, {**SMALL, "max_epochs": 3}, seed=7)
    assert len(calls) == 2
    assert [p.name for p in out.iterdir()] == [RESUME_NAME]


#: every piece of training state at work: EMA, a cosine schedule, dropout (the torch RNG), early stopping
RESUMABLE = {**SMALL, "max_epochs": 12, "patience": 2, "lr": 3e-2, "ema": 0.5, "lr_schedule": "cosine",
             "dropout": 0.2, "weight_decay": 0.01}


def _same_training(a, b):
    """Two output folders hold the same weights, curve (less the times) and train.json (less times, host and
    preload_mb), and no resume state."""
    weights = [torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (a, b)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    curves = [[line.rsplit("\t", 1)[0] for line in (d / "curve.tsv").read_text().splitlines()] for d in (a, b)]
    assert curves[0] == curves[1]
    records = [json.loads((d / "train.json").read_text()) for d in (a, b)]
    for r in records:
        del r["seconds"], r["provenance"]["created"], r["provenance"]["host"]
        del r["runtime"]["preload_mb"]
    assert records[0] == records[1]
    assert not (a / RESUME_NAME).exists() and not (b / RESUME_NAME).exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_killed_and_resumed_training_ends_as_an_uninterrupted_one(
        trained, tmp_path, monkeypatch, caplog, kill_in_epoch):
    """A job killed in epoch 3 (a Slurm time limit) resumes after epoch 2: model, optimizer, schedule, EMA,
    best epoch, curve and random state; it ends with the checkpoint of a run never interrupted. A setting
    that only says how the job runs (preload_mb) may change in between."""
    _, train_pair, dev_pair, _, _ = trained
    train_teacher([train_pair], [dev_pair], tmp_path / "whole", RESUMABLE, seed=7)
    kill_in_epoch(teacher_train, 3)
    with pytest.raises(KeyboardInterrupt):
        train_teacher([train_pair], [dev_pair], tmp_path / "killed", RESUMABLE, seed=7)
    monkeypatch.undo()
    torch.manual_seed(99)  # a new process would not have the killed one's random state
    with caplog.at_level(logging.INFO, logger="proxyseg.teacher"):
        rec = train_teacher([train_pair], [dev_pair], tmp_path / "killed", RESUMABLE, seed=7,
                            runtime={"preload_mb": 0})
    assert "teacher: resuming after epoch 2" in caplog.text and "teacher epoch 1/" not in caplog.text
    assert rec["stopped_early"] and rec["epochs_run"] > 3
    _same_training(tmp_path / "killed", tmp_path / "whole")


@pytest.mark.usefixtures("one_torch_thread")
def test_a_resume_state_of_another_training_is_left_aside(trained, tmp_path, monkeypatch, caplog, kill_in_epoch):
    """Another seed (or other settings, or changed input files): training starts over."""
    _, train_pair, dev_pair, _, _ = trained
    kill_in_epoch(teacher_train, 2)
    with pytest.raises(KeyboardInterrupt):
        train_teacher([train_pair], [dev_pair], tmp_path, {**SMALL, "max_epochs": 2}, seed=7)
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="proxyseg.teacher"):
        train_teacher([train_pair], [dev_pair], tmp_path, {**SMALL, "max_epochs": 2}, seed=8)
    assert "(it differs in seed): starting over" in caplog.text and "teacher epoch 1/2" in caplog.text
    assert (tmp_path / "model.pt").is_file() and not (tmp_path / RESUME_NAME).exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_kill_9_then_rerun_resumes_with_the_same_weights(trained, tmp_path, monkeypatch, caplog):
    """``proxyseg train-teacher`` killed with SIGKILL after epoch 2, then run again: it resumes and ends with
    the checkpoint of a run never killed."""
    _, train_pair, dev_pair, _, _ = trained
    monkeypatch.chdir(tmp_path)
    settings = {**RESUMABLE, "max_epochs": 8, "patience": 8}  # the kill comes long before the end
    cmd = [sys.executable, "-m", "proxyseg.cli", "--threads", "1", "train-teacher", "--train", *map(str, train_pair),
           "--dev", *map(str, dev_pair), "--out-dir", "killed", "--seed", "7", "--settings", json.dumps(settings)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "teacher epoch 2/" in line:
                proc.send_signal(signal.SIGKILL)
                break
        assert proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "killed" / RESUME_NAME).is_file() and not (tmp_path / "killed" / "model.pt").exists()
    with caplog.at_level(logging.INFO, logger="proxyseg.teacher"):
        train_teacher([train_pair], [dev_pair], tmp_path / "killed", settings, seed=7)
    assert "teacher: resuming after epoch" in caplog.text and "teacher epoch 1/" not in caplog.text
    train_teacher([train_pair], [dev_pair], tmp_path / "whole", settings, seed=7)
    _same_training(tmp_path / "killed", tmp_path / "whole")
    assert (tmp_path / "killed" / "model.pt").read_bytes() == (tmp_path / "whole" / "model.pt").read_bytes()


def test_identical_runs_give_identical_checkpoint_bytes(tmp_path, monkeypatch, checkpoint_strings):
    """The same data, settings and seed in another folder (and at another time) give the same model.pt:
    paths are stored relative to the working directory, time and host only in train.json."""
    outs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        monkeypatch.chdir(folder)
        train_pair = _write_pair(folder, "tr", [300], seed=10)  # absolute paths, under the working directory
        dev_pair = _write_pair(folder, "dv", [120], seed=11)
        train_teacher([train_pair], [dev_pair], folder / "out", {**SMALL, "max_epochs": 2}, seed=3)
        outs.append(folder / "out")
    data = (outs[0] / "model.pt").read_bytes()
    assert data == (outs[1] / "model.pt").read_bytes()
    assert str(tmp_path).encode() not in data
    ckpt = torch.load(outs[0] / "model.pt", weights_only=True)
    assert not [s for s in checkpoint_strings(ckpt) if os.path.isabs(s) or str(tmp_path) in s]
    assert not {"created", "host"} & set(ckpt["provenance"])
    assert ckpt["provenance"]["settings"]["train"] == [["tr_features.h5", "tr_targets.h5"]]
    info = json.loads((outs[0] / "train.json").read_text())
    assert info["provenance"]["created"] and "host" in info["provenance"]
    assert info["provenance"]["settings"]["dev"] == [["dv_features.h5", "dv_targets.h5"]]
    assert str(tmp_path) not in (outs[0] / "train.json").read_text()


def test_portable_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert portable_path(tmp_path / "results" / "a.h5") == os.path.join("results", "a.h5")
    assert portable_path("results/./a.h5") == os.path.join("results", "a.h5")
    assert portable_path(tmp_path) == "."
    outside = tmp_path.parent / "corpus" / "b.wav"
    assert portable_path(outside) == str(outside)  # no better name for it: kept
    assert portable_path("microsoft/wavlm-large") == "microsoft/wavlm-large"


# ------------------------------------------------------------------------------------------- (4) dump
def test_window_starts_cover_every_frame():
    assert window_starts(0, 10, 1) == []
    assert window_starts(7, 10, 1) == [0]
    assert window_starts(10, 10, 1) == [0]
    assert window_starts(25, 10, 5) == [0, 5, 10, 15]
    assert window_starts(27, 10, 5) == [0, 5, 10, 15, 17]


def test_sliding_window_average_pointwise_and_window_dependent():
    n, window, step = 57, 20, 4
    src = np.arange(n, dtype=np.float32)[:, None].repeat(3, 1)  # (T, 3): every channel = frame index
    src[:, 1] *= -1

    # a model with no temporal context returns the input itself: averaging must reproduce it exactly
    def pointwise(x):
        return x * 2, x
    logits, s, nw = sliding_window_average(pointwise, src, n, window, step, batch_size=3, aggregate="logits_mean")
    np.testing.assert_allclose(logits, 2 * src, rtol=1e-6)
    np.testing.assert_allclose(s, src, rtol=1e-6)
    starts = window_starts(n, window, step)
    assert nw == len(starts) and starts[-1] == n - window

    # a model whose output is its window's start frame: each frame gets the mean start of its windows
    def window_start(x):
        first = x[:, :1, :1].expand(-1, 2, x.shape[2])
        return first, first
    logits, _, _ = sliding_window_average(window_start, src, n, window, step, batch_size=2, aggregate="logits_mean")
    expected = [np.mean([s0 for s0 in starts if s0 <= t < s0 + window]) for t in range(n)]
    np.testing.assert_allclose(logits[:, 0], expected, rtol=1e-6)


def _sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))


@pytest.mark.parametrize("aggregate", ["prob_hamming", "prob_mean"])
def test_sliding_window_aggregates_probabilities(aggregate):
    """Each frame's probability is the (Hamming-)weighted mean of its windows' probabilities, weighted by
    the frame's position in each window; features are averaged with the same weights."""
    n, window, step = 57, 20, 4
    src = np.zeros((n, 2), dtype=np.float32)

    starts = window_starts(n, window, step)
    seen = []  # windows handed to the forward so far (they come in order, a batch at a time)

    def per_start(x):  # logits and S of a window: a function of its start, the same on all its frames
        vals = torch.tensor([0.25 * (s0 - 20) for s0 in starts[len(seen):len(seen) + x.shape[0]]])
        seen.extend(range(x.shape[0]))
        out = vals[:, None, None].expand(-1, 2, x.shape[2]).float()
        return out, out

    logits, feats, _ = sliding_window_average(per_start, src, n, window, step, batch_size=3, aggregate=aggregate)
    weights = np.hamming(window) if aggregate == "prob_hamming" else np.ones(window)
    for t in range(n):
        ws = [(weights[t - s0], 0.25 * (s0 - 20)) for s0 in starts if s0 <= t < s0 + window]
        wsum = sum(w for w, _ in ws)
        p = sum(w * _sigmoid(z) for w, z in ws) / wsum
        assert _sigmoid(logits[t, 0]) == pytest.approx(p, rel=1e-5), t
        assert feats[t, 0] == pytest.approx(sum(w * z for w, z in ws) / wsum, rel=1e-5, abs=1e-6), t


@pytest.mark.parametrize("aggregate,expected", [("prob_mean", 0.4117), ("prob_hamming", 0.4117),
                                                ("logits_mean", 0.6608)])
def test_disagreeing_windows_are_averaged_as_probabilities(aggregate, expected):
    """METHOD §3: three windows with logits (6, -2, -2) at one frame: 0.41 as a mean of probabilities (the
    decision is 'no'), 0.66 as the sigmoid of the mean logit (the decision flips to 'yes')."""
    src = np.zeros((5, 1), dtype=np.float32)

    def forward(x):  # windows start at 0, 1, 2; all three cover frame 2, which is the centre of window 1
        vals = torch.tensor([6.0, -2.0, -2.0])[:x.shape[0]]
        out = vals[:, None, None].expand(-1, 4, x.shape[2]).float()
        return out, out

    logits, _, nw = sliding_window_average(forward, src, 5, 3, 1, batch_size=8, aggregate=aggregate)
    assert nw == 3
    p = _sigmoid(logits[2, 0])
    if aggregate == "prob_hamming":  # np.hamming(3) = (0.08, 1, 0.08): frame 2 is the centre of window 1 only
        expected = (0.08 * _sigmoid(6) + 1.0 * _sigmoid(-2) + 0.08 * _sigmoid(-2)) / 1.16
    assert p == pytest.approx(expected, abs=1e-3)
    assert (p < 0.5) == (aggregate != "logits_mean")


def _tiny_checkpoint(tmp_path, window=20):
    torch.manual_seed(0)
    model = Teacher(L, D, bottleneck=8, hidden=16, blocks=2, repeats=1).eval()
    path = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "hparams": {**model.hparams, "crop_frames": window},
                "provenance": {}}, path)
    return model, path


def test_dump_lengths_and_equivalence(tmp_path):
    window = 20
    model, ckpt = _tiny_checkpoint(tmp_path, window)
    rng = np.random.default_rng(0)
    lengths = {"short": 7, "exact": 20, "long": 93}
    feats = tmp_path / "features.h5"
    with h5py.File(feats, "w") as fh:
        fh.attrs["model"] = "synthetic"
        for uri, n in lengths.items():
            fh.create_dataset(uri, data=rng.normal(0, 1, (n, L, D)).astype(np.float16))
    out = tmp_path / "dump" / "test.h5"
    summary = dump_teacher(ckpt, feats, out, step_fraction=0.1, batch_size=4, device="cpu")
    assert summary["window"] == window and summary["step"] == 2 and summary["files"] == 3
    with h5py.File(out, "r", locking=False) as dh, h5py.File(feats, "r", locking=False) as fh:
        assert "provenance" in dh.attrs and json.loads(dh.attrs["provenance"])
        for uri, n in lengths.items():
            assert dh[uri]["logits"].shape == (n, 4) and dh[uri]["logits"].dtype == np.float32
            assert dh[uri]["features"].shape == (n, D) and dh[uri]["features"].dtype == np.float16
        with torch.no_grad():
            # a file exactly one window long: one window, identical to a full-file forward
            x = torch.from_numpy(fh["exact"][:].astype(np.float32))[None]
            ref_logits, ref_s = model(x)
            np.testing.assert_allclose(dh["exact"]["logits"][:], ref_logits[0].T.numpy(), atol=1e-5)
            np.testing.assert_allclose(dh["exact"]["features"][:], ref_s[0].T.numpy(), atol=1e-2)
            # a short file: one zero-padded window, then cropped
            x = torch.zeros(1, window, L, D)
            x[0, :7] = torch.from_numpy(fh["short"][:].astype(np.float32))
            ref_logits, _ = model(x)
            np.testing.assert_allclose(dh["short"]["logits"][:], ref_logits[0, :, :7].T.numpy(), atol=1e-5)
            # a long file: the average of the forwards of every window covering a frame
            x = torch.from_numpy(fh["long"][:].astype(np.float32))[None]
            starts = window_starts(93, window, 2)
            # (default aggregation: probabilities, Hamming-weighted over each window)
            acc, cnt = torch.zeros(93, 4, dtype=torch.float64), torch.zeros(93, 1, dtype=torch.float64)
            ham = torch.from_numpy(np.hamming(window))[:, None]
            for s0 in starts:
                acc[s0:s0 + window] += torch.sigmoid(model(x[:, s0:s0 + window])[0][0].T.double()) * ham
                cnt[s0:s0 + window] += ham
            np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(dh["long"]["logits"][:])).numpy(),
                                       (acc / cnt).numpy(), atol=1e-6)


def test_dump_is_atomic(tmp_path):
    _, ckpt = _tiny_checkpoint(tmp_path)
    feats = tmp_path / "features.h5"
    with h5py.File(feats, "w") as fh:
        fh.create_dataset("a_good", data=np.zeros((30, L, D), np.float16))
        fh.create_dataset("b_bad", data=np.zeros((30, L, D + 1), np.float16))  # fails after a_good is written
    out = tmp_path / "dump.h5"
    with pytest.raises(InputError):
        dump_teacher(ckpt, feats, out, device="cpu")
    assert not out.exists()
    assert not list(tmp_path.glob(".dump.h5*"))
