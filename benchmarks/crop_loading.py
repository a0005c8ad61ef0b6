"""Training-crop loading: streamed from HDF5 crop by crop against read into memory once (`preload_mb`).

    python benchmarks/crop_loading.py                     # the demo's sizes: 80 files of 30 s, L=5, D=256
    python benchmarks/crop_loading.py --files 200 --layers 25 --dim 1024 --preload-mb 20000

Writes synthetic caches shaped like the workflow's (teacher: features (T, L, D) float16 + targets (T, 4);
proxy: a teacher dump with logits (T, 4) and S (T, D) + a spectrogram cache (T, F)), then times one
epoch of crops through a DataLoader (``--steps`` batches of ``--batch`` crops of 4 s, no workers) for
each reader, keeping the best of ``--repeats``. Prints seconds per epoch, the ratio, and the one-off
cost of reading everything into memory. Only the loading is timed, not the training step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from proxyseg.proxy.data import ProxyTrainCrops
from proxyseg.teacher.data import TrainCrops
from proxyseg.training import make_loader


def write_caches(root: Path, files: int, frames: int, layers: int, dim: int, n_freq: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats, targets, dump, spec = (root / n for n in ("features.h5", "targets.h5", "dump.h5", "spec.h5"))
    with h5py.File(feats, "w") as f, h5py.File(targets, "w") as t, h5py.File(dump, "w") as d, \
            h5py.File(spec, "w") as s:
        for i in range(files):
            uri = f"file{i:04d}"
            f.create_dataset(uri, data=rng.standard_normal((frames, layers, dim), dtype=np.float32).astype(np.float16))
            t.create_dataset(uri, data=rng.integers(-1, 2, (frames, 4)).astype(np.float32))
            g = d.create_group(uri)
            g.create_dataset("logits", data=rng.standard_normal((frames, 4), dtype=np.float32))
            g.create_dataset("features", data=rng.standard_normal((frames, dim), dtype=np.float32).astype(np.float16))
            s.create_dataset(uri, data=rng.random((frames, n_freq), dtype=np.float32).astype(np.float16))
    return (feats, targets), (dump, spec)


def epoch_seconds(dataset, batch: int, repeats: int) -> float:
    best = float("inf")
    for epoch in range(1, repeats + 1):
        dataset.set_epoch(epoch)
        t0 = time.perf_counter()
        for _ in make_loader(dataset, batch, 0, 0, False):
            pass
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=80)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--freq", type=int, default=257)
    ap.add_argument("--steps", type=int, default=20, help="batches per epoch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preload-mb", type=float, default=2048)
    a = ap.parse_args()
    crop = 200  # 4 s at 50 frames/s
    frames = int(a.seconds * 50)
    with tempfile.TemporaryDirectory() as tmp:
        teacher_pair, proxy_pair = write_caches(Path(tmp), a.files, frames, a.layers, a.dim, a.freq)
        readers = {
            "teacher (features + targets)": lambda: TrainCrops([teacher_pair], crop, num_items=a.steps * a.batch,
                                                               states_dtype=np.float16),
            "proxy, wavlm input (dump + spectrogram)": lambda: ProxyTrainCrops([proxy_pair], crop, "wavlm",
                                                                                 num_items=a.steps * a.batch),
            "proxy, spectrogram input": lambda: ProxyTrainCrops([proxy_pair], crop, "spectrogram",
                                                                num_items=a.steps * a.batch),
        }
        print(f"{a.files} files of {a.seconds:g} s, L={a.layers}, D={a.dim}, F={a.freq}; "
              f"{a.steps} batches x {a.batch} crops of {crop} frames per epoch; best of {a.repeats}")
        for name, make in readers.items():
            streamed = make()
            s_stream = epoch_seconds(streamed, a.batch, a.repeats)
            streamed.close()
            memory = make()
            t0 = time.perf_counter()
            if not memory.preload(a.preload_mb):
                print(f"{name}: over --preload-mb, streamed only: {s_stream:.3f} s/epoch")
                continue
            t_load = time.perf_counter() - t0
            s_memory = epoch_seconds(memory, a.batch, a.repeats)
            memory.close()
            print(f"{name}: streamed {s_stream:.3f} s/epoch, in memory {s_memory:.3f} s/epoch "
                  f"({s_stream / s_memory:.1f}x faster); reading into memory once took {t_load:.2f} s")


if __name__ == "__main__":
    main()
