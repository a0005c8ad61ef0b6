import h5py
import numpy as np
import pytest

from proxyseg.evaluate.fidelity import fidelity_rows, fidelity_wide


def _probs(path, probs, **attrs):
    with h5py.File(path, "w") as h5:
        h5.attrs.update(attrs)
        h5.create_group("f")["probs"] = np.asarray(probs, dtype=np.float32)


def test_fidelity_is_frame_f1_of_proxy_against_teacher(tmp_path):
    teacher = np.zeros((10, 4))
    teacher[:4, 0] = 0.9  # speech on frames 0-3
    proxy = np.zeros((10, 4))
    proxy[2:6, 0] = 0.8  # 2 hits, 2 false alarms, 2 misses -> F1 = 0.5
    _probs(tmp_path / "t.h5", teacher)
    _probs(tmp_path / "p.h5", proxy, recon_mse=0.25, sparsity=0.75)
    rows = fidelity_rows("p", "c", tmp_path / "t.h5", tmp_path / "p.h5").set_index("class")
    assert rows.loc["speech", "fidelity_f1"] == pytest.approx(0.5)
    assert rows.loc["music", "fidelity_f1"] == 1.0  # both silent everywhere: full agreement
    assert rows.loc["speech", "recon_mse"] == 0.25 and rows.loc["speech", "sparsity"] == 0.75
    wide = fidelity_wide(rows.reset_index())
    assert wide.loc[0, "c / speech F1"] == pytest.approx(50.0)
