"""config/explain_silero.yaml and config/explain_pyannote.yaml end to end on real recordings. The bars
(issue "Numbers that hold", item 5: for an explainer, agreement with the black box is what counts): on
the held-out AMI development files each proxy agrees with its black box beyond chance (kappa >= 0.8,
frame F1 >= 90) and, where the black box scores above both floors (constant output, energy threshold)
against the references, so does the proxy (Silero, at 82.2, is under both on that minute: 83.0, 85.7);
agreement on the held-back sources of other kinds is reported in tables/fidelity.md, not asserted (the
0.8 target is not met there yet: docs/results.md). About an hour on two cores: only `pytest --real` (or
-m real) runs it; it skips where the extra, ../shared or apt-get is missing."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "real"


@pytest.mark.real
@pytest.mark.parametrize("kind", ["silero", "pyannote"])
def test_real_config_meets_the_bars(tmp_path, kind):
    pytest.importorskip({"silero": "silero_vad", "pyannote": "pyannote.audio"}[kind])
    if not SHARED.is_dir():
        pytest.skip("../shared/data/real is absent")
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is absent: the config fetches Debian packages")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(REPO.parent / "shared", tmp_path / "shared")  # the config says ../shared/data/real
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
                          "--configfile", str(REPO / "config" / f"explain_{kind}.yaml"), "--cores", "2"],
                         capture_output=True, text=True, env=env, timeout=3600)
    assert run.returncode == 0, run.stderr[-4000:]
    r = work / f"results-explain-{kind}"
    seg = pd.read_csv(r / "tables/segmentation.tsv", sep="\t")
    seg = seg[(seg["corpus"] == "ami") & (seg["class"] == "speech") & seg["domain"].isna()] \
        if "domain" in seg.columns else seg[(seg["corpus"] == "ami") & (seg["class"] == "speech")]
    f1 = seg.set_index("system")["f1"]
    fid = pd.read_csv(r / "tables/fidelity.tsv", sep="\t")
    fid = fid[(fid["corpus"] == "ami") & (fid["class"] == "speech") & ~fid["system"].str.endswith(" uncalibrated")]
    fid = fid.set_index("system")
    faith = pd.read_csv(r / "tables/faithfulness_summary.tsv", sep="\t")
    faith = faith[(faith["class"] == "speech") & (faith["metric"] == "auc_gap_random_active")].set_index("system")
    for proxy in fid.index:
        assert fid.loc[proxy, "kappa"] >= 0.8 and fid.loc[proxy, "fidelity_f1"] >= 0.90, (proxy, fid.to_dict())
        floor = max(f1["constant output"], f1["energy threshold"])
        if f1["teacher"] > floor:  # a proxy that agrees with a black box under the floors is under them too
            assert f1[proxy] > floor, (proxy, f1.to_dict())
        assert faith.loc[proxy, "segments"] > 0  # the test runs on the real files; passing it is a later issue
