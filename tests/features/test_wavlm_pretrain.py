"""The demo WavLM's self-supervised pre-training: it learns, it is reproducible, and it loads like a hub model."""

import numpy as np
import pytest
import torch

from proxyseg.core.errors import InputError
from proxyseg.features.demo_wavlm import build_demo_wavlm
from proxyseg.features.wavlm import DEMO_MARKER, UNTRAINED_MARKER, is_demo_model, is_untrained, load_wavlm
from proxyseg.core.frames import num_frames
from proxyseg.features.pretrain import log_mel, mel_filterbank, pretrain_settings, span_mask

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def _audio(seconds=6.0, seed=0):
    """A tone that switches pitch every 0.25 s, with noise: log-mel frames predictable from context."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f = np.repeat(rng.choice([300.0, 900.0, 2500.0], int(seconds * 4) + 1), 4000)[:len(t)]
    return (0.3 * np.sin(2 * np.pi * np.cumsum(f) / 16000) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_log_mel_is_on_wavlm_frame_grid():
    x = torch.from_numpy(_audio(1.3))[None]
    m = log_mel(x, mel_filterbank(20))
    assert m.shape == (1, num_frames(x.shape[-1]), 20) and torch.isfinite(m).all()
    fb = mel_filterbank(20)
    assert fb.shape == (20, 257) and (fb >= 0).all() and (fb.sum(1) > 0).all()


def test_span_mask_masks_spans_and_every_row():
    rng = np.random.default_rng(0)
    mask = span_mask(rng, 16, 100, 0.05, 10)
    assert mask.shape == (16, 100) and mask.any(dim=1).all()
    row = mask[0].numpy().astype(int)
    # every run of masked frames is at least one span long unless cut by the end
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row, 0])))[::2]
    assert (runs >= 10).all() or row[-1] == 1


def test_pretraining_lowers_the_masked_loss_and_is_reproducible(tmp_path):
    audio = [_audio(6.0, 0), _audio(6.0, 1)]
    settings = {"steps": 30, "batch_size": 4, "crop_seconds": 1.0, "lr": 3e-3, "n_mels": 16}
    out = build_demo_wavlm(tmp_path / "a", seed=0, audio=audio, pretrain=settings, overrides=TINY, device="cpu")
    curve = np.loadtxt(out / "pretrain_curve.tsv", skiprows=1, usecols=1)
    assert len(curve) == 30 and curve[-10:].mean() < curve[:5].mean()
    assert (out / "pretrain_curve.png").stat().st_size > 1000
    assert is_demo_model(str(out)) and not is_untrained(str(out))
    note = (out / DEMO_MARKER).read_text()
    assert "not microsoft/wavlm-large" in note and "30 steps" in note
    again = build_demo_wavlm(tmp_path / "b", seed=0, audio=audio, pretrain=settings, overrides=TINY, device="cpu")
    a, b = load_wavlm(str(out)), load_wavlm(str(again))
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    # the pre-trained weights differ from the random start
    random = build_demo_wavlm(tmp_path / "c", seed=0, overrides=TINY)
    assert (random / UNTRAINED_MARKER).is_file() and not (random / "pretrain_curve.tsv").exists()
    r = load_wavlm(str(random)).state_dict()
    assert any(not torch.equal(p, r[k]) for k, p in a.state_dict().items())


def test_bad_settings_and_missing_audio_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"features\.demo_pretrain: unknown setting\(s\) 'stepz' \(did you mean steps\?\)"):
        pretrain_settings({"stepz": 3})
    with pytest.raises(InputError, match="needs training audio"):
        build_demo_wavlm(tmp_path / "m", seed=0, audio=[], pretrain={"steps": 2}, overrides=TINY)
    assert not (tmp_path / "m").exists()


def test_demo_model_preprocessing_matches_its_pretraining(tmp_path):
    """The demo WavLM's preprocessor_config.json follows the layout it copies (WavLM Base: raw waveforms;
    WavLM Large: normalised), extraction reads it, and pre-training normalises its crops the same way:
    with normalisation the trained model does not depend on the level (or offset) of the training audio."""
    import json

    base = build_demo_wavlm(tmp_path / "base", seed=0, overrides=TINY)
    assert json.loads((base / "preprocessor_config.json").read_text())["do_normalize"] is False
    assert not load_wavlm(str(base)).do_normalize
    large = {**TINY, "feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True}
    settings = {"steps": 3, "batch_size": 2, "crop_seconds": 1.0, "n_mels": 16}
    audio = [_audio(3.0, 0), _audio(3.0, 1)]
    louder = [(4.0 * a + 0.05).astype(np.float32) for a in audio]
    a = build_demo_wavlm(tmp_path / "a", seed=0, audio=audio, pretrain=settings, overrides=large, device="cpu")
    assert json.loads((a / "preprocessor_config.json").read_text())["do_normalize"] is True
    assert load_wavlm(str(a)).do_normalize and "normalised" in (a / DEMO_MARKER).read_text()
    b = build_demo_wavlm(tmp_path / "b", seed=0, audio=louder, pretrain=settings, overrides=large, device="cpu")
    wa, wb = load_wavlm(str(a)).state_dict(), load_wavlm(str(b)).state_dict()
    for name, p in wa.items():
        torch.testing.assert_close(p, wb[name], atol=1e-4, rtol=1e-3, msg=name)
    # without normalisation the level of the training audio reaches the model
    c = build_demo_wavlm(tmp_path / "c", seed=0, audio=audio, pretrain=settings, overrides=large, device="cpu",
                         do_normalize=False)
    d = build_demo_wavlm(tmp_path / "d", seed=0, audio=louder, pretrain=settings, overrides=large, device="cpu",
                         do_normalize=False)
    assert not load_wavlm(str(c)).do_normalize
    wc, wd = load_wavlm(str(c)).state_dict(), load_wavlm(str(d)).state_dict()
    assert max(float((p - wd[k]).abs().max()) for k, p in wc.items()) > 1e-3
