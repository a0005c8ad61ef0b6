import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from proxyseg.core.errors import InputError
from proxyseg.features.demo_wavlm import build_untrained_wavlm
from proxyseg.features.wavlm import (extract_features, extract_states, load_wavlm, normalize_waveform,
                               plan_chunks)
from proxyseg.core.frames import num_frames


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    """A tiny random WavLM saved with save_pretrained: the same loading path as a hub model. Raw waveforms
    (do_normalize false), so that these tests are about chunking only; normalisation is tested below."""
    path = tmp_path_factory.mktemp("models") / "wavlm"
    build_untrained_wavlm(path, seed=0, do_normalize=False, **TINY)
    return path


#: WavLM Large's layout (per-frame layer norm in the CNN), the model of real use
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
            feat_extract_norm="layer", do_stable_layer_norm=True)


def test_plan_chunks_covers_every_frame_once():
    plans = plan_chunks(1234, 500, 60)
    kept = np.concatenate([np.arange(p.keep_start, p.keep_end) for p in plans])
    assert kept.tolist() == list(range(1234))
    assert all(p.ctx_start == max(0, p.keep_start - 60) for p in plans)


def test_from_pretrained_roundtrip_is_deterministic(tiny_wavlm, tmp_path):
    again = build_untrained_wavlm(tmp_path / "again", seed=0, **TINY)
    a, b = load_wavlm(str(tiny_wavlm)), load_wavlm(str(again))
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name


def test_chunked_equals_whole_file(tiny_wavlm):
    net = load_wavlm(str(tiny_wavlm))
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000 * 12)).astype(np.float32)
    cpu = torch.device("cpu")
    whole = extract_states(net, x, [0, 1, 2], chunk_seconds=100, overlap_seconds=0, device=cpu).astype(np.float32)
    chunked = extract_states(net, x, [0, 1, 2], chunk_seconds=4, overlap_seconds=2.5, device=cpu,
                             batch_size=2).astype(np.float32)
    assert whole.shape == chunked.shape == (num_frames(len(x)), 3, 32)
    # convolutional states: identical up to float16 rounding
    np.testing.assert_allclose(chunked[:, 0], whole[:, 0], rtol=2e-3, atol=2e-3)
    # transformer states see less context in a chunk than in the whole file: bounded relative difference
    for layer in (1, 2):
        rel = np.linalg.norm(chunked[:, layer] - whole[:, layer]) / np.linalg.norm(whole[:, layer])
        assert rel < 0.02, (layer, rel)


def test_extract_features_writes_hdf5_atomically(tiny_wavlm, tmp_path, write_wav):
    a = write_wav("a.wav", seconds=1.5)
    b = write_wav("b.wav", seconds=0.9, sr=8000, channels=2)
    manifest = tmp_path / "manifest.tsv"
    pd.DataFrame([{"uri": "a", "audio": str(a), "duration": 1.5, "num_frames": num_frames(24000)},
                  {"uri": "b", "audio": str(b), "duration": 0.9, "num_frames": num_frames(14400)}]
                 ).to_csv(manifest, sep="\t", index=False)
    out = tmp_path / "feats.h5"
    extract_features(manifest, out, str(tiny_wavlm), layers=[0, 2], chunk_seconds=0.5, overlap_seconds=0.2)
    with h5py.File(out) as h5:
        assert h5["a"].shape == (num_frames(24000), 2, 32) and h5["a"].dtype == np.float16
        assert h5["b"].shape[0] == num_frames(14400)
        assert list(h5.attrs["layers"]) == [0, 2] and bool(h5.attrs["untrained"])
        assert "torch" in h5.attrs["provenance"]
        assert not h5.attrs["do_normalize"] and '"do_normalize": false' in h5.attrs["provenance"]

    # a file that fails half-way leaves no HDF5 behind
    bad = tmp_path / "bad.tsv"
    pd.DataFrame([{"uri": "a", "audio": str(a), "duration": 1.5, "num_frames": num_frames(24000)},
                  {"uri": "z", "audio": str(tmp_path / "missing.wav"), "duration": 1.0, "num_frames": 49}]
                 ).to_csv(bad, sep="\t", index=False)
    out2 = tmp_path / "feats2.h5"
    with pytest.raises(InputError, match="missing.wav"):
        extract_features(bad, out2, str(tiny_wavlm), layers="all")
    assert not out2.exists() and not list(tmp_path.glob(".feats2.h5*"))


def test_layers_out_of_range(tiny_wavlm, tmp_path, write_wav):
    a = write_wav("a.wav", seconds=1.0)
    manifest = tmp_path / "m.tsv"
    pd.DataFrame([{"uri": "a", "audio": str(a), "duration": 1.0, "num_frames": 49}]).to_csv(manifest, sep="\t")
    with pytest.raises(InputError, match="out of range"):
        extract_features(manifest, tmp_path / "f.h5", str(tiny_wavlm), layers=[0, 7])


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="cannot load WavLM"):
        load_wavlm(str(tmp_path / "no-such-model"))


def test_chunked_extraction_with_group_norm_stays_close(tmp_path):
    """WavLM Base's layout (the demo's) normalises the first CNN layer over the whole input, so chunks differ
    from a whole-file pass, but only slightly when chunks are long."""
    path = build_untrained_wavlm(tmp_path / "base", seed=0, **{**TINY, "feat_extract_norm": "group",
                                                                "do_stable_layer_norm": False})
    net = load_wavlm(str(path))
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000 * 12)).astype(np.float32)
    cpu = torch.device("cpu")
    whole = extract_states(net, x, [0, 2], chunk_seconds=100, overlap_seconds=0, device=cpu).astype(np.float32)
    chunked = extract_states(net, x, [0, 2], chunk_seconds=4, overlap_seconds=2.5, device=cpu).astype(np.float32)
    for layer in (0, 1):
        rel = np.linalg.norm(chunked[:, layer] - whole[:, layer]) / np.linalg.norm(whole[:, layer])
        assert rel < 0.05, (layer, rel)


# ------------------------------------------------------------------------- waveform normalisation (METHOD §3)

#: WavLM Large's layout with its convolution biases (so the input level matters, as in the real model)
TINY_LARGE = {**TINY, "conv_bias": True}


def _hf_wavlm(path, do_normalize=None, seed=0):
    """A random WavLMModel saved with save_pretrained, plus a Wav2Vec2FeatureExtractor with ``do_normalize``
    (None: no preprocessor_config.json), as a hub model folder holds them."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(seed)
    WavLMModel(WavLMConfig(**TINY_LARGE)).save_pretrained(path)
    if do_normalize is not None:
        Wav2Vec2FeatureExtractor(do_normalize=do_normalize).save_pretrained(path)
    return path


def _states(model, wav) -> np.ndarray:
    """(t, L, D) hidden states of ``model`` on one waveform, rounded to float16 like the cache."""
    with torch.inference_mode():
        hidden = model(torch.as_tensor(wav, dtype=torch.float32)[None], output_hidden_states=True).hidden_states
    return torch.stack(hidden, dim=2)[0].numpy().astype(np.float16).astype(np.float32)


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_extraction_normalises_waveforms_as_the_feature_extractor_says(tmp_path, caplog, write_wav):
    from transformers import Wav2Vec2FeatureExtractor, WavLMModel

    rng = np.random.default_rng(0)
    x = (0.05 + 0.3 * rng.standard_normal(16000 * 3)).astype(np.float32)  # an offset and a level to remove
    cpu = torch.device("cpu")
    norm = _hf_wavlm(tmp_path / "norm", do_normalize=True)
    raw_model = WavLMModel.from_pretrained(norm).eval()  # the bare model: no preprocessing
    # the model's own preprocessing: what its feature extractor feeds it
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(norm)
    xn = extractor(x, sampling_rate=16000, return_tensors="np")["input_values"][0]
    np.testing.assert_allclose(normalize_waveform(torch.from_numpy(x)).numpy(), xn, atol=1e-5)
    want_norm, want_raw = _states(raw_model, xn), _states(raw_model, x)
    assert _rel(want_raw, want_norm) > 0.1  # the normalisation matters for this model

    net = load_wavlm(str(norm))
    assert net.do_normalize
    got = extract_states(net, x, [0, 1, 2], chunk_seconds=100, overlap_seconds=0, device=cpu).astype(np.float32)
    np.testing.assert_allclose(got, want_norm, rtol=5e-3, atol=5e-3)
    assert _rel(got, want_raw) > 0.1

    # do_normalize false: the raw waveform, as before
    off = _hf_wavlm(tmp_path / "off", do_normalize=False)
    net = load_wavlm(str(off))
    assert not net.do_normalize
    got = extract_states(net, x, [0, 1, 2], chunk_seconds=100, overlap_seconds=0, device=cpu).astype(np.float32)
    np.testing.assert_allclose(got, want_raw, rtol=5e-3, atol=5e-3)

    # a local folder without preprocessor_config.json: not normalised, and said so; explicit settings win
    bare = _hf_wavlm(tmp_path / "bare")
    with caplog.at_level("INFO", logger="proxyseg.features.wavlm"):
        assert not load_wavlm(str(bare)).do_normalize
    assert "no preprocessor_config.json" in caplog.text
    assert load_wavlm(str(bare), normalize=True).do_normalize and not load_wavlm(str(norm), normalize=False).do_normalize
    assert load_wavlm(str(bare), normalize="true").do_normalize
    with pytest.raises(InputError, match="auto, true or false"):
        load_wavlm(str(bare), normalize="sometimes")

    # the cache records it (attributes and provenance)
    a = write_wav("a.wav", seconds=1.5)
    manifest = tmp_path / "manifest.tsv"
    pd.DataFrame([{"uri": "a", "audio": str(a), "duration": 1.5, "num_frames": num_frames(24000)}]
                 ).to_csv(manifest, sep="\t", index=False)
    extract_features(manifest, tmp_path / "f.h5", str(norm), chunk_seconds=30, overlap_seconds=0)
    with h5py.File(tmp_path / "f.h5") as h5:
        assert h5.attrs["do_normalize"] and '"do_normalize": true' in h5.attrs["provenance"]
        assert '"normalize": "auto"' in h5.attrs["provenance"]
        from proxyseg.core.audio import load_audio
        np.testing.assert_allclose(h5["a"][()].astype(np.float32), _states(raw_model, extractor(
            load_audio(a), sampling_rate=16000, return_tensors="np")["input_values"][0]), rtol=5e-3, atol=5e-3)


def test_chunked_extraction_normalises_each_chunk(tmp_path):
    """Every chunk fed to the model (context included) is normalised with its own statistics, and each kept
    frame comes from its chunk: a quiet part is brought up to unit variance in its own chunks, not in the
    file's statistics (which a loud part dominates). Overlapping context is normalised once per chunk that
    contains it, so a sample's gain can differ between neighbouring chunks; no kept frame mixes two gains."""
    from transformers import WavLMModel

    net = load_wavlm(str(_hf_wavlm(tmp_path / "norm", do_normalize=True)))
    raw_model = WavLMModel.from_pretrained(tmp_path / "norm").eval()
    rng = np.random.default_rng(1)
    x = np.concatenate([0.02 * rng.standard_normal(16000 * 4),             # quiet
                        0.1 + 0.5 * rng.standard_normal(16000 * 4)]).astype(np.float32)  # loud, offset
    cpu = torch.device("cpu")
    chunked = extract_states(net, x, [0, 1, 2], chunk_seconds=2.0, overlap_seconds=0.5, device=cpu,
                             batch_size=3).astype(np.float32)
    plans = plan_chunks(num_frames(len(x)), 100, 25)
    for p in plans:
        chunk = x[slice(*p.samples)]
        want = _states(raw_model, (chunk - chunk.mean()) / np.sqrt(chunk.var() + 1e-7))
        lo = p.keep_start - p.ctx_start
        np.testing.assert_allclose(chunked[p.keep_start:p.keep_end], want[lo:lo + p.keep_end - p.keep_start],
                                   rtol=5e-3, atol=5e-3)
    # not what normalising the whole file gives (measured: about 0.5 relative difference on this signal)
    whole = extract_states(net, x, [0, 1, 2], chunk_seconds=100, overlap_seconds=0, device=cpu).astype(np.float32)
    assert _rel(chunked, whole) > 0.1
    # stationary audio: chunk and file statistics agree, and so do the states (measured: 0.0016)
    y = (0.1 * rng.standard_normal(16000 * 12)).astype(np.float32)
    a = extract_states(net, y, [0, 1, 2], chunk_seconds=4, overlap_seconds=2.5, device=cpu).astype(np.float32)
    b = extract_states(net, y, [0, 1, 2], chunk_seconds=100, overlap_seconds=0, device=cpu).astype(np.float32)
    assert _rel(a, b) < 0.01
