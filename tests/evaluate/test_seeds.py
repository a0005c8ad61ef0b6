"""The headline over seeds: mean and range per system, corpus and class, and runs that do not match refused."""

import json

import pandas as pd
import pytest

from proxyseg.core.errors import InputError
from proxyseg.evaluate.seeds import seeds_tables


def _run(root, seed, f1s, kappa=None):
    (root / "tables").mkdir(parents=True)
    (root / "teacher").mkdir()
    (root / "teacher" / "train.json").write_text(json.dumps({"seed": seed}))
    rows = [{"system": s, "corpus": "radio", "class": "noise", "f1": f, "precision": 1, "recall": 1}
            for s, f in f1s.items()]
    pd.DataFrame(rows).to_csv(root / "tables" / "segmentation.tsv", sep="\t", index=False)
    if kappa is not None:
        pd.DataFrame([{"system": "p", "corpus": "radio", "class": "noise", "kappa": kappa, "fidelity_f1": 0.5}]) \
            .to_csv(root / "tables" / "fidelity.tsv", sep="\t", index=False)
    return root


def test_mean_and_range_over_seeds(tmp_path):
    runs = [_run(tmp_path / f"r{s}", s, {"teacher": t, "p": p, "constant output": 0.4}, k)
            for s, t, p, k in [(0, 0.90, 0.60, 0.5), (1, 0.92, 0.70, 0.7), (2, 0.94, 0.80, 0.6)]]
    long = seeds_tables(runs, tmp_path / "seeds.tsv", tmp_path / "seeds.md").set_index(["metric", "system"])
    assert long.loc[("f1", "p"), "mean"] == pytest.approx(0.70)
    assert (long.loc[("f1", "p"), "min"], long.loc[("f1", "p"), "max"]) == (0.60, 0.80)
    assert long.loc[("f1", "teacher"), "runs"] == 3 and long.loc[("f1", "p"), "seeds"] == "0,1,2"
    assert long.loc[("kappa", "p"), "mean"] == pytest.approx(0.6)
    md = (tmp_path / "seeds.md").read_text()
    assert "70.0 (60.0-80.0)" in md and "92.0 (90.0-94.0)" in md
    assert "| constant output | 40.0 " in md  # a floor: the same in every run, one value
    assert "0.60 (0.50-0.70)" in md


def test_runs_of_another_configuration_are_refused(tmp_path):
    a = _run(tmp_path / "a", 0, {"teacher": 0.9, "p": 0.6})
    b = _run(tmp_path / "b", 1, {"teacher": 0.9, "q": 0.6})  # another proxy: not the same configuration
    with pytest.raises(InputError, match="other rows"):
        seeds_tables([a, b], tmp_path / "s.tsv", tmp_path / "s.md")
    with pytest.raises(InputError, match="not found"):
        seeds_tables([a, tmp_path / "missing"], tmp_path / "s.tsv", tmp_path / "s.md")
    assert not (tmp_path / "s.md").exists()  # nothing half-written
