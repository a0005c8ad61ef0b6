"""Sharded feature caches: which files a shard owns, and the index that gathers the shards.

A corpus split is cut into N shards (one extraction job and one HDF5 file each). The index is an HDF5
file holding one *virtual dataset* per file that maps onto the shard holding it, so every reader
(``h5py.File(index)[uri]``, ``visititems``) sees one features file, exactly as if it had been written
in one piece. Source paths are stored relative to the index, so a results folder can be moved whole.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from proxyseg.core.atomic import atomic_path
from proxyseg.core.errors import InputError
from proxyseg.core.provenance import provenance_json
from proxyseg.core.hdf5 import h5_datasets

#: Root attributes every shard of one index must agree on (they say which model made the features).
#: The batch size may differ (it shrinks when a job is retried after running out of memory).
SHARED_ATTRS = ("model", "revision", "untrained", "layers", "hidden_size", "frame_rate", "chunk_seconds",
                "overlap_seconds")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2-of-4"`` or ``"2/4"`` (1-based, Snakemake's scatter item) -> ``(1, 4)`` (0-based index, count)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-of-|/)\s*(\d+)\s*", str(text))
    if not match:
        raise InputError(None, f"shard {text!r} is not of the form I-of-N (e.g. 2-of-4)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise InputError(None, f"shard {text!r}: I must be between 1 and N")
    return index - 1, count


def assign_shards(uris, durations, count: int) -> np.ndarray:
    """Shard (0-based) of every file: contiguous runs of the URI-sorted files with about equal audio time.

    A file goes to the shard its duration midpoint falls into. Contiguous runs keep the shards'
    boundaries, and so the work duplicated across them, small (see ``features.plan_batches``).
    """
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    order = np.argsort(np.asarray(uris, dtype=object), kind="stable")
    dur = np.asarray(durations, dtype=float)[order]
    dur = np.where(dur > 0, dur, 0.0)
    total = dur.sum()
    if total <= 0:  # no durations: balance by count
        dur, total = np.ones_like(dur), float(len(dur))
    mid = np.cumsum(dur) - dur / 2
    shard_sorted = np.minimum((mid / total * count).astype(int), count - 1) if len(dur) else np.zeros(0, int)
    out = np.empty(len(dur), dtype=int)
    out[order] = shard_sorted
    return out


def sort_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """The split's files in the one order every shard uses (by URI)."""
    return table.sort_values("uri", kind="stable").reset_index(drop=True)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def gather_features(shards, out_h5: str | os.PathLike) -> dict:
    """Write ``out_h5``: one virtual dataset per file of every shard, attributes checked for agreement.

    A URI in two shards, or shards made with different models, layers or chunking, is an ``InputError``
    naming the files. Returns ``{"files", "shards", "frames"}``.
    """
    out_h5 = Path(out_h5)
    shards = [Path(s) for s in shards]
    if not shards:
        raise InputError(None, "gather-features needs at least one shard")
    attrs: dict = {}
    attrs_from = ""
    owner: dict[str, Path] = {}
    layout: list[tuple[Path, str, tuple, np.dtype]] = []
    counts = set()
    for shard in shards:
        try:
            fh = h5py.File(shard, "r", locking=False)
        except OSError as err:
            raise InputError(shard, f"cannot open feature shard ({err}); rerun its extraction job") from err
        with fh:
            if "shard_count" in fh.attrs:
                counts.add(int(fh.attrs["shard_count"]))
            for key in SHARED_ATTRS:
                if key not in fh.attrs:
                    continue
                value = fh.attrs[key]
                if key not in attrs:
                    attrs[key] = value
                    attrs_from = attrs_from or str(shard)
                elif not _same(attrs[key], value):
                    raise InputError(shard, f"attribute {key!r} = {value!r} differs from {attrs_from} "
                                            f"({attrs[key]!r}): all shards must come from one extraction setting")
            for name, ds in sorted(h5_datasets(fh).items()):
                if name in owner:
                    raise InputError(shard, f"file {name!r} is also in shard {owner[name]}: shards must not overlap")
                owner[name] = shard
                layout.append((shard, name, tuple(ds.shape), ds.dtype))
    if len(counts) > 1:
        raise InputError(shards[0], f"shards come from different shard counts {sorted(counts)}: "
                                    "gather the shards of one scatter only")
    if counts and counts != {len(shards)}:
        raise InputError(shards[0], f"{len(shards)} shard file(s) given but they were cut into {counts.pop()}")
    frames = 0
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        for shard, name, shape, dtype in layout:
            rel = os.path.relpath(shard.resolve(), out_h5.resolve().parent)
            vlayout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            vlayout[...] = h5py.VirtualSource(rel, name, shape=shape, dtype=dtype)
            # a source that vanished later reads as NaN (never as plausible zeros)
            h5.create_virtual_dataset(name, vlayout, fillvalue=np.nan)
            frames += shape[0] if shape else 0
        h5.attrs.update(attrs)
        names = [os.path.relpath(s.resolve(), out_h5.resolve().parent) for s in shards]
        h5.attrs["shards"] = json.dumps(names)
        h5.attrs["provenance"] = provenance_json(stage="gather_features", shards=names, files=len(layout))
    return {"files": len(layout), "shards": len(shards), "frames": frames}


def check_index(index_h5: str | os.PathLike) -> None:
    """Raise an ``InputError`` if a shard an index points to is missing (its data would read as NaN)."""
    index_h5 = Path(index_h5)
    with h5py.File(index_h5, "r", locking=False) as h5:
        names = json.loads(h5.attrs.get("shards", "[]"))
    missing = [n for n in names if not (index_h5.parent / n).is_file()]
    if missing:
        raise InputError(index_h5, f"shard(s) {', '.join(missing)} are missing: rerun the feature extraction")
