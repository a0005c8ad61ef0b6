"""Spectrogram cache: X = log(1 + |STFT|^2) of every file of a split, on the WavLM frame grid.

X is the proxy's reconstruction target (and the input of spectrogram-input proxies) and the NMF
dictionary's training material, so it is computed once per split and read as crops afterwards. With
``spectrogram.level_db`` each file is first brought to that level; its gain is kept as the dataset's
``gain`` attribute (1.0 at the raw level), which the listenable explanations and the black box's
faithfulness test use to go back to the file's own level.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from proxyseg.core.atomic import atomic_path
from proxyseg.core.errors import InputError
from proxyseg.core.frames import FRAME_RATE, HOP
from proxyseg.core.audio import load_audio
from proxyseg.core.provenance import provenance_json
from proxyseg.settings import Spectrogram
from proxyseg.dictionary.spectrogram import block_powers, level_gain, log_power_spectrogram, scaled
from proxyseg.dsp import stft_frequencies


def cache_spectrograms(manifest: str | os.PathLike, out_h5: str | os.PathLike, n_fft: int = Spectrogram.n_fft,
                       win_length: int = Spectrogram.win_length, level_db: float | None = Spectrogram.level_db) -> None:
    """One float16 ``(T, F)`` dataset per URI of ``manifest`` (written atomically)."""
    table = pd.read_csv(manifest, sep="\t")
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(n_fft=n_fft, win_length=win_length, hop=HOP, frame_rate=FRAME_RATE,
                        freqs_hz=stft_frequencies(n_fft),
                        provenance=provenance_json(n_fft=n_fft, win_length=win_length, hop=HOP, level_db=level_db))
        if level_db is not None:  # absent: the raw level (HDF5 attributes hold no None)
            h5.attrs["level_db"] = float(level_db)
        for row in tqdm(table.itertuples(), total=len(table), desc="spectrograms", unit="file"):
            samples = load_audio(row.audio)
            gain = 1.0 if level_db is None else level_gain(block_powers(samples), level_db)  # no float64 copy when off
            x = log_power_spectrogram(scaled(samples, gain), n_fft=n_fft, win_length=win_length)
            if x.shape[1] != row.num_frames:
                raise InputError(row.audio, f"audio gives {x.shape[1]} frames but {manifest} says "
                                            f"{row.num_frames}; the file changed after harmonisation: rerun it")
            data = x.T.numpy().astype(np.float16)
            h5.create_dataset(row.uri, data=data, chunks=(min(len(data), 250) or 1, data.shape[1]))
            h5[row.uri].attrs["gain"] = gain
