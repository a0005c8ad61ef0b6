"""Black-box teachers (teacher.kind pyannote / silero): the 20 ms grid, unknown classes, the dump, KD and
dictionary material from the teacher's confident frames. Silero runs from its wheel; pyannote on tiny
randomly initialised stand-ins saved as checkpoints (multilabel and powerset)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from proxyseg.core.errors import InputError
from proxyseg.core.frames import CLASSES, SAMPLE_RATE, frame_centers, num_frames
from proxyseg.teacher import blackbox as bb
from proxyseg.teacher.dumpfile import known_classes
from synthetic import pyannote_standin

SHARED_SPEECH = Path(__file__).resolve().parents[2].parent / "shared/data/real/sources/speech/ljspeech_LJ050-0131.wav"


def test_grid_interpolates_at_frame_centres_and_holds_the_ends():
    times = np.array([0.0, 1.0])
    probs = np.array([[0.0], [1.0]])
    grid = bb.to_grid(times, probs, 100)
    np.testing.assert_allclose(grid[:, 0], np.clip(frame_centers(100), 0, 1))
    assert bb.to_grid(np.array([0.5]), np.array([[0.3]]), 4)[:, 0].tolist() == [0.3] * 4


def test_logits_clip_certain_probabilities():
    z = bb.logits_of(np.array([0.0, 0.5, 1.0]))
    assert z[1] == 0 and np.isfinite(z).all() and z[2] == pytest.approx(-z[0]) and 13 < z[2] < 14


@pytest.fixture(scope="module")
def silero():
    pytest.importorskip("silero_vad")
    return bb.load_blackbox("silero")


def test_silero_knows_speech_only_on_the_20ms_grid(silero):
    x = np.zeros(SAMPLE_RATE * 2 + 123, dtype=np.float32)
    logits = silero.logits(x)
    assert logits.shape == (num_frames(len(x)), 4)
    assert np.isnan(logits[:, 1:3]).all() and np.isnan(logits[:, 3]).all()
    assert np.isfinite(logits[:, 0]).all()
    assert 1 / (1 + np.exp(-logits[:, 0])).max() < 0.5  # silence is not speech


@pytest.mark.skipif(not SHARED_SPEECH.is_file(), reason="../shared/data/real is absent")
def test_silero_hears_real_speech(silero):
    from proxyseg.core.audio import load_audio

    speech = load_audio(SHARED_SPEECH)
    p = 1 / (1 + np.exp(-silero.logits(speech)[:, 0]))
    assert p.mean() > 0.5 and (p > 0.5).mean() > 0.5


@pytest.mark.parametrize("powerset", [False, True])
def test_pyannote_standin_speech_is_at_least_overlap(tmp_path, powerset):
    pytest.importorskip("pyannote.audio")
    ckpt = pyannote_standin(tmp_path / "pytorch_model.bin", powerset=powerset)
    model = bb.load_blackbox("pyannote", str(ckpt), step=0.5)
    assert model.powerset is powerset and model.window == 2.0
    x = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 5).astype(np.float32) * 0.1
    logits = model.logits(x)
    assert logits.shape == (num_frames(len(x)), 4)
    assert np.isnan(logits[:, [1, 2]]).all() and np.isfinite(logits[:, [0, 3]]).all()
    assert (logits[:, 0] >= logits[:, 3] - 1e-5).all()  # the highest speaker activity >= the second highest


def test_pyannote_needs_a_loadable_checkpoint(tmp_path):
    pytest.importorskip("pyannote.audio")
    with pytest.raises(InputError, match="needs a segmentation checkpoint"):
        bb.load_blackbox("pyannote", None)
    bad = tmp_path / "pytorch_model.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load it as a pyannote.audio segmentation model") as err:
        bb.load_blackbox("pyannote", str(bad))
    assert str(bad) in str(err.value)


def test_speech_and_overlap_hook_orders_speakers():
    scores = np.array([[[0.2, 0.9, 0.5]]])
    np.testing.assert_allclose(bb.Pyannote.speech_and_overlap(scores), [[[0.9, 0.5]]])


def _manifest(tmp_path, signals):
    rows = []
    for uri, x in signals.items():
        path = tmp_path / f"{uri}.wav"
        sf.write(path, x, SAMPLE_RATE)
        rows.append({"uri": uri, "audio": str(path), "duration": len(x) / SAMPLE_RATE, "sample_rate": SAMPLE_RATE,
                     "channels": 1, "num_frames": num_frames(len(x))})
    manifest = tmp_path / "manifest.tsv"
    pd.DataFrame(rows).to_csv(manifest, sep="\t", index=False)
    return manifest


def test_dump_then_decisions_keep_only_the_known_classes(tmp_path):
    pytest.importorskip("silero_vad")
    from proxyseg.evaluate.scoring import decisions_rttm
    from proxyseg.proxy.infer import teacher_probs

    rng = np.random.default_rng(1)
    manifest = _manifest(tmp_path, {"a": rng.standard_normal(SAMPLE_RATE * 3).astype(np.float32) * 0.3,
                                    "b": np.zeros(SAMPLE_RATE, np.float32)})
    summary = bb.dump_blackbox("silero", None, manifest, tmp_path / "dump.h5", device="cpu")
    assert summary["files"] == 2 and summary["teacher"]["classes"] == ["speech"]
    with h5py.File(tmp_path / "dump.h5") as h5:
        assert json.loads(h5.attrs["known_classes"]) == ["speech"]
        assert known_classes(h5) == ("speech",)
        assert h5["a/logits"].shape == (num_frames(SAMPLE_RATE * 3), 4)
    teacher_probs(tmp_path / "dump.h5", tmp_path / "probs.h5")
    rttm = tmp_path / "teacher.rttm"
    decisions_rttm(tmp_path / "probs.h5", rttm, threshold=0.0)  # every frame active: every known class shows
    labels = {line.split()[7] for line in rttm.read_text().splitlines()}
    assert labels == {"speech"}


def test_dump_stops_on_a_changed_file(tmp_path):
    pytest.importorskip("silero_vad")
    manifest = _manifest(tmp_path, {"a": np.zeros(SAMPLE_RATE, np.float32)})
    table = pd.read_csv(manifest, sep="\t")
    table.loc[0, "num_frames"] += 7
    table.to_csv(manifest, sep="\t", index=False)
    with pytest.raises(InputError, match="changed after harmonisation"):
        bb.dump_blackbox("silero", None, manifest, tmp_path / "dump.h5", device="cpu")
    assert not (tmp_path / "dump.h5").exists()


def test_kd_leaves_out_the_classes_the_teacher_does_not_know():
    from proxyseg.proxy.loss import binary_kl

    torch.manual_seed(0)
    student = torch.randn(2, 4, 10, requires_grad=True)
    teacher = torch.randn(2, 4, 10)
    teacher[:, 1:3] = float("nan")
    kl = binary_kl(student, teacher)
    known = binary_kl(student[:, [0, 3]], teacher[:, [0, 3]])
    assert torch.isfinite(kl) and float(kl.detach()) == pytest.approx(float(known.detach()), rel=1e-6)
    kl.backward()
    assert torch.isfinite(student.grad).all() and (student.grad[:, 1:3] == 0).all()
    assert (student.grad[:, 0] != 0).any()


def test_teacher_targets_are_confident_decisions():
    from proxyseg.dictionary.build import teacher_targets

    p = np.array([[0.95, np.nan, np.nan, 0.05], [0.5, np.nan, np.nan, 0.92], [0.08, np.nan, np.nan, 0.5]])
    logits = np.log(p) - np.log1p(-p)
    t = teacher_targets(logits, 0.9)
    assert t.tolist() == [[1, -1, -1, 0], [-1, -1, -1, 1], [0, -1, -1, -1]]


def test_one_reader_gives_labels_and_teacher_decisions_with_their_known_classes(tmp_path):
    from proxyseg.core.frames import UNKNOWN
    from proxyseg.dictionary.build import draw_segments, read_frame_targets
    from proxyseg.explain.relevance import read_targets

    labels = np.array([[1, UNKNOWN, 0, 0], [0, UNKNOWN, 1, 0]], dtype=np.int8)
    with h5py.File(tmp_path / "targets.h5", "w") as h5:
        h5.create_dataset("a", data=labels)
    p = np.array([[0.95, np.nan, np.nan, 0.3], [0.2, np.nan, np.nan, 0.6]])
    with h5py.File(tmp_path / "dump.h5", "w") as h5:
        h5.create_dataset("a/logits", data=(np.log(p) - np.log1p(-p)).astype(np.float32))
        h5.attrs["known_classes"] = json.dumps(["speech", "overlap"])
    with h5py.File(tmp_path / "targets.h5") as h5:
        source, read = read_frame_targets(h5, 0.9)
    assert source == "labels" and read["a"][0].tolist() == labels.tolist()
    assert read["a"][1].tolist() == [True, False, True, True]
    with h5py.File(tmp_path / "dump.h5") as h5:
        source, read = read_frame_targets(h5, 0.9)
    assert source == "teacher" and read["a"][0].tolist() == [[1, -1, -1, -1], [-1, -1, -1, -1]]
    assert read["a"][1].tolist() == [True, False, False, True]
    # the explanations read decisions (p >= 0.5) through the same reader
    assert read_targets(tmp_path / "dump.h5")["a"].tolist() == [[1, -1, -1, 0], [0, -1, -1, 1]]
    assert read_targets(tmp_path / "targets.h5")["a"].tolist() == labels.tolist()
    # and a dump given as labels (or labels as a dump) is named, not misread
    with h5py.File(tmp_path / "spec.h5", "w") as h5:
        h5.create_dataset("a", data=np.ones((2, 3), np.float16))
    for material, path in (("labels", "dump.h5"), ("teacher", "targets.h5")):
        with pytest.raises(InputError, match=path.replace(".", r"\.")):
            draw_segments([(tmp_path / "spec.h5", tmp_path / path)], {"speech": 1}, 0.02, 4.0,
                          np.random.default_rng(0), material=material)


def test_dictionary_material_from_the_teachers_confident_frames(tmp_path):
    from proxyseg.dictionary.build import BACKGROUND, draw_segments

    n, f = 500, 5
    p = np.full((n, 4), np.nan)
    p[:, 0] = 0.5
    p[50:150, 0] = 0.97     # 2 s of confident speech
    p[200:400, 0] = 0.02    # 4 s of confident non-speech
    p[:, 3] = 0.01
    with h5py.File(tmp_path / "dump.h5", "w") as h5:
        h5.create_dataset("u/logits", data=(np.log(p) - np.log1p(-p)).astype(np.float32))
        h5.attrs["known_classes"] = json.dumps(["speech", "overlap"])
    x = np.tile(np.arange(n, dtype=np.float32)[:, None], (1, f))  # frame index in every bin
    with h5py.File(tmp_path / "spec.h5", "w") as h5:
        h5.create_dataset("u", data=x)
    pairs = [(str(tmp_path / "spec.h5"), str(tmp_path / "dump.h5"))]
    X, summary = draw_segments(pairs, {"speech": 5, "music": 0, "noise": 0, "overlap": 0}, 1.0, 4.0,
                               np.random.default_rng(0), material="teacher", confidence=0.9, background=3)
    frames = set(X[0].astype(int).tolist())
    assert summary["speech"]["segments"] == 1 and summary["speech"]["frames"] == 100
    assert summary[BACKGROUND]["frames"] == 200 and summary[BACKGROUND]["segments"] == 1
    assert frames == set(range(50, 150)) | set(range(200, 400))
    with pytest.raises(InputError, match="nmf.material: teacher"):
        with h5py.File(tmp_path / "targets.h5", "w") as h5:
            h5.create_dataset("u", data=np.full((n, 4), -1, np.int8))
        draw_segments([(str(tmp_path / "spec.h5"), str(tmp_path / "targets.h5"))], {"speech": 5}, 1.0, 4.0,
                      np.random.default_rng(0))


def test_plan_refuses_what_a_black_box_cannot_do():
    from proxyseg import plan

    config = plan.fill({"teacher": {"kind": "silero"}, "proxies": {"p": {"input": "wavlm"}}})
    with pytest.raises(InputError, match="input: spectrogram"):
        plan.teacher(config)
    config = plan.fill({"teacher": {"kind": "pyannote"}, "proxies": {"p": {"input": "spectrogram"}}})
    with pytest.raises(InputError, match="needs a segmentation checkpoint"):
        plan.teacher(config)
    config = plan.fill({"teacher": {"kind": "pyannote", "checkpoint": "x.bin"}, "proxies": {}})
    assert plan.teacher(config) == {"kind": "pyannote", "blackbox": True, "classes": ["speech", "overlap"],
                                    "checkpoint": "x.bin"}
    assert plan.teacher(plan.fill({}))["classes"] == list(CLASSES)


def test_checkpoint_from_a_wheel(tmp_path, monkeypatch):
    from proxyseg.teacher.fetch import fetch_wheel_file, parse

    assert parse("pypi:whisperx==3.8.6:whisperx/assets/pytorch_model.bin") == (
        "whisperx==3.8.6", "whisperx/assets/pytorch_model.bin")
    assert parse("pyannote/segmentation-3.0") is None
    for bad in ("pypi:whisperx:a.bin", "pypi:whisperx==1:", "pypi:x==1:../../etc/passwd", "pypi:x;rm==1:a"):
        with pytest.raises(InputError, match="pypi:NAME==VERSION"):
            parse(bad)
    # an offline index: one tiny wheel in a folder pip finds through PIP_FIND_LINKS
    index = tmp_path / "index"
    index.mkdir()
    with zipfile.ZipFile(index / "fakeweights-0.1-py3-none-any.whl", "w") as zf:
        zf.writestr("fakeweights/assets/model.bin", b"weights" * 10)
        zf.writestr("fakeweights-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakeweights\nVersion: 0.1\n")
        zf.writestr("fakeweights-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("fakeweights-0.1.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip("pip is not installed in this environment")
    out = tmp_path / "models" / "model.bin"
    record = fetch_wheel_file("fakeweights==0.1", "fakeweights/assets/model.bin", out)
    assert out.read_bytes() == b"weights" * 10 and record["bytes"] == 70
    assert json.loads((out.parent / "model.bin.source.json").read_text())["wheel"].startswith("fakeweights-0.1")
    with pytest.raises(InputError, match="has no fakeweights/assets/other.bin"):
        fetch_wheel_file("fakeweights==0.1", "fakeweights/assets/other.bin", tmp_path / "other.bin")
    assert not (tmp_path / "other.bin").exists()
    with pytest.raises(InputError, match="could not download fakeweights==0.2"):
        fetch_wheel_file("fakeweights==0.2", "fakeweights/assets/model.bin", tmp_path / "x.bin")
