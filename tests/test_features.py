import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from proxyseg.errors import InputError
from proxyseg.features import build_untrained_wavlm, extract_features, extract_states, load_wavlm, plan_chunks
from proxyseg.frames import num_frames


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    """A tiny random WavLM saved with save_pretrained: the same loading path as a hub model."""
    path = tmp_path_factory.mktemp("models") / "wavlm"
    build_untrained_wavlm(path, seed=0, **TINY)
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
