"""The same numbers on another machine (issue "Numbers that hold", item 1): the small run repeated in
another working directory with MKL held to AVX2 (``MKL_ENABLE_INSTRUCTIONS=AVX2``, MKL as on an AVX2-only
or AMD machine) trains the same weights and writes the same tables as ``small_run``. On an AVX-512 machine
this fails without ``proxyseg.core.numerics``'s pin (MKL's AVX-512 kernels sum in another order); on an
AVX2 machine both runs take the same path."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import small_config
from proxyseg.core.numerics import PINS

REPO = Path(__file__).resolve().parents[2]
MODELS = ["models/wavlm-demo/model.safetensors", "teacher/model.pt", "nmf/dictionary.npz"]
TABLES = ["tables/segmentation.tsv", "tables/fidelity.tsv"]


def _weights(path: Path) -> dict:
    if path.suffix == ".pt":
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v for k, v in ckpt["state_dict"].items()}
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path) as z:
            return {k: torch.from_numpy(z[k]) for k in z.files if z[k].dtype.kind in "fiu"}
    from safetensors.torch import load_file

    return load_file(path)


@pytest.mark.slow
def test_another_directory_and_mkl_at_avx2_give_the_same_models_and_tables(small_run, tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(small_config()))
    proxies = [f"proxies/{p}/model.pt" for p in small_config()["proxies"]]
    # the user's environment without any kernel setting, then MKL's ceiling at AVX2; proxyseg pins the rest
    env = {k: v for k, v in os.environ.items() if k not in PINS and not k.startswith("MKL_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               MKL_ENABLE_INSTRUCTIONS="AVX2")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "2",
                          *[f"results/{t}" for t in TABLES]], capture_output=True, text=True, env=env, timeout=3600)
    assert run.returncode == 0, run.stderr[-4000:]
    for name in MODELS + proxies:
        a, b = _weights(small_run / "results" / name), _weights(tmp_path / "results" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    for name in TABLES:
        assert (small_run / "results" / name).read_bytes() == (tmp_path / "results" / name).read_bytes(), name
