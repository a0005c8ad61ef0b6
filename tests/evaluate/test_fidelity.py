import h5py
import numpy as np
import pytest

from proxyseg.evaluate.fidelity import fidelity_rows, fidelity_sets, fidelity_wide


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
    # kappa: agreement 6/10, chance 0.4*0.4 + 0.6*0.6 = 0.52 -> (0.6 - 0.52) / 0.48
    assert rows.loc["speech", "kappa"] == pytest.approx(1 / 6)
    assert np.isnan(rows.loc["music", "kappa"])  # both constant: chance agreement is already full
    # the floor: "speech" on all 10 frames against the teacher's 4 -> F1 = 8 / 14
    assert rows.loc["speech", "constant_f1"] == pytest.approx(8 / 14)
    wide = fidelity_wide(rows.reset_index()).set_index("system")
    assert wide.loc["p", "c / speech F1"] == pytest.approx(50.0)
    assert wide.loc["p", "c / speech kappa"] == pytest.approx(1 / 6)
    assert wide.loc["constant output", "c / speech F1"] == pytest.approx(100 * 8 / 14)
    assert wide.loc["constant output", "c / speech kappa"] == 0.0
    assert wide.loc["p", "c recon_mse"] == 0.25
    # per set: how often each decides the class and the audio behind the row (10 frames at 50 per second)
    sets = fidelity_sets(rows.reset_index()).set_index("class")
    assert sets.loc["speech", "teacher %"] == 40.0 and sets.loc["speech", "system %"] == 40.0
    assert sets.loc["speech", "minutes"] == pytest.approx(10 / 50 / 60) and sets.loc["speech", "set"] == "c"


def test_kappa_tells_agreement_from_a_shared_rate():
    # two outputs that say "speech" on 70 % of the frames, independently: high F1, kappa near 0
    from proxyseg.core.agreement import cohen_kappa, frame_f1

    rng = np.random.default_rng(0)
    a, b = rng.random(20000) < 0.7, rng.random(20000) < 0.7
    assert frame_f1(a, b) > 0.68 and abs(cohen_kappa(a, b)) < 0.03
    assert cohen_kappa(a, a) == 1.0 and cohen_kappa(a, ~a) < -0.5
