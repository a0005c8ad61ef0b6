"""Crash safety for real: Snakemake is killed with SIGKILL (as by a lost node or an OOM killer) in the
middle of feature extraction, teacher training and proxy training; after each kill the README's recovery
commands (`snakemake --unlock`, then the same command with `--rerun-incomplete`) finish the run, which ends
with the models of an uninterrupted run (small_run) and no temporary file anywhere.

Kept cheap: the run asks only for one proxy's model, the shortest way through the three stages (no test
split, inference, tables or explanations, where nothing is killed), and starts from small_run's outputs of
the stages before them (demo corpora, labels, demo WavLM, spectrograms, NMF dictionary; copied with their
times, so Snakemake sees them up to date), which it would otherwise compute a second time. Checkpoints carry
no time, host or machine path: the recovered teacher and proxy must be byte-identical to small_run's."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROXY = "spec_fixedW"
#: the three stages and what they need: features, teacher, its dumps of train and dev, NMF, one proxy
TARGETS = [f"results/proxies/{PROXY}/model.pt"]
#: folders of results/ that small_run wrote before feature extraction (and NMF, beside it): copied, not redone
UPSTREAM = ["corpora", "labels", "models", "spectrograms", "nmf"]
#: what must equal small_run's: the checkpoints byte for byte, the curves but for their wall-time column
SAME_BYTES = ["results/teacher/model.pt", f"results/proxies/{PROXY}/model.pt"]
SAME_CURVE = ["results/teacher/curve.tsv", f"results/proxies/{PROXY}/curve.tsv"]


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
    return subprocess.run(_command(workdir, *args), capture_output=True, text=True, env=_env(), timeout=3600)


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
    config["proxies"] = {PROXY: config["proxies"][PROXY]}  # one proxy is enough here
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    results = workdir / "results"
    for folder in UPSTREAM:  # copy2 keeps modification times: older than what the run writes from them
        shutil.copytree(small_run / "results" / folder, results / folder, copy_function=shutil.copy2)
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
    _kill_when(workdir, _log_says(logs / f"train_proxy/{PROXY}.log", "proxy epoch 1"), "--rerun-incomplete")
    assert not (results / f"proxies/{PROXY}/model.pt").exists(), "a killed proxy must not leave a model.pt"
    _recover(workdir)

    done = _run(workdir, "--rerun-incomplete", *TARGETS)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not _temporaries(results), _temporaries(results)
    for path in SAME_BYTES:  # the same features, dumps and seeds: the same weights
        assert (workdir / path).read_bytes() == (small_run / path).read_bytes(), f"{path} differs from small_run's"
    for path in SAME_CURVE:  # the losses of every epoch, on dev too (the proxy's one epoch: its dev dumps)
        got, ref = (pd.read_csv(d / path, sep="\t").drop(columns="seconds") for d in (workdir, small_run))
        pd.testing.assert_frame_equal(got, ref, obj=path)
