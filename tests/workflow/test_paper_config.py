"""config/paper.yaml: the full DAG is planned with corpora in place, and it stops at once without them."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "config" / "paper.yaml"


def dry_run(workdir: Path, configfile: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)


def wav(path: Path, seconds=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * 16000), dtype=np.float32), 16000)


def rttm(uri, onset, dur, name):
    return f"SPEAKER {uri} 1 {onset:.3f} {dur:.3f} <NA> <NA> {name} <NA> <NA>\n"


def aragon_fixture(root: Path):
    for split, uris in {"train": ["r1", "r2"], "dev": ["r3"], "test": ["r4"]}.items():
        (root / "lists").mkdir(parents=True, exist_ok=True)
        (root / "rttm").mkdir(exist_ok=True)
        (root / f"lists/{split}.lst").write_text("".join(u + "\n" for u in uris))
        (root / f"rttm/{split}.rttm").write_text("".join(rttm(u, 0, 0.5, "sp") + rttm(u, 0.2, 0.5, "mu")
                                                         for u in uris))
        for u in uris:
            wav(root / f"audio/{u}.wav")


def dihard_fixture(root: Path, prefix: str, domains: list[str]):
    """An LDC-like release; its last recording is outside the core partition (in the full one)."""
    lines = ["uri\tin_core\tlang\tdomain\tsource\tlen\tscored_len\tspeakers\tchannels\n"]
    (root / "data/rttm").mkdir(parents=True)
    for part in ("core", "full"):
        (root / f"data/uem_scoring/{part}").mkdir(parents=True)
    uems = {"core": [], "full": []}
    for i, domain in enumerate(domains):
        uri = f"{prefix}_{i + 1:04d}"
        wav(root / f"data/flac/{uri}.flac")
        (root / f"data/rttm/{uri}.rttm").write_text(rttm(uri, 0.1, 0.5, "A") + rttm(uri, 0.3, 0.5, "B"))
        in_core = i < len(domains) - 1
        lines.append(f"{uri}\t{in_core}\tEnglish\t{domain}\tsrc\t1.0\t1.0\t2\t1\n")
        for part in uems:
            uems[part].append(f"{uri} 1 0.000 1.000\n")
    for part, content in uems.items():
        (root / f"data/uem_scoring/{part}/all.uem").write_text("".join(content))
    (root / "docs").mkdir()
    (root / "docs/recordings.tbl").write_text("".join(lines))


def test_paper_config_fails_fast_naming_the_missing_path(tmp_path):
    run = dry_run(tmp_path, PAPER)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "/path/to/AragonRadio" in out and "root folder not found" in out
    assert "audio/<uri>.wav, rttm/<split>.rttm" in out  # says what the folder should contain
    assert "rule " not in run.stdout  # stopped before planning any job (no wall-time bar: a busy machine is slow)


def test_paper_config_plans_the_full_dag_with_corpora_in_place(tmp_path):
    aragon_fixture(tmp_path / "AragonRadio")
    domains = ["meeting", "clinical", "webvideo", "meeting", "clinical"]
    dihard_fixture(tmp_path / "LDC2020E12", "DH_DEV", domains)
    dihard_fixture(tmp_path / "LDC2021E02", "DH_EVAL", domains[:3])
    config = yaml.safe_load(PAPER.read_text())
    config["corpora"]["aragon_radio"]["root"] = str(tmp_path / "AragonRadio")
    for split in ("train", "dev"):
        config["corpora"]["dihard3"]["splits"][split]["root"] = str(tmp_path / "LDC2020E12")
    config["corpora"]["dihard3"]["splits"]["test"]["root"] = str(tmp_path / "LDC2021E02")
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))

    run = dry_run(tmp_path, tmp_path / "paper.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    stats = dict(line.split() for line in run.stdout.split("Job stats:")[1].splitlines()[3:]
                 if len(line.split()) == 2 and line.split()[1].isdigit())
    assert stats["harmonise"] == "6" and stats["extract_features"] == "6" and stats["train_proxy"] == "4"
    assert stats["score"] == "10" and stats["segmentation_table"] == "1" and "demo_corpus" not in stats
    assert "--model microsoft/wavlm-large" in run.stdout  # the hub model, not needed for planning
    assert "demo_wavlm" not in stats
    # DIHARD's per-recording RTTMs are inputs of harmonisation; 80/20 portions of each domain
    assert "LDC2020E12/data/rttm/DH_DEV_0001.rttm" in run.stdout
    # the full partition (METHOD §2): the evaluation recording outside core is scored too
    assert "LDC2021E02/data/rttm/DH_EVAL_0003.rttm" in run.stdout
    # the dictionary is learned on AragonRadio's train split only (METHOD §4)
    nmf = [line for line in run.stdout.splitlines() if "pretrain-nmf" in line]
    assert len(nmf) == 1 and "aragon_radio" in nmf[0] and "dihard3" not in nmf[0], nmf

    (tmp_path / "LDC2021E02/docs/recordings.tbl").unlink()
    run = dry_run(tmp_path, tmp_path / "paper.yaml")
    assert run.returncode != 0
    assert "LDC2021E02/docs/recordings.tbl" in run.stderr + run.stdout
    assert "DIHARD III table of recordings not found" in run.stderr + run.stdout


@pytest.mark.parametrize("name", ["paper.yaml", "real.yaml"])
def test_configs_declare_the_papers_setup(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    assert set(config["proxies"]) == {"wavlm_fixedW", "wavlm_learnedW", "spec_fixedW", "spec_learnedW"}
    assert config["spectrogram"] == {"n_fft": 512, "win_length": 400}
    assert config["nmf"]["components"] == 128
    if name == "paper.yaml":
        assert config["features"]["model"] == "microsoft/wavlm-large"
        assert {k: config["proxy_defaults"][k] for k in ("alpha", "beta", "gamma")} == \
            {"alpha": 10.0, "beta": 1.0, "gamma": 0.1}
        assert config["teacher"]["repeats"] * config["teacher"]["blocks"] == 15
        # METHOD §2 and §4: DIHARD III scored on its full partition; the dictionary learned on AragonRadio
        # only, from its annotated segments (1 s to 4 s)
        assert config["corpora"]["dihard3"]["partition"] == "full"
        assert config["nmf"]["corpora"] == ["aragon_radio"]
        assert config["corpora"]["aragon_radio"]["adapter"] == "aragon"
        assert "train" in config["corpora"]["aragon_radio"]["splits"]
        assert (config["nmf"]["min_seconds"], config["nmf"]["max_seconds"]) == (1.0, 4.0)
        assert config["nmf"]["segments"] == {"speech": 200, "music": 500, "noise": 500, "overlap": 0}
