"""A small end-to-end Snakemake run in a temporary folder: the workflow on config/test.yaml, the demo shrunk
(``small_run``, in conftest.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

def snakemake(workdir: Path, *args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_workflow_produces_every_artifact(small_run):
    r = small_run / "results"
    hours = pd.read_csv(r / "tables/class_hours.tsv", sep="\t")
    assert set(hours["corpus"]) == {"demo_radio", "demo_meeting"}
    meeting = hours[hours.corpus == "demo_meeting"].set_index(["split", "class"])
    assert not meeting.loc[("train", "music"), "annotated"] and meeting.loc[("train", "overlap"), "annotated"]
    for name in ["model.pt", "curve.tsv", "curve.png", "train.json"]:
        assert (r / "teacher" / name).is_file()
    with h5py.File(r / "teacher/dump/demo_meeting/test.h5") as dump, \
            h5py.File(r / "features/demo_meeting/test.h5") as feats:
        for uri in feats:
            assert dump[uri]["logits"].shape == (feats[uri].shape[0], 4)
    logs = list((r / "logs").rglob("*.log"))
    assert logs and any("not microsoft/wavlm-large" in p.read_text() for p in logs)
    assert "2 steps" in (r / "models/wavlm-demo/DEMO_MODEL.md").read_text()
    assert (r / "models/wavlm-demo/pretrain_curve.tsv").is_file()


@pytest.mark.slow
def test_scores_fidelity_and_explanations(small_run):
    r = small_run / "results"
    seg = pd.read_csv(r / "tables/segmentation.tsv", sep="\t")
    systems = {"teacher", "wavlm_fixedW", "wavlm_learnedW", "spec_fixedW", "spec_learnedW"}
    assert set(seg["system"]) == systems | {"constant output", "energy threshold"}  # the floors beside every F1
    floor = seg[seg.system == "constant output"]
    assert len(floor) == 5 and (floor["recall"] > 0.999).all() and "constant output" in (r / "tables/segmentation.md").read_text()
    assert seg.loc[seg.system == "energy threshold", "threshold_db"].notna().all()
    radio = seg[seg.corpus == "demo_radio"]
    meeting = seg[seg.corpus == "demo_meeting"]
    assert set(radio["class"]) == {"speech", "music", "noise"} and set(meeting["class"]) == {"speech", "overlap"}
    assert (r / "tables/segmentation.md").read_text().count("|") > 10
    assert "collar" in (r / "tables/segmentation_settings.json").read_text()
    fid = pd.read_csv(r / "tables/fidelity.tsv", sep="\t")
    assert set(fid["system"]) == systems - {"teacher"} and fid["fidelity_f1"].between(0, 1).all()
    for proxy in systems - {"teacher"}:
        assert (r / "explanations" / proxy / "prototypes.png").stat().st_size > 1000
        assert list((r / "explanations" / proxy / "local").glob("*.png"))


@pytest.mark.slow
def test_changing_one_proxy_reruns_only_that_proxy(small_run, tmp_path):
    config = yaml.safe_load((small_run / "config.yaml").read_text())
    config["proxies"]["spec_fixedW"]["gamma"] = 0.5
    (small_run / "changed.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(small_run), "--configfile", str(small_run / "changed.yaml"), "--cores", "2", "-n"],
                         capture_output=True, text=True, env=env, timeout=3600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout + run.stderr
    rules = set(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.M))
    assert rules == {"train_proxy", "infer_proxy", "decide", "score", "segmentation_table", "fidelity",
                     "fidelity_table", "explain", "faithfulness", "faithfulness_table", "saliency_table",
                     "groundtruth", "groundtruth_table", "export_model", "all"}, rules
    proxies = set(re.findall(r"proxy=(\w+)", out)) | set(re.findall(r"system=(\w+)", out))
    assert proxies == {"spec_fixedW"}


@pytest.mark.slow
def test_a_second_seed_of_a_proxy_is_a_second_entry(small_run):
    # examples/faithfulness_seeds.yaml's way: the same variant with `seed: 1` trains only the new entry,
    # with that seed, and leaves the finished proxies alone
    config = yaml.safe_load((small_run / "config.yaml").read_text())
    config["proxies"]["spec_fixedW_seed1"] = {**config["proxies"]["spec_fixedW"], "seed": 1}
    (small_run / "seeds.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(small_run, "-n", "-p", "--configfile", str(small_run / "seeds.yaml"))
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout + run.stderr
    trained = re.findall(r"train-proxy .*--out-dir \S+/proxies/(\w+) --seed (\d+)", out)
    assert trained == [("spec_fixedW_seed1", "1")], trained


@pytest.mark.slow
def test_runtime_settings_do_not_rerun_anything(small_run):
    # Device, DataLoader workers, preloading and batch sizes of inference say how a step runs, not what
    # it computes: changing them must not retrain the teacher or the proxies.
    config = yaml.safe_load((small_run / "config.yaml").read_text())
    config["runtime"] = {"device": "cpu", "num_workers": 1, "preload_mb": 0, "feature_batch_size": 2,
                         "inference_batch_size": 3}
    (small_run / "runtime.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(small_run, "-n", "--configfile", str(small_run / "runtime.yaml"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Nothing to be done" in run.stdout + run.stderr, run.stdout[-3000:]
    # ...while the settings that do change results still do
    config["teacher"]["lr"] = 0.5
    (small_run / "runtime.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(small_run, "-n", "--configfile", str(small_run / "runtime.yaml"))
    assert re.search(r"^rule train_teacher:", run.stdout + run.stderr, flags=re.M)


def declared_paths(workdir: Path) -> set[Path]:
    """Every output (file or directory() folder), log and benchmark of every job of the workflow in
    ``workdir``, as Snakemake plans them (a dry run of all jobs)."""
    run = snakemake(workdir, "-n", "--forceall")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = re.findall(r"^ +(?:output|log|benchmark): (.+)$", run.stdout + run.stderr, flags=re.M)
    return {Path(p) for line in lines for p in line.split(", ")}


@pytest.mark.slow
def test_every_file_under_results_is_declared(small_run):
    """Every file a job writes is one of its declared outputs, logs or benchmarks, or inside a declared
    directory(): Snakemake knows it, so it reruns, cleans up and reports it (no hidden contracts)."""
    declared = declared_paths(small_run)
    assert len(declared) > 200 and any(p.name == "local" for p in declared), sorted(declared)[:20]
    written = {p.relative_to(small_run) for p in (small_run / "results").rglob("*") if not p.is_dir()}
    undeclared = sorted(str(p) for p in written if p not in declared and not set(p.parents) & declared)
    assert not undeclared, "written by the workflow but not declared by its rule:\n" + "\n".join(undeclared)
    missing = sorted(str(p) for p in declared if not (small_run / p).exists())
    assert not missing, "declared but not written:\n" + "\n".join(missing)


@pytest.mark.slow
def test_second_run_has_nothing_to_do(small_run):
    run = snakemake(small_run, "-n", "--profile", str(REPO / "profiles/local"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Nothing to be done" in run.stdout + run.stderr


@pytest.mark.slow
def test_invalid_config_names_the_key(small_run, tmp_path):
    config = yaml.safe_load((small_run / "config.yaml").read_text())
    config["teacher"]["batch_size"] = "big"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "-n")
    assert run.returncode != 0
    said = run.stdout + run.stderr
    assert "teacher.batch_size: 'big' is not of type 'integer'" in said
    assert "Failed validating" not in said  # the key and the reason, not jsonschema's dump of the schema


@pytest.mark.slow
def test_faithfulness_saliency_and_segmenting_new_audio(small_run, tmp_path):
    """The trust tables exist for every proxy, and an exported model applied to raw audio gives back the
    workflow's probabilities and an RTTM that `proxyseg score` accepts."""
    import numpy as np

    from proxyseg.cli import main

    r = small_run / "results"
    proxies = {"wavlm_fixedW", "wavlm_learnedW", "spec_fixedW", "spec_learnedW"}
    faith = pd.read_csv(r / "tables/faithfulness.tsv", sep="\t")
    assert set(faith["system"]) == proxies and "logit_drop_50" in faith
    assert {"explanation", "random_active", "loudest", "saliency"} <= set(faith["removal"])
    # judged by the teacher, WavLM-input proxies included, on the summary's contract
    summary = pd.read_csv(r / "tables/faithfulness_summary.tsv", sep="\t")
    assert list(summary.columns) == ["system", "judge", "class", "metric", "value", "ci_low", "ci_high", "segments"]
    assert set(summary["system"]) == proxies and set(summary["judge"]) == {"teacher", "proxy"}
    assert {"auc_gap_random_active", "ratio_to_saliency_50", "flip_rate_50", "AI", "fid_in"} <= set(summary["metric"])
    # every class the teacher decided has segments behind its headline metric (a metric no segment gives a
    # value, such as k_to_flip where nothing flips, has 0)
    assert summary.loc[summary["metric"] == "auc_gap_random_active", "segments"].gt(0).all()
    # the demo keeps its test files' stems: the true stem removed is the oracle
    assert "oracle_share" in set(summary["metric"])
    curves = pd.read_csv(r / "tables/faithfulness_curves.tsv", sep="\t")
    assert set(curves["direction"]) == {"deletion", "insertion"} and set(curves["level"]) == {0.25, 0.5}
    for proxy in proxies:
        assert (r / "explanations" / proxy / "faithfulness.png").stat().st_size > 1000
    gt = pd.read_csv(r / "tables/groundtruth.tsv", sep="\t")
    assert set(gt["system"]) == proxies and (r / "explanations/groundtruth.png").stat().st_size > 1000
    assert set(pd.read_csv(r / "tables/saliency.tsv", sep="\t")["system"]) == proxies
    for proxy in proxies:
        assert list((r / "explanations" / proxy / "local").glob("*_residual.wav"))
    manifest = pd.read_csv(r / "labels/demo_meeting/test/manifest.tsv", sep="\t")
    uri, audio = manifest.iloc[0][["uri", "audio"]]
    for proxy in ("wavlm_fixedW", "spec_learnedW"):
        out = tmp_path / proxy
        assert main(["segment", str(small_run / audio), "--model", str(r / "export" / proxy), "--out", str(out),
                     "--device", "cpu", "--explain-audio", "1"]) == 0
        with h5py.File(out / "probs" / f"{uri}.h5") as got, \
                h5py.File(r / "inference" / proxy / "demo_meeting/test.h5") as ref:
            np.testing.assert_allclose(got["probs"][()], ref[uri]["probs"][()], atol=2e-3)
        ref_dir = r / "labels/demo_meeting/test"
        assert main(["score", "--system", proxy, "--corpus", "demo_meeting", "--reference",
                     str(ref_dir / "reference.rttm"), "--uem", str(ref_dir / "uem.uem"), "--annotated",
                     str(ref_dir / "annotated.json"), "--hypothesis", str(out / "segments.rttm"),
                     "--out", str(out / "score.tsv")]) == 0
        assert (out / "report" / f"{uri}.html").is_file()
