"""Proxy: distillation loss, dictionary modes, crop data, training, sliding-window inference."""

from __future__ import annotations

import json
import logging
import os

import h5py
import numpy as np
import pytest
import torch

from proxyseg.core.errors import InputError
from proxyseg.proxy.data import INPUTS, ProxyDevCrops, ProxyTrainCrops, scan_proxy_pairs
from proxyseg.proxy.infer import SPARSITY_THRESHOLD, infer_proxy, teacher_probs
from proxyseg.proxy.loss import KD_DIRECTIONS, binary_kl, distillation_loss
from proxyseg.proxy.model import Proxy, load_proxy
from proxyseg.proxy import train as proxy_train
from proxyseg.proxy.train import CURVE_COLUMNS, proxy_settings, train_proxy
from proxyseg.segmenter.export import export_model
from proxyseg.training import RESUME_NAME
from synthetic import class_activity

D, F, K = 16, 17, 8


# --------------------------------------------------------------------------------------------- helpers
def _dictionary(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.random((F, K)).astype(np.float32) ** 2
    return w / np.linalg.norm(w, axis=0, keepdims=True)


def _write_npz(tmp_path, seed=0):
    path = tmp_path / "dictionary.npz"
    np.savez(path, W=_dictionary(seed), costs=np.zeros(3))
    return path


def _synthetic_file(rng, n, w):
    """Class activity in short segments; features encode it, the teacher's logits are confident about it,
    and the spectrogram is a non-negative mix of dictionary atoms driven by it."""
    act = class_activity(rng, n).astype(np.float32)
    feats = rng.normal(0, 1, (n, D)).astype(np.float32)
    feats[:, :4] += 3.0 * (2 * act - 1)
    logits = (4.0 * (2 * act - 1) + rng.normal(0, 0.5, (n, 4))).astype(np.float32)
    h = np.zeros((n, K), dtype=np.float32)
    h[:, :4] = 2.0 * act
    h[:, 4:] = rng.random((n, K - 4)) * 0.3
    x = h @ w.T + rng.random((n, F)).astype(np.float32) * 0.1
    return feats, logits, x


def _write_pair(tmp_path, name, lengths, seed, spec_delta=None, extra_spec_uri=False):
    rng = np.random.default_rng(seed)
    w = _dictionary(0)
    dump, spec = tmp_path / f"{name}_dump.h5", tmp_path / f"{name}_spec.h5"
    with h5py.File(dump, "w") as dh, h5py.File(spec, "w") as sh:
        sh.attrs["n_fft"], sh.attrs["win_length"], sh.attrs["hop"] = 2 * (F - 1), 2 * (F - 1), 320
        for i, n in enumerate(lengths):
            feats, logits, x = _synthetic_file(rng, n, w)
            g = dh.create_group(f"{name}{i}")
            g.create_dataset("logits", data=logits)
            g.create_dataset("features", data=feats.astype(np.float16))
            nx = n + (spec_delta or {}).get(i, 0)
            xx = np.zeros((nx, F), dtype=np.float32)
            xx[:min(n, nx)] = x[:min(n, nx)]
            sh.create_dataset(f"{name}{i}", data=xx.astype(np.float16))
        if extra_spec_uri:
            sh.create_dataset("stray", data=np.zeros((30, F), dtype=np.float16))
    return dump, spec


SMALL = {"crop_seconds": 1.0, "batch_size": 8, "lr": 3e-3, "max_epochs": 6, "patience": 10,
         "steps_per_epoch": 6,
         "bottleneck": 16, "hidden": 32, "kernel": 3, "blocks": 2, "repeats": 1}


def _model(mode, inp_channels=D, seed=0):
    torch.manual_seed(seed)
    return Proxy(inp_channels, torch.from_numpy(_dictionary()), mode, seed=seed,
                 bottleneck=16, hidden=32, blocks=2, repeats=1)


# ------------------------------------------------------------------------------------------------ loss
def test_kl_zero_when_logits_agree_positive_otherwise():
    torch.manual_seed(0)
    teacher = torch.randn(3, 4, 50) * 3
    assert float(binary_kl(teacher.clone(), teacher)) == pytest.approx(0.0, abs=1e-6)
    other = teacher + torch.randn(3, 4, 50)
    assert float(binary_kl(other, teacher)) > 1e-3
    # saturated logits stay finite (computed from logits, nothing clamped), in both directions
    for direction in KD_DIRECTIONS:
        kl = binary_kl(torch.full((1, 4, 5), -100.0), torch.full((1, 4, 5), 100.0), direction=direction)
        assert torch.isfinite(kl) and float(kl) == pytest.approx(4 * 100.0, rel=1e-4)  # -log σ(-100) per class


@pytest.mark.parametrize("direction", KD_DIRECTIONS)
def test_kl_zero_when_logits_equal(direction):
    torch.manual_seed(0)
    z = torch.cat([torch.randn(2, 4, 30) * 5, torch.tensor([-100.0, -20.0, 0.0, 40.0]).view(1, 4, 1).expand(2, 4, 30)],
                  dim=2)
    assert float(binary_kl(z.clone(), z, direction=direction)) == 0.0


@pytest.mark.parametrize("direction", KD_DIRECTIONS)
def test_saturated_proxy_still_gets_a_gradient(direction):
    """A proxy saturated at logit -20 against a teacher at +5: the old clamp (1e-6) gave exactly zero
    gradient; from logits it is finite, non-zero and descent raises the proxy logit."""
    teacher = torch.full((1, 4, 3), 5.0)
    student = torch.full((1, 4, 3), -20.0, requires_grad=True)
    kl = binary_kl(student, teacher, direction=direction)
    kl.backward()
    g = student.grad
    assert torch.isfinite(g).all() and (g != 0).all()
    assert (g < 0).all()  # gradient descent increases the proxy logit, towards the teacher
    # exact gradients per element (mean over the 3 frames): forward σ(z_s) - σ(z_t);
    # reverse σ(z_s)(1 - σ(z_s))(z_s - z_t)
    zs, zt = torch.tensor(-20.0, dtype=torch.float64), torch.tensor(5.0, dtype=torch.float64)
    q, p = torch.sigmoid(zs), torch.sigmoid(zt)
    expected = (q - p) if direction == "teacher_proxy" else q * (1 - q) * (zs - zt)
    assert torch.allclose(g.double(), torch.full_like(g, float(expected) / 3).double(), rtol=1e-4)
    # the old clamped formula gives none
    clamped_student = student.detach().clone().requires_grad_(True)
    _clamped_forward_kl(clamped_student, teacher).backward()
    assert torch.all(clamped_student.grad == 0)
    # and the forward value is the real one, not the clamp's: KL = p(z_t - z_s) + softplus(z_s) - softplus(z_t)
    if direction == "teacher_proxy":
        value = p * (zt - zs) + torch.nn.functional.softplus(zs) - torch.nn.functional.softplus(zt)
        assert float(kl.detach()) == pytest.approx(4 * float(value), rel=1e-5)


def _clamped_forward_kl(student_logits, teacher_logits, eps=1e-6):
    """The pre-2026-11-29 formula: KL(teacher || proxy) from probabilities clamped at eps."""
    p = torch.sigmoid(teacher_logits).clamp(eps, 1 - eps)
    q = torch.sigmoid(student_logits).clamp(eps, 1 - eps)
    kl = p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())
    return kl.sum(dim=1).mean()


def test_kl_values_match_probability_formulas():
    """Where nothing saturates (logits in [-5, 5]) the forward KL equals the old clamped formula; the
    reverse KL equals KL(proxy || teacher) computed directly in float64."""
    g = torch.Generator().manual_seed(0)
    student = torch.rand(3, 4, 50, generator=g) * 10 - 5
    teacher = torch.rand(3, 4, 50, generator=g) * 10 - 5
    forward = binary_kl(student, teacher)  # default direction: teacher_proxy
    assert float(forward) == pytest.approx(float(_clamped_forward_kl(student, teacher)), rel=1e-5)
    assert float(binary_kl(student, teacher, direction="teacher_proxy")) == float(forward)
    q, p = torch.sigmoid(student.double()), torch.sigmoid(teacher.double())
    reverse64 = (q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log()).sum(dim=1).mean()
    reverse = binary_kl(student, teacher, direction="proxy_teacher")
    assert float(reverse) == pytest.approx(float(reverse64), rel=1e-5)
    assert float(reverse) != pytest.approx(float(forward), rel=1e-3)  # the two directions differ
    # float64 inputs are computed in float64
    assert binary_kl(student.double(), teacher.double(), direction="proxy_teacher").dtype == torch.float64
    assert float(binary_kl(student.double(), teacher.double(), direction="proxy_teacher")) == \
        pytest.approx(float(reverse64), rel=1e-12)


def test_kd_direction_is_checked_and_wired():
    torch.manual_seed(0)
    z_s, z_t = torch.randn(1, 4, 10), torch.randn(1, 4, 10)
    with pytest.raises(ValueError, match="kd_direction='student_teacher'.*teacher_proxy.*proxy_teacher"):
        binary_kl(z_s, z_t, direction="student_teacher")
    out = {"logits": z_s, "X_hat": torch.zeros(1, F, 10), "H": torch.zeros(1, K, 10)}
    x = torch.zeros(1, F, 10)
    for direction in KD_DIRECTIONS:
        terms = distillation_loss(out, z_t, x, 1.0, 0.0, 0.0, kd_direction=direction)
        assert float(terms["kd"]) == float(binary_kl(z_s, z_t, direction=direction))
    with pytest.raises(ValueError, match="kd_direction"):
        distillation_loss(out, z_t, x, 1.0, 1.0, 1.0, kd_direction="backward")
    # the training setting: default forward, both accepted, anything else refused with the choices named
    assert proxy_settings({})["kd_direction"] == "teacher_proxy"
    assert proxy_settings({"kd_direction": "proxy_teacher"})["kd_direction"] == "proxy_teacher"
    with pytest.raises(InputError, match=r"kd_direction: 'reverse' is not one of \['teacher_proxy', 'proxy_teacher'\]"):
        proxy_settings({"kd_direction": "reverse"})


def test_loss_terms_respond_to_weights():
    torch.manual_seed(0)
    model = _model("fixed")
    inp, teacher, x = torch.randn(2, D, 40), torch.randn(2, 4, 40), torch.rand(2, F, 40)
    out = model(inp)
    base = distillation_loss(out, teacher, x, 1.0, 1.0, 1.0)
    kd, nmf, l1 = (float(base[k].detach()) for k in ("kd", "nmf", "l1"))
    assert kd > 0 and nmf > 0 and l1 > 0
    for (a, b, g) in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (10, 1, 0.1), (2, 5, 3)]:
        terms = distillation_loss(out, teacher, x, a, b, g)
        assert float(terms["loss"].detach()) == pytest.approx(a * kd + b * nmf + g * l1, rel=1e-5)
    # each weight drives the gradient of its own part of the model: gamma alone only reaches Psi
    model.zero_grad()
    distillation_loss(model(inp), teacher, x, 0.0, 0.0, 1.0)["loss"].backward()
    assert model.theta.weight.grad is None or torch.all(model.theta.weight.grad == 0)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.psi.parameters())
    model.zero_grad()
    distillation_loss(model(inp), teacher, x, 1.0, 0.0, 0.0)["loss"].backward()
    assert model.theta.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- dictionary
def _steps(model, n=5):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    torch.manual_seed(1)
    for _ in range(n):
        inp, teacher, x = torch.randn(2, D, 30), torch.randn(2, 4, 30), torch.rand(2, F, 30) * 3
        loss = distillation_loss(model(inp), teacher, x, 10.0, 1.0, 0.1)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_learned_dictionary_stays_nonnegative_unit_norm():
    model = _model("learned")
    w0 = model.W.detach().clone()
    _steps(model)
    w = model.W.detach()
    assert not torch.allclose(w, w0)
    assert float(w.min()) >= 0
    assert torch.allclose(w.norm(dim=0), torch.ones(K), atol=1e-5)


def test_fixed_dictionary_does_not_change():
    model = _model("fixed")
    w0 = model.W.detach().clone()
    assert all(p is not model.w_param for p in model.parameters())
    _steps(model)
    assert torch.equal(model.W, w0)


# ---------------------------------------------------------------------------------------------- data
def test_crops_shapes_and_determinism(tmp_path):
    pair = _write_pair(tmp_path, "tr", [120, 30, 75], seed=1)
    for inp, channels in (("wavlm", D), ("spectrogram", F)):
        ds = ProxyTrainCrops([pair], 50, inp, num_items=10, seed=3)
        ds.set_epoch(2)
        a, b = ds[4], ds[4]
        assert a[0].shape == (channels, 50) and a[1].shape == (4, 50) and a[2].shape == (F, 50)
        assert all(torch.equal(u, v) for u, v in zip(a, b))
        if inp == "spectrogram":
            assert torch.equal(a[0], a[2])
        epoch2 = [ds.locate(i) for i in range(10)]
        ds.set_epoch(3)
        assert [ds.locate(i) for i in range(10)] != epoch2
        dev = ProxyDevCrops([pair], 50, inp)
        # 120 -> starts 0, 50, 70; 30 -> 0 (padded); 75 -> 0, 25
        assert len(dev) == 6
        x_short = dev[3][2]
        assert torch.all(x_short[:, 30:] == 0) and torch.all(dev[3][1][:, 30:] == 0)
        ds.close()
        dev.close()


def test_gain_plays_the_crop_louder_or_softer_and_keeps_the_target(tmp_path):
    from proxyseg.proxy.data import with_gain

    power = torch.tensor([[0.0, 1e-4, 1.0, 100.0]])
    x = torch.log1p(power)
    assert torch.allclose(with_gain(x, 0.0), x)
    assert torch.allclose(with_gain(x, 10.0), torch.log1p(10 * power), atol=1e-6)
    assert torch.allclose(with_gain(x, -20.0), torch.log1p(power / 100), atol=1e-6)
    pair = _write_pair(tmp_path, "tr", [120, 75], seed=1)
    plain = ProxyTrainCrops([pair], 50, "spectrogram", num_items=8, seed=3)
    louder = ProxyTrainCrops([pair], 50, "spectrogram", num_items=8, seed=3, gain_db=(-30.0, 6.0))
    gains = set()
    for i in range(8):
        (xp, lp, _), (xg, lg, tg) = plain[i], louder[i]
        assert torch.equal(lp, lg) and torch.equal(xg, tg)  # the teacher's target is unchanged
        ratio = torch.expm1(xg.double()) / torch.expm1(xp.double()).clamp(min=1e-12)
        g = float(ratio[xp > 1e-3].median())
        assert torch.allclose(ratio[xp > 1e-3], torch.tensor(g, dtype=torch.float64), rtol=1e-3)
        gains.add(round(10 * np.log10(g), 3))
        assert torch.equal(louder[i][0], xg)  # a pure function of (seed, epoch, index)
    assert len(gains) == 8 and all(-30 <= d <= 6 for d in gains)
    with pytest.raises(ValueError, match="spectrogram input only"):
        ProxyTrainCrops([pair], 50, "wavlm", num_items=8, seed=3, gain_db=(-3.0, 3.0))
    with pytest.raises(InputError, match="lo <= hi"):
        train_proxy([pair], [pair], tmp_path / "W.npz", tmp_path / "p",
                    {"input": "spectrogram", "gain_db": [3, -3]})
    plain.close()
    louder.close()


def test_preloaded_crops_equal_streamed_crops(tmp_path):
    pair = _write_pair(tmp_path, "tr", [120, 30, 75], seed=1)
    for inp in INPUTS:
        streamed = ProxyTrainCrops([pair], 50, inp, num_items=10, seed=3)
        preloaded = ProxyTrainCrops([pair], 50, inp, num_items=10, seed=3)
        assert preloaded.preload(max_mb=1)
        assert sum(len(v) for v in preloaded._memory.values()) == (9 if inp == "wavlm" else 6)
        for ds in (streamed, preloaded):
            ds.set_epoch(2)
        for i in range(10):
            assert all(torch.equal(u, v) for u, v in zip(streamed[i], preloaded[i]))
        dev, dev_memory = ProxyDevCrops([pair], 50, inp), ProxyDevCrops([pair], 50, inp)
        assert dev_memory.preload(max_mb=1)
        assert all(torch.equal(u, v) for i in range(len(dev)) for u, v in zip(dev[i], dev_memory[i]))


def test_mismatched_uris_name_both_files(tmp_path):
    dump, spec = _write_pair(tmp_path, "tr", [60, 60], seed=1, extra_spec_uri=True)
    with pytest.raises(InputError) as err:
        scan_proxy_pairs([(dump, spec)])
    assert str(dump) in str(err.value) and str(spec) in str(err.value) and "stray" in str(err.value)


def test_length_mismatch_uses_shorter_and_warns(tmp_path, caplog):
    dump, spec = _write_pair(tmp_path, "tr", [60, 60, 60], seed=1, spec_delta={0: -1, 1: -5})
    with caplog.at_level(logging.WARNING, logger="proxyseg.proxy"):
        entries, dim, n_freq = scan_proxy_pairs([(dump, spec)])
    assert [e.num_frames for e in entries] == [59, 55, 60]
    assert (dim, n_freq) == (D, F)
    assert "tr1" in caplog.text and "tr0 " not in caplog.text


def test_unknown_or_bad_settings(tmp_path):
    with pytest.raises(InputError, match=r"unknown setting\(s\) 'alpah' \(did you mean alpha\?\)"):
        proxy_settings({"alpah": 1})
    with pytest.raises(InputError):
        proxy_settings({"input": "mfcc"})
    with pytest.raises(InputError):
        proxy_settings({"dictionary": "frozen"})
    s = proxy_settings({})
    assert (s["alpha"], s["beta"], s["gamma"], s["batch_size"], s["crop_seconds"]) == (10.0, 1.0, 0.1, 32, 4.0)
    assert s["lr_schedule"] == "constant"
    with pytest.raises(InputError, match="lr_schedule"):
        proxy_settings({"lr_schedule": "linear"})


# ------------------------------------------------------------------------------------------ training
@pytest.fixture
def pairs(tmp_path):
    train = _write_pair(tmp_path, "tr", [300, 240, 180, 40], seed=1)
    dev = _write_pair(tmp_path, "dv", [200, 150], seed=2)
    return [train], [dev], _write_npz(tmp_path)


@pytest.mark.parametrize("inp,mode", [("wavlm", "fixed"), ("spectrogram", "learned")])
def test_training_writes_outputs_and_dev_loss_decreases(tmp_path, pairs, inp, mode):
    train, dev, npz = pairs
    out = tmp_path / f"proxy_{inp}"
    rec = train_proxy(train, dev, npz, out, {**SMALL, "input": inp, "dictionary": mode}, seed=0)
    for name in ("model.pt", "curve.tsv", "curve.png", "train.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*tmp*"))
    lines = (out / "curve.tsv").read_text().strip().split("\n")
    assert lines[0].split("\t") == list(CURVE_COLUMNS)
    rows = [dict(zip(CURVE_COLUMNS, map(float, line.split("\t")))) for line in lines[1:]]
    assert len(rows) == SMALL["max_epochs"]
    assert rec["best_dev_loss"] < rows[0]["dev_loss"]
    assert rows[-1]["dev_kd"] < rows[0]["dev_kd"]
    info = json.loads((out / "train.json").read_text())
    assert info["best_epoch"] == rec["best_epoch"] and info["settings"]["input"] == inp
    model, ckpt = load_proxy(out / "model.pt")
    assert ckpt["hparams"]["input"] == inp and ckpt["hparams"]["crop_frames"] == 50
    assert ckpt["hparams"]["in_channels"] == (D if inp == "wavlm" else F)
    assert ckpt["hparams"]["settings"]["dictionary"] == mode
    if mode == "fixed":
        assert np.allclose(model.W.numpy(), _dictionary())
    else:
        assert float(model.W.detach().min()) >= 0
        assert np.allclose(model.W.norm(dim=0).detach().numpy(), 1, atol=1e-5)


def test_matching_thresholds_give_a_hedging_proxy_its_teachers_rate():
    """A proxy whose speech probability sits 0.25 below its teacher's decides speech on as many frames as
    its teacher at about 0.25 (and then on the same frames); a class left out is not touched; a proxy
    already at its teacher's rate keeps the scoring threshold, and so does a class neither ever decides."""
    from proxyseg.proxy.calibrate import matching_thresholds

    rng = np.random.default_rng(0)
    teacher = rng.random((4000, 4))
    teacher[:, 3] = 0.0
    hedging = np.clip(teacher - 0.25, 0, 1)
    got = matching_thresholds(teacher, hedging, ["speech", "music", "overlap"], 0.5)
    assert set(got) == {"speech", "music", "overlap"}
    speech = got["speech"]
    assert abs(speech["threshold"] - 0.25) <= 0.01 and abs(speech["teacher_rate"] - 0.5) < 0.03
    assert speech["proxy_rate_before"] < 0.3 and speech["agreement_before"] < 0.8
    assert got["overlap"]["threshold"] == 0.5 and got["overlap"]["teacher_rate"] == 0.0
    assert matching_thresholds(teacher, teacher, ["speech"], 0.5)["speech"]["threshold"] == 0.5
    # a confident teacher (most frames speech) and a proxy whose probabilities are its teacher's squashed
    # towards 0.3: the rate is matched where the F1 with the teacher is flat
    confident = (rng.random(4000) < 0.85).astype(float)
    proxy = np.zeros((4000, 4))
    proxy[:, 0] = 0.3 + 0.1 * confident + 0.05 * rng.random(4000)
    got = matching_thresholds(np.stack([confident] * 4, 1), proxy, ["speech"], 0.5)["speech"]
    assert 0.3 < got["threshold"] <= 0.4 and got["proxy_rate_before"] == 0.0


def test_calibrated_training_shifts_only_the_named_biases(tmp_path, pairs):
    """calibrate: [speech, music]: the checkpoint is the uncalibrated one but for those biases, shifted as
    train.json records; on the calibration files the proxy then agrees with the teacher as recorded."""
    from proxyseg.core.agreement import frame_f1

    train, dev, npz = pairs
    settings = {**SMALL, "max_epochs": 2, "input": "spectrogram", "alpha": 1.0}
    train_proxy(train, dev, npz, tmp_path / "plain", settings, seed=3)
    rec = train_proxy(train, dev, npz, tmp_path / "cal", {**settings, "calibrate": ["speech", "music"]}, seed=3,
                      calibration_pairs=dev)
    plain = torch.load(tmp_path / "plain" / "model.pt", weights_only=False)["state_dict"]
    cal = torch.load(tmp_path / "cal" / "model.pt", weights_only=False)["state_dict"]
    classes = rec["calibration"]["classes"]
    assert set(classes) == {"speech", "music"} and rec["calibration"]["frames"] == 350
    assert all(torch.equal(plain[k], cal[k]) for k in plain if k != "theta.bias")
    shift = (cal["theta.bias"] - plain["theta.bias"]).numpy()
    np.testing.assert_allclose(shift, [classes["speech"]["bias_shift"], 0, classes["music"]["bias_shift"], 0],
                               atol=1e-6)
    infer_proxy(tmp_path / "cal" / "model.pt", *dev[0], tmp_path / "cal.h5")
    with h5py.File(tmp_path / "cal.h5") as inf, h5py.File(dev[0][0]) as dump:
        p = np.concatenate([inf[u]["probs"][:, 0] for u in sorted(inf)])
        t = np.concatenate([dump[u]["logits"][:, 0] for u in sorted(inf)])
    assert abs(frame_f1(p >= 0.5, t >= 0) - classes["speech"]["agreement_after"]) < 1e-9
    assert abs(float(np.mean(p >= 0.5)) - classes["speech"]["proxy_rate_after"]) < 1e-9
    assert abs(float(np.mean(t >= 0)) - classes["speech"]["teacher_rate"]) < 1e-9
    assert json.loads((tmp_path / "cal" / "train.json").read_text())["calibration"]["classes"] == classes
    # --undo-calibration: the calibrated model infers as the proxy as trained (fidelity's "uncalibrated" rows)
    infer_proxy(tmp_path / "plain" / "model.pt", *dev[0], tmp_path / "plain.h5")
    infer_proxy(tmp_path / "cal" / "model.pt", *dev[0], tmp_path / "undone.h5",
                undo_calibration=tmp_path / "cal" / "train.json")
    with h5py.File(tmp_path / "plain.h5") as a, h5py.File(tmp_path / "undone.h5") as b, h5py.File(tmp_path / "cal.h5") as c:
        for u in a:
            np.testing.assert_allclose(b[u]["probs"][()], a[u]["probs"][()], atol=1e-6)
        assert any(r["bias_shift"] for r in classes.values())  # else this would test nothing
        assert any(not np.allclose(c[u]["probs"][()], a[u]["probs"][()]) for u in a)
    assert rec["calibration"] is not None and train_proxy(
        train, dev, npz, tmp_path / "plain2", settings, seed=3)["calibration"] is None
    with pytest.raises(InputError, match="calibrate needs"):
        train_proxy(train, dev, npz, tmp_path / "x", {**settings, "calibrate": ["speech"]}, seed=3)
    with pytest.raises(InputError, match="not classes"):
        proxy_settings({"calibrate": ["laughter"]})


def test_cosine_schedule_decays_lr_to_zero(tmp_path, pairs):
    train, dev, npz = pairs
    rec = train_proxy(train, dev, npz, tmp_path / "cos", {**SMALL, "lr_schedule": "cosine"}, seed=0)
    lines = (tmp_path / "cos" / "curve.tsv").read_text().strip().split("\n")[1:]
    lrs = [float(line.split("\t")[CURVE_COLUMNS.index("lr")]) for line in lines]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-6 < lrs[0] < SMALL["lr"]
    assert rec["best_dev_loss"] < float(lines[0].split("\t")[CURVE_COLUMNS.index("dev_loss")])


def test_same_seed_same_weights(tmp_path, pairs):
    train, dev, npz = pairs
    settings = {**SMALL, "max_epochs": 2, "dictionary": "learned"}
    train_proxy(train, dev, npz, tmp_path / "a", settings, seed=5)
    train_proxy(train, dev, npz, tmp_path / "b", settings, seed=5)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_training_matches_preloaded_training(tmp_path, pairs):
    train, dev, npz = pairs
    settings = {**SMALL, "max_epochs": 2}
    train_proxy(train, dev, npz, tmp_path / "a", settings, seed=5)
    train_proxy(train, dev, npz, tmp_path / "b", settings, seed=5, runtime={"preload_mb": 0})
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_weight_averaging_learns_and_saves_the_averaged_weights(tmp_path, pairs):
    """ema > 0: the dev loss and the checkpoint are those of the averaged weights, which still learn;
    a learned dictionary stays non-negative with unit-norm columns."""
    train, dev, npz = pairs
    settings = {**SMALL, "dictionary": "learned"}
    rec = train_proxy(train, dev, npz, tmp_path / "ema", {**settings, "ema": 0.8}, seed=5)
    train_proxy(train, dev, npz, tmp_path / "plain", settings, seed=5)
    lines = (tmp_path / "ema" / "curve.tsv").read_text().strip().split("\n")[1:]
    dev_loss = [float(line.split("\t")[CURVE_COLUMNS.index("dev_loss")]) for line in lines]
    assert rec["best_dev_loss"] < dev_loss[0] and rec["settings"]["ema"] == 0.8
    averaged = torch.load(tmp_path / "ema" / "model.pt", weights_only=False)["state_dict"]
    plain = torch.load(tmp_path / "plain" / "model.pt", weights_only=False)["state_dict"]
    assert averaged.keys() == plain.keys()  # a plain Proxy state dict (no n_averaged)
    assert any(not torch.equal(averaged[k], plain[k]) for k in plain)
    model, _ = load_proxy(tmp_path / "ema" / "model.pt")
    assert float(model.W.detach().min()) >= 0
    assert np.allclose(model.W.norm(dim=0).detach().numpy(), 1, atol=1e-5)
    with pytest.raises(InputError, match=r"ema: 1.0 must be < 1"):
        proxy_settings({"ema": 1.0})


def test_training_rejects_wrong_dictionary_size(tmp_path, pairs):
    train, dev, _ = pairs
    bad = tmp_path / "bad.npz"
    np.savez(bad, W=np.ones((F + 3, K), dtype=np.float32))
    with pytest.raises(InputError, match="frequency bins"):
        train_proxy(train, dev, bad, tmp_path / "out", SMALL, seed=0)


def test_interrupted_training_leaves_no_output(tmp_path, pairs, monkeypatch, kill_in_epoch):
    """A job killed after an improving epoch leaves no model.pt that looks finished, no curve, no temporary:
    only the hidden state to resume from."""
    train, dev, npz = pairs
    calls = kill_in_epoch(proxy_train, 2)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_proxy(train, dev, npz, out, {**SMALL, "max_epochs": 3}, seed=0)
    assert len(calls) == 2
    assert [p.name for p in out.iterdir()] == [RESUME_NAME]


@pytest.mark.usefixtures("one_torch_thread")
def test_killed_and_resumed_training_ends_as_an_uninterrupted_one(
        tmp_path, pairs, monkeypatch, caplog, kill_in_epoch):
    """Killed in epoch 3, run again: it resumes after epoch 2 and ends with the checkpoint (bytes) of a run
    never interrupted; a learned dictionary, EMA and a cosine schedule included."""
    train, dev, npz = pairs
    settings = {**SMALL, "max_epochs": 5, "dictionary": "learned", "ema": 0.5, "lr_schedule": "cosine"}
    train_proxy(train, dev, npz, tmp_path / "whole", settings, seed=5)
    kill_in_epoch(proxy_train, 3)
    with pytest.raises(KeyboardInterrupt):
        train_proxy(train, dev, npz, tmp_path / "killed", settings, seed=5)
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="proxyseg.proxy"):
        rec = train_proxy(train, dev, npz, tmp_path / "killed", settings, seed=5)
    assert "proxy: resuming after epoch 2" in caplog.text and "proxy epoch 1/" not in caplog.text
    assert rec["epochs_run"] == 5 and rec["best_dev_loss"] == json.loads((tmp_path / "whole" / "train.json")
                                                                        .read_text())["best_dev_loss"]
    assert (tmp_path / "killed" / "model.pt").read_bytes() == (tmp_path / "whole" / "model.pt").read_bytes()
    assert not (tmp_path / "killed" / RESUME_NAME).exists()


def test_identical_runs_give_identical_checkpoint_and_export_bytes(tmp_path, monkeypatch, checkpoint_strings):
    """The same data, settings and seed in another folder give the same model.pt and exported model folder:
    paths are stored relative to the working directory, time and host only beside them."""
    outs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        monkeypatch.chdir(folder)
        train = _write_pair(folder, "tr", [300, 240], seed=1)  # absolute paths, under the working directory
        dev = _write_pair(folder, "dv", [200], seed=2)
        npz = _write_npz(folder)
        settings = {**SMALL, "max_epochs": 2, "input": "spectrogram", "dictionary": "learned"}
        train_proxy([train], [dev], npz, folder / "out", settings, seed=5)
        export_model(folder / "out" / "model.pt", None, npz, None, dev[1], "", folder / "export")
        outs.append(folder)
    a, b = outs
    data = (a / "out" / "model.pt").read_bytes()
    assert data == (b / "out" / "model.pt").read_bytes()
    for name in ("settings.json", "proxy.pt", "dictionary.npz"):
        assert (a / "export" / name).read_bytes() == (b / "export" / name).read_bytes(), name
    ckpt = torch.load(a / "out" / "model.pt", weights_only=False)
    for text in (data, (a / "export" / "settings.json").read_bytes(), (a / "out" / "train.json").read_bytes()):
        assert str(tmp_path).encode() not in text
    assert not [s for s in checkpoint_strings(ckpt) if os.path.isabs(s)]
    assert not {"created", "host"} & set(ckpt["provenance"])
    assert ckpt["hparams"]["dictionary_npz"] == "dictionary.npz"
    assert ckpt["provenance"]["settings"]["dictionary"] == "dictionary.npz"
    exported = json.loads((a / "export" / "settings.json").read_text())
    assert not {"created", "host"} & set(exported["provenance"])
    assert exported["provenance"]["settings"]["proxy"] == os.path.join("out", "model.pt")
    for record in (json.loads((a / "out" / "train.json").read_text())["provenance"],
                   json.loads((a / "export" / "provenance.json").read_text())):
        assert record["created"] and "host" in record


# ----------------------------------------------------------------------------------------- inference
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny proxy per input (trained once for the module)."""
    tmp = tmp_path_factory.mktemp("trained")
    train = _write_pair(tmp, "tr", [300, 240, 180, 40], seed=1)
    dev = _write_pair(tmp, "dv", [200, 150], seed=2)
    npz = _write_npz(tmp)
    out = {}
    for inp in ("wavlm", "spectrogram"):
        train_proxy([train], [dev], npz, tmp / inp,
                    {**SMALL, "max_epochs": 1, "steps_per_epoch": 2, "input": inp}, seed=0)
        out[inp] = tmp / inp / "model.pt"
    return out


@pytest.mark.parametrize("inp", ["wavlm", "spectrogram"])
def test_infer_lengths_and_stats(tmp_path, trained, inp):
    # window 50 frames: files shorter and longer than a window, and exactly one window
    dump, spec = _write_pair(tmp_path, "te", [23, 50, 137], seed=7)
    out = tmp_path / f"probs_{inp}.h5"
    summary = infer_proxy(trained[inp], dump, spec, out, device="cpu")
    assert summary["files"] == 3 and summary["window"] == 50 and summary["step"] == 5
    with h5py.File(out, "r") as h5, h5py.File(dump, "r") as dh:
        assert h5.attrs["K"] == K and h5.attrs["input"] == inp and h5.attrs["dictionary"] == "fixed"
        assert h5.attrs["sparsity_threshold"] == SPARSITY_THRESHOLD
        assert "provenance" in h5.attrs
        for uri, n in (("te0", 23), ("te1", 50), ("te2", 137)):
            g = h5[uri]
            assert g["probs"].shape == (n, 4) and g["probs"].dtype == np.float32
            assert g["logits"].shape == (n, 4) and g["H"].shape == (n, K) and g["H"].dtype == np.float16
            p = g["probs"][()]
            assert np.all((p >= 0) & (p <= 1))
            assert np.allclose(p, 1 / (1 + np.exp(-g["logits"][()])), atol=1e-6)
            assert np.all(g["H"][()] >= 0)
            for key in ("recon_mse", "sparsity", "mean_activation", "kd_teacher"):
                assert np.isfinite(g.attrs[key]), key
            assert 0 <= g.attrs["sparsity"] <= 1
        # the stored MSE is the one of X vs W H
        model, _ = load_proxy(trained[inp])
        w = model.W.detach().numpy()
        with h5py.File(spec, "r") as sh:
            x = sh["te2"][()].astype(np.float32)
        h = h5["te2"]["H"][()].astype(np.float32)
        assert h5["te2"].attrs["recon_mse"] == pytest.approx(np.mean((x - h @ w.T) ** 2), rel=1e-2)
        assert dh["te0"]["logits"].shape[0] == 23


def test_infer_single_window_matches_direct_forward(tmp_path, trained):
    dump, spec = _write_pair(tmp_path, "te", [50], seed=7)
    out = tmp_path / "probs.h5"
    infer_proxy(trained["wavlm"], dump, spec, out, device="cpu")
    model, _ = load_proxy(trained["wavlm"])
    with h5py.File(dump, "r") as dh, h5py.File(out, "r") as h5:
        s = torch.from_numpy(dh["te0"]["features"][()].astype(np.float32)).T[None]
        with torch.no_grad():
            ref = model(s)["logits"][0].T.numpy()
        assert np.allclose(h5["te0"]["logits"][()], ref, atol=1e-5)


def test_infer_is_atomic(tmp_path, trained):
    dump, spec = _write_pair(tmp_path, "te", [60, 80], seed=7)
    with h5py.File(spec, "a") as sh:  # the second file's spectrogram has the wrong number of bins
        del sh["te1"]
        sh.create_dataset("te1", data=np.zeros((80, F + 1), dtype=np.float16))
    out = tmp_path / "out" / "probs.h5"
    with pytest.raises(InputError):
        infer_proxy(trained["spectrogram"], dump, spec, out, device="cpu")
    assert not out.exists()
    assert not list((tmp_path / "out").iterdir())


def test_infer_mismatched_uris(tmp_path, trained):
    dump, spec = _write_pair(tmp_path, "te", [60], seed=7, extra_spec_uri=True)
    out = tmp_path / "probs.h5"
    with pytest.raises(InputError) as err:
        infer_proxy(trained["wavlm"], dump, spec, out, device="cpu")
    assert str(spec) in str(err.value) and str(dump) in str(err.value)
    assert not out.exists()


def test_teacher_probs_layout(tmp_path):
    dump, _ = _write_pair(tmp_path, "te", [23, 137], seed=7)
    out = tmp_path / "teacher_probs.h5"
    summary = teacher_probs(dump, out)
    assert summary == {"files": 2, "frames": 160}
    with h5py.File(out, "r") as h5, h5py.File(dump, "r") as dh:
        assert h5.attrs["model"] == "teacher" and "provenance" in h5.attrs
        for uri in ("te0", "te1"):
            logits = dh[uri]["logits"][()]
            assert np.array_equal(h5[uri]["logits"][()], logits)
            assert np.allclose(h5[uri]["probs"][()], 1 / (1 + np.exp(-logits)), atol=1e-6)
            assert h5[uri]["probs"].dtype == np.float32
