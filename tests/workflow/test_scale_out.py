"""The small demo workflow (config/test.yaml) on a real Slurm (single node, set up and torn down here), and
its report. The Slurm tests are marked ``slurm``, the whole module ``slow``: `pytest --all` runs them.

The Slurm run goes through snakemake-executor-plugin-slurm with tests/slurm/profile and 2 feature shards
per split; a local run with 1 shard is the reference: the tables, the features and the teacher checkpoint
must be equal. Skips, saying why, where the plugin is not installed or Slurm cannot be installed and
started (not root, no apt).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slurm.cluster import LocalSlurm, SlurmUnavailable, install, job_gpus, submitted_jobs  # noqa: E402
from conftest import small_config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "tests" / "slurm" / "profile"
SLURM_TIMEOUT = 3600  # seconds; a safety net: Snakemake can hang for ever if it loses track of its jobs (SLURM.md)
# Every rule, but fewer jobs than tests/workflow/test_workflow.py's run (each Slurm job starts Python three times):
# one corpus, and two of the paper's four proxies (one per input kind).
CORPUS = "demo_radio"
PROXIES = {"wavlm_fixedW": {"input": "wavlm", "dictionary": "fixed"},
           "spec_learnedW": {"input": "spectrogram", "dictionary": "learned"}}
TABLES = ["segmentation.tsv", "fidelity.tsv", "class_hours.tsv"]

pytestmark = pytest.mark.slow


def _config(workdir: Path) -> Path:
    config = small_config()  # config/test.yaml
    config["proxies"] = PROXIES
    config["corpora"] = {CORPUS: config["corpora"][CORPUS]}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _command(workdir: Path, *args: str, env=None) -> tuple[list[str], dict]:
    env = dict(env or os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           *args, "--configfile", str(workdir / "config.yaml")]
    return cmd, env


def _snakemake(workdir: Path, *args: str, env=None, timeout: int = 3600) -> subprocess.CompletedProcess:
    cmd, env = _command(workdir, *args, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def local_started(tmp_path_factory):
    """The local reference run, started at once and left running: the Slurm run, which spends most of its
    time waiting (job start-up, status polling), goes on beside it."""
    workdir = tmp_path_factory.mktemp("local")
    _config(workdir)
    cmd, env = _command(workdir, "--cores", "2")
    with open(workdir / "snakemake.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    yield workdir, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def local_run(local_started):
    workdir, proc = local_started
    try:
        proc.wait(timeout=3600)
    except subprocess.TimeoutExpired:
        pytest.fail("the local reference run did not finish in 900 s")
    assert proc.returncode == 0, (workdir / "snakemake.log").read_text()[-4000:]
    return workdir


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="snakemake-executor-plugin-slurm not installed (install requirements.lock: docs/development.md)")
    try:
        install()
    except SlurmUnavailable as why:
        pytest.skip(f"no local Slurm: {why}")
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()
        for name in ("slurmd", "slurmctld"):
            pid = (slurm.root / f"{name}.pid").read_text().split()[0] if (slurm.root / f"{name}.pid").exists() else ""
            assert not pid or not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/comm").read_text().strip() != name, f"{name} still running"


@pytest.fixture(scope="module")
def slurm_run(cluster, local_started, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("onslurm")
    _config(workdir)
    started = time.monotonic()
    try:
        run = _snakemake(workdir, "--profile", str(PROFILE), "--set-scatter", "features=2", env=cluster.env,
                         timeout=SLURM_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"Snakemake on Slurm did not finish in {SLURM_TIMEOUT} s:\n{(err.stderr or b'')[-3000:]}")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    print(f"Snakemake on Slurm: {time.monotonic() - started:.0f} s")
    return workdir, log


@pytest.mark.slurm
def test_every_job_was_submitted_with_sbatch(cluster, slurm_run):
    workdir, log = slurm_run
    stats = re.search(r"Job stats:\n(.*?)\n\n", log, flags=re.S).group(1)
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}
    submitted = submitted_jobs(log)  # slurm job id -> rule
    per_rule = {rule: list(submitted.values()).count(rule) for rule in set(submitted.values())}
    # the Snakefile's localrules (seconds of work each) ran beside Snakemake; every other job went to Slurm
    local = {"all", "class_hours", "gather_features", "decide", "score", "fidelity", "segmentation_table",
             "fidelity_table", "faithfulness_table", "groundtruth_table", "saliency_table"}
    assert local <= set(counts), sorted(local - set(counts))
    assert per_rule == {r: n for r, n in counts.items() if r not in local | {"total"}}, per_rule
    assert counts["extract_features"] == 2 * counts["gather_features"]  # 2 shards per split
    # every job's Slurm log is there, and says its rule ran (through the jobstep executor's srun)
    for job, rule in submitted.items():
        job_logs = list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{job}.log"))
        assert len(job_logs) == 1 and f"rule {rule}:" in job_logs[0].read_text(), (job, rule)
    # GPU rules went out with a GPU request (fake GPUs here); the others without
    gpu_rules = {"extract_features", "train_teacher", "dump_teacher", "pretrain_nmf", "train_proxy", "infer_proxy",
                 "pretrain_nmf_variant", "faithfulness", "faithfulness_judge", "saliency"}
    gpus = job_gpus(cluster.env)
    for job, rule in submitted.items():
        assert ("gpu:1" in gpus[job]) == (rule in gpu_rules), (rule, gpus[job])


@pytest.mark.slurm
def test_slurm_tables_equal_local_tables(local_run, slurm_run):
    workdir, _ = slurm_run
    for name in TABLES:
        local = pd.read_csv(local_run / "results" / "tables" / name, sep="\t")
        remote = pd.read_csv(workdir / "results" / "tables" / name, sep="\t")
        pd.testing.assert_frame_equal(local, remote, check_exact=True, obj=name)
    assert (workdir / "results" / "tables" / "segmentation.md").read_text() == \
        (local_run / "results" / "tables" / "segmentation.md").read_text()


@pytest.mark.slurm
def test_shard_count_changes_neither_features_nor_teacher(local_run, slurm_run):
    workdir, _ = slurm_run
    for split in ("train", "dev", "test"):
        with h5py.File(local_run / f"results/features/{CORPUS}/{split}.h5") as one, \
                h5py.File(workdir / f"results/features/{CORPUS}/{split}.h5") as two:
            assert sorted(one) == sorted(two)
            for uri in one:
                assert two[uri].is_virtual and np.array_equal(one[uri][()], two[uri][()]), (split, uri)
    a, b = (torch.load(d / "results/teacher/model.pt", map_location="cpu", weights_only=False)["state_dict"]
            for d in (local_run, workdir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_report_states_the_settings(local_run, tmp_path):
    report = tmp_path / "report.html"
    run = _snakemake(local_run, "--report", str(report), timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    html = report.read_text(errors="replace")
    assert len(html) > 10_000
    for needle in ("segmentation.tsv", "fidelity.tsv", "prototypes.png", "curve.png", "atoms.png"):
        assert needle in html, needle
    # captions carry the settings (threshold, collar, UEM, model, seeds), rendered from the config
    for needle in ("thresholded at", "<strong>0.5</strong>", "collar", "UEM", "untrained-demo", "Seeds: training 0"):
        assert needle in html, needle


def test_cluster_profile_is_valid_and_shards_features(tmp_path):
    """profiles/slurm parses with the plugin (its keys are checked) and plans 8 feature shards per split."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm not installed")
    _config(tmp_path)
    run = _snakemake(tmp_path, "-n", "--profile", str(REPO / "profiles" / "slurm"), timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout + run.stderr, flags=re.M))
    assert int(counts["extract_features"]) == 8 * int(counts["gather_features"]) == 8 * 3
