"""Crash safety for real: Snakemake is killed with SIGKILL (as by a lost node or an OOM killer) in the
middle of feature extraction, teacher training and proxy training; after each kill the README's recovery
commands (`snakemake --unlock`, then the same command with `--rerun-incomplete`) finish the run, which ends
with the tables of an uninterrupted run and no temporary file anywhere."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TARGETS = ["results/tables/segmentation.tsv", "results/tables/fidelity.tsv"]


def _command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]


def _env() -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def _kill_when(workdir: Path, ready, *args: str, timeout: float = 600) -> None:
    """Start Snakemake on TARGETS and SIGKILL its whole process group (jobs too) once ``ready()``."""
    with open(workdir / "snakemake.out", "a") as out:
        proc = subprocess.Popen(_command(workdir, *args, *TARGETS), stdout=out, stderr=subprocess.STDOUT,
                                env=_env(), start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                assert proc.poll() is None, "the run ended before the stage to kill was reached"
                assert time.monotonic() < deadline, "timed out waiting for the stage to kill"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, *args), capture_output=True, text=True, env=_env(), timeout=900)


def _recover(workdir: Path) -> None:
    """The README's recovery: unlock; the next run (with --rerun-incomplete) redoes the killed jobs."""
    locked = _run(workdir, "--rerun-incomplete", *TARGETS)  # what a user tries first: refused, and says why
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr, locked.stderr[-2000:]
    unlock = _run(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]


def _log_says(path: Path, text: str):
    return lambda: path.is_file() and text in path.read_text(errors="replace")


def _temporaries(results: Path) -> list[Path]:
    return [p for p in results.rglob(".*") if ".tmp-" in p.name]


@pytest.mark.slow
def test_kill_9_in_three_stages_then_recover(small_run, tmp_path):
    workdir = tmp_path / "killed"
    workdir.mkdir()
    config = yaml.safe_load((small_run / "config.yaml").read_text())
    config["proxies"] = {"spec_fixedW": config["proxies"]["spec_fixedW"]}  # one proxy is enough here
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    results = workdir / "results"
    logs = results / "logs"

    # 1. in the middle of writing a feature shard
    _kill_when(workdir, lambda: any(".tmp-" in p.name for p in (results / "features").rglob(".*")))
    assert _temporaries(results), "the kill should leave a partial shard behind"
    _recover(workdir)
    # 2. during the teacher's first epoch
    _kill_when(workdir, _log_says(logs / "train_teacher.log", "teacher epoch 1"), "--rerun-incomplete")
    assert not (results / "teacher/model.pt").exists(), "a killed teacher must not leave a model.pt"
    _recover(workdir)
    # 3. during the proxy's first epoch
    _kill_when(workdir, _log_says(logs / "train_proxy/spec_fixedW.log", "proxy epoch 1"), "--rerun-incomplete")
    assert not (results / "proxies/spec_fixedW/model.pt").exists(), "a killed proxy must not leave a model.pt"
    _recover(workdir)

    done = _run(workdir, "--rerun-incomplete", *TARGETS)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not _temporaries(results), _temporaries(results)
    for table in TARGETS:
        got = pd.read_csv(workdir / table, sep="\t")
        ref = pd.read_csv(small_run / table, sep="\t")
        ref = ref[ref["system"].isin(got["system"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, ref)
