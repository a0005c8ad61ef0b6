"""Sharded feature caching: shard assignment, batch plan, the gathered index, and invariance to N."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from proxyseg.core.errors import InputError
from proxyseg.features.demo_wavlm import build_untrained_wavlm
from proxyseg.features.wavlm import (BatchRunner, Chunk, extract_features, extract_states,
                               load_wavlm, plan_batches)
from proxyseg.core.frames import num_frames
from proxyseg.features.shards import assign_shards, check_index, gather_features, parse_shard
from proxyseg.core.hdf5 import h5_datasets
from proxyseg.teacher.train import train_teacher

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7)


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "wavlm"
    build_untrained_wavlm(path, seed=0, **TINY)
    return str(path)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A split of 7 files of mixed lengths (some equal, one shorter than a frame) and frame targets."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(3)
    rows = []
    with h5py.File(root / "targets.h5", "w") as targets:
        for i, seconds in enumerate([2.3, 1.0, 1.0, 3.7, 0.02, 1.6, 2.9]):
            n = int(seconds * 16000)
            audio = root / f"f{i}.wav"
            sf.write(audio, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
            rows.append({"uri": f"file{i}", "audio": str(audio), "duration": n / 16000, "num_frames": num_frames(n)})
            targets[f"file{i}"] = rng.integers(-1, 2, size=(num_frames(n), 4)).astype(np.int8)
    # listed out of order on purpose: shards sort by URI
    pd.DataFrame(rows[::-1]).to_csv(root / "manifest.tsv", sep="\t", index=False)
    return root


def _sharded(split, model, count, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for i in range(count):
        shard = out_dir / f"shard{i + 1}-of-{count}.h5"
        extract_features(split / "manifest.tsv", shard, model, chunk_seconds=0.6, overlap_seconds=0.2,
                         batch_size=3, device="cpu", shard=(i, count))
        shards.append(shard)
    index = out_dir / "index.h5"
    gather_features(shards, index)
    return index


def _read_all(path):
    with h5py.File(path, "r") as h5:
        return {name: ds[()] for name, ds in h5_datasets(h5).items()}, dict(h5.attrs)


def test_parse_shard():
    assert parse_shard("2-of-4") == (1, 4) and parse_shard("1/1") == (0, 1)
    for bad in ("0-of-3", "4-of-3", "two"):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_shards_are_contiguous_balanced_and_cover_every_file_once():
    rng = np.random.default_rng(0)
    uris = [f"u{i:03d}" for i in range(50)]
    durations = rng.uniform(10, 600, size=50)
    shuffled = rng.permutation(50)
    owner = assign_shards([uris[i] for i in shuffled], durations[shuffled], 4)
    by_uri = dict(zip([uris[i] for i in shuffled], owner))
    sequence = [by_uri[u] for u in uris]
    assert sequence == sorted(sequence) and set(sequence) == {0, 1, 2, 3}  # contiguous runs in URI order
    load = np.bincount([by_uri[u] for u in uris], weights=durations, minlength=4)
    assert load.max() - load.min() < 2 * durations.max()
    # more shards than files: every file once, some shards empty
    assert sorted(assign_shards(["a", "b"], [1.0, 1.0], 5).tolist()) == [1, 3]


def test_batch_plan_covers_every_chunk_once_with_equal_lengths():
    frames = [120, 0, 47, 120, 300]
    batches = plan_batches(frames, 50, 10, 4)
    kept = {i: [] for i in range(len(frames))}
    for batch in batches:
        assert len(batch) <= 4 and len({c.length for c in batch}) == 1
        for c in batch:
            kept[c.file].extend(range(c.plan.keep_start, c.plan.keep_end))
    for i, n in enumerate(frames):
        assert sorted(kept[i]) == list(range(n))
    # files of equal length share batches (file 0 and file 3 have the same chunk lengths)
    assert any({c.file for c in b} >= {0, 3} for b in batches)


@pytest.fixture(scope="module")
def caches(split, tiny_wavlm, tmp_path_factory):
    """The split cached in one piece (no shards, no index) and gathered from 3 and from 9 shards."""
    root = tmp_path_factory.mktemp("caches")
    whole = root / "whole.h5"
    extract_features(split / "manifest.tsv", whole, tiny_wavlm, chunk_seconds=0.6, overlap_seconds=0.2,
                     batch_size=3, device="cpu")
    return {1: whole, **{n: _sharded(split, tiny_wavlm, n, root / f"n{n}") for n in (3, 9)}}


def test_sharded_features_equal_unsharded_bit_for_bit(caches):
    reference, ref_attrs = _read_all(caches[1])
    assert len(reference) == 7 and reference["file4"].shape[0] == 0
    for count in (3, 9):  # 9 shards for 7 files: some shards are empty
        index = caches[count]
        got, attrs = _read_all(index)
        assert sorted(got) == sorted(reference)
        for uri, states in reference.items():
            assert got[uri].dtype == np.float16 and np.array_equal(got[uri], states), (count, uri)
        assert list(attrs["layers"]) == list(ref_attrs["layers"]) and attrs["model"] == ref_attrs["model"]
        assert len(json.loads(attrs["shards"])) == count
        check_index(index)


def test_index_is_relocatable_and_a_missing_shard_is_reported(split, tiny_wavlm, tmp_path):
    _sharded(split, tiny_wavlm, 2, tmp_path / "a" / "features")
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    got, _ = _read_all(moved / "features" / "index.h5")
    assert np.isfinite(got["file3"].astype(np.float32)).all()
    (moved / "features" / "shard1-of-2.h5").unlink()
    with pytest.raises(InputError, match="shard1-of-2.h5"):
        check_index(moved / "features" / "index.h5")
    with h5py.File(moved / "features" / "index.h5") as h5:  # never plausible zeros
        assert np.isnan(h5["file0"][:2].astype(np.float32)).all()


def test_gather_rejects_overlapping_or_mismatched_shards(split, tiny_wavlm, tmp_path):
    a = tmp_path / "a.h5"
    extract_features(split / "manifest.tsv", a, tiny_wavlm, chunk_seconds=0.6, overlap_seconds=0.2, device="cpu")
    with pytest.raises(InputError, match="also in shard"):
        gather_features([a, a], tmp_path / "index.h5")
    b = tmp_path / "b.h5"
    extract_features(split / "manifest.tsv", b, tiny_wavlm, layers=[0, 1], chunk_seconds=0.6,
                     overlap_seconds=0.2, device="cpu", shard=(0, 2))
    c = tmp_path / "c.h5"
    extract_features(split / "manifest.tsv", c, tiny_wavlm, layers=[0, 2], chunk_seconds=0.6,
                     overlap_seconds=0.2, device="cpu", shard=(1, 2))
    with pytest.raises(InputError, match="'layers'"):
        gather_features([b, c], tmp_path / "index.h5")
    assert not (tmp_path / "index.h5").exists()


def test_teacher_checkpoint_does_not_depend_on_the_shard_count(split, caches, tmp_path):
    settings = {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "crop_seconds": 0.5, "repeats": 1}
    states = []
    for count in (1, 3):
        pair = [(caches[count], split / "targets.h5")]
        train_teacher(pair, pair, tmp_path / f"teacher{count}", settings, seed=7)
        states.append(torch.load(tmp_path / f"teacher{count}" / "model.pt", map_location="cpu",
                                 weights_only=False))
    a, b = (s["state_dict"] if "state_dict" in s else s for s in states)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class _OomOnBigBatches(torch.nn.Module):
    """Wraps a WavLM and raises CUDA's out-of-memory error for batches above ``limit``."""

    def __init__(self, net, limit):
        super().__init__()
        self.net, self.limit, self.config, self.calls = net, limit, net.config, []

    def forward(self, wav, **kwargs):
        self.calls.append(len(wav))
        if len(wav) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(wav, **kwargs)


def test_out_of_memory_halves_the_batch_and_keeps_every_frame(tiny_wavlm):
    net = load_wavlm(tiny_wavlm)
    x = (0.1 * np.random.default_rng(0).standard_normal(16000 * 3)).astype(np.float32)
    cpu = torch.device("cpu")
    expected = extract_states(net, x, [0, 2], 0.3, 0.06, cpu, batch_size=1)
    flaky = _OomOnBigBatches(net, limit=2)
    runner = BatchRunner(flaky, [0, 2], cpu, half=False)
    batch = [c for b in plan_batches([num_frames(len(x))], 15, 3, 8) for c in b if len(b) == 8][:8]
    assert len(batch) == 8
    with torch.inference_mode():
        out = runner.run(lambda _: x, batch)
    assert runner.splits == 3 and flaky.calls[:3] == [8, 4, 2]
    for chunk, states in zip(batch, out):
        ref = expected[chunk.plan.keep_start:chunk.plan.keep_end]
        np.testing.assert_allclose(states.astype(np.float32), ref.astype(np.float32), atol=1e-2)
    # an error that is not about memory is not swallowed
    broken = _OomOnBigBatches(net, limit=0)
    broken.forward = lambda wav, **kw: (_ for _ in ()).throw(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        BatchRunner(broken, [0], cpu, half=False).run(lambda _: x, batch[:2])
    assert isinstance(Chunk(0, batch[0].plan).length, int)
