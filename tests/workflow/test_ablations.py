"""Ablations by config: a proxy that overrides nmf settings gets its own dictionary, the others share one."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def dry_run(tmp_path, *configs):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "-n", "--cores", "1", "--configfile", *map(str, configs)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def jobs(out: str, rule: str) -> list[str]:
    """The text of every planned job of ``rule`` in a dry run's output."""
    blocks = re.split(r"\n(?=\[[A-Z][a-z]{2} )", out.split("Job stats:", 1)[1])  # each job starts with [date]
    return [b.split("\n\n")[0] for b in blocks if f"rule {rule}:" in b]


def test_demo_has_one_dictionary(tmp_path):
    out = dry_run(tmp_path, REPO / "config.yaml")
    assert len(jobs(out, "pretrain_nmf")) == 1 and not jobs(out, "pretrain_nmf_variant")
    assert len(jobs(out, "faithfulness")) == 4 and len(jobs(out, "export_model")) == 4
    assert jobs(out, "saliency_table") and jobs(out, "faithfulness_table")


def test_example_ablations_build_their_own_dictionaries(tmp_path):
    out = dry_run(tmp_path, REPO / "config.yaml", REPO / "examples/ablations.yaml")
    variants = jobs(out, "pretrain_nmf_variant")
    names = sorted(b.split("nmf/variants/")[1].split("/")[0] for b in variants)
    assert names == ["wavlm_fixedW_K256", "wavlm_fixedW_K32", "wavlm_fixedW_Wmeeting", "wavlm_fixedW_Wradio",
                     "wavlm_fixedW_mu0"]
    meeting = next(b for b in variants if "variants/wavlm_fixedW_Wmeeting/" in b)
    assert "spectrograms/demo_meeting/train.h5" in meeting and "demo_radio" not in meeting.split("output:")[0]
    train = {b.split("proxies/")[1].split("/")[0]: b for b in jobs(out, "train_proxy")}
    assert len(train) == 11
    assert "nmf/variants/wavlm_fixedW_K32/dictionary.npz" in train["wavlm_fixedW_K32"]
    assert "results/nmf/dictionary.npz" in train["wavlm_fixedW_gamma1"]  # gamma is a proxy setting
    assert "results/nmf/dictionary.npz" in train["spec_fixedW"]


def test_identical_overrides_share_a_dictionary(tmp_path):
    extra = {"proxies": {"a_K16": {"input": "wavlm", "nmf": {"components": 16}},
                         "b_K16": {"input": "spectrogram", "nmf": {"components": 16}},
                         "same": {"input": "wavlm", "nmf": {"components": 128}}}}  # = the global setting
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
    out = dry_run(tmp_path, REPO / "config.yaml", tmp_path / "extra.yaml")
    assert len(jobs(out, "pretrain_nmf_variant")) == 1
    train = {b.split("proxies/")[1].split("/")[0]: b for b in jobs(out, "train_proxy")}
    assert "nmf/variants/a_K16/dictionary.npz" in train["b_K16"]
    assert "results/nmf/dictionary.npz" in train["same"]
