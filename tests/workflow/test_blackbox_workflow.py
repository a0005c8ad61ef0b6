"""The workflow with a black-box teacher (teacher.kind silero, and pyannote on a tiny stand-in checkpoint)
on the shrunk demo plus a folder of unlabelled audio: no WavLM, no teacher training; distillation, the
dictionary (teacher material), scoring, fidelity, faithfulness and the exported model on the classes the
black box knows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from synthetic import pyannote_standin

REPO = Path(__file__).resolve().parents[2]


def _config(workdir: Path, kind: str) -> dict:
    from conftest import small_config

    unlabelled = workdir / "unlabelled"
    unlabelled.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # 8 kHz noise bursts: a folder corpus of another rate
        x = np.concatenate([rng.standard_normal(8000 * 2) * 0.3, np.zeros(8000), rng.standard_normal(8000) * 0.05])
        sf.write(unlabelled / f"clip{i}.wav", x.astype(np.float32), 8000)
    config = small_config()
    del config["corpora"]["demo_radio"]  # the meeting corpus (speech, overlap) and the folder suffice
    config["teacher"] = {"kind": kind}
    if kind == "pyannote":
        config["teacher"]["checkpoint"] = str(pyannote_standin(workdir / "segmentation.bin"))
    config["corpora"]["unlabelled"] = {"adapter": "folder", "root": str(unlabelled),
                                       "splits": {"train": {"portion": [0, 0.5]}, "dev": {"portion": [0.5, 0.75]},
                                                  "heldout": {"portion": [0.75, 1]}}}
    config["scoring"] = {"agreement_splits": ["heldout"]}  # agreement with the black box, no labels
    # a random stand-in is never sure of anything: a confident frame here is one with p >= 0.52
    config["nmf"] = {**config["nmf"], "material": "teacher", "confidence": 0.52, "background": 4, "min_seconds": 0.1,
                     "segments": {"speech": 4, "music": 0, "noise": 0, "overlap": 0}}
    config["proxies"] = {"spec_fixedW": {"input": "spectrogram", "dictionary": "fixed"}}
    config["features"] = {"model": "untrained-demo"}
    if kind == "silero":  # one level as config/explain_silero.yaml; calibrated, to test `calibrate` end to end
        config["spectrogram"] = {"level_db": -15.0}
        config["proxy_defaults"] = {**config.get("proxy_defaults", {}), "calibrate": ["speech"]}
        config["explain"] = {**config.get("explain", {}), "relevance": "occlusion"}  # as the config, end to end
    return config


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["silero", "pyannote"])
def test_workflow_explains_a_black_box(tmp_path, kind):
    pytest.importorskip({"silero": "silero_vad", "pyannote": "pyannote.audio"}[kind])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(_config(tmp_path, kind)))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"],
                         capture_output=True, text=True, env=env, timeout=3600)
    assert run.returncode == 0, run.stderr[-4000:]
    r = tmp_path / "results"
    known = {"silero": ["speech"], "pyannote": ["speech", "overlap"]}[kind]
    assert not (r / "teacher/model.pt").exists() and not (r / "features").exists()  # nothing WavLM
    with h5py.File(r / "teacher/dump/unlabelled/train.h5") as dump:
        assert json.loads(dump.attrs["known_classes"]) == known
        assert json.loads(dump.attrs["teacher"])["kind"] == kind
    with h5py.File(r / "labels/unlabelled/train/targets.h5") as targets:
        assert all((targets[u][()] == -1).all() for u in targets)  # no labels at all
    nmf = json.loads((r / "nmf/dictionary.json").read_text())
    drawn = nmf["settings"]["segments"]
    assert nmf["settings"]["settings"]["material"] == "teacher" and drawn["speech"]["frames"] > 0
    assert drawn["background"]["requested"] == 4  # drawn where the black box is sure there is no speech
    seg = pd.read_csv(r / "tables/segmentation.tsv", sep="\t")
    assert set(seg["class"]) == set(known)  # the demo annotates speech and overlap; only the known are scored
    assert set(seg["corpus"]) == {"demo_meeting"}  # the folder corpus has no test split
    fid = pd.read_csv(r / "tables/fidelity.tsv", sep="\t")
    assert set(fid["class"]) == set(known)
    # agreement on the scored split and on the held-back split, with its minutes; a calibrated proxy also
    # as trained, without the calibration
    assert set(fid["corpus"]) == {"demo_meeting", "unlabelled:heldout"}
    assert fid.set_index("corpus").loc["unlabelled:heldout", "minutes"].min() > 0
    systems = {"spec_fixedW", "spec_fixedW uncalibrated"} if kind == "silero" else {"spec_fixedW"}
    assert set(fid["system"]) == systems
    assert "unlabelled:heldout" in (r / "tables/fidelity.md").read_text()
    faith = pd.read_csv(r / "tables/faithfulness_summary.tsv", sep="\t")
    assert set(faith["class"]) <= set(known) and set(faith["judge"]) <= {"blackbox", "proxy"}
    assert "auc_gap_random_active" in set(faith["metric"])
    settings = json.loads((r / "export/spec_fixedW/settings.json").read_text())
    assert settings["blackbox"]["kind"] == kind and settings["blackbox"]["classes"] == known
    assert (r / "export/spec_fixedW/blackbox.bin").is_file() == (kind == "pyannote")
    assert not (r / "tables/saliency.md").exists()
    level = {"silero": -15.0, "pyannote": None}[kind]
    assert settings["spectrogram"]["level_db"] == level  # segment scales new audio as training did
    with h5py.File(r / "spectrograms/unlabelled/train.h5") as spec:
        assert all((spec[u].attrs["gain"] == 1.0) == (level is None) for u in spec)
    calibration = json.loads((r / "proxies/spec_fixedW/train.json").read_text())["calibration"]
    if kind == "silero":  # on the dev split of the scored corpus (demo_meeting), not on the folder corpus
        assert set(calibration["classes"]) == {"speech"}
        assert calibration["pairs"] == [["results/teacher/dump/demo_meeting/dev.h5",
                                         "results/spectrograms/demo_meeting/dev.h5"]]
    else:
        assert calibration is None
