"""A damaged or mismatched model folder is an InputError naming the file and the key, never a traceback."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from proxyseg.core.errors import InputError
from proxyseg.proxy.model import Proxy, load_proxy
from proxyseg.segmenter.export import export_model, load_settings
from proxyseg.teacher.model import Teacher


def _proxy(path, channels, k=8, bins=257, crop=40, inp="spectrogram"):
    torch.manual_seed(0)
    proxy = Proxy(channels, torch.rand(bins, k), "fixed", blocks=1, repeats=1)
    torch.save({"state_dict": proxy.state_dict(),
                "hparams": {**proxy.hparams, "crop_frames": crop, "input": inp, "dictionary": "fixed"}}, path)
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    with h5py.File(root / "spec.h5", "w") as h5:
        h5.attrs.update(n_fft=512, win_length=400)
    with h5py.File(root / "feats.h5", "w") as h5:
        h5.attrs.update(layers=[0, 1, 2], chunk_seconds=20.0, overlap_seconds=2.5)
    teacher = Teacher(3, 32, blocks=1, repeats=1)
    torch.save({"state_dict": teacher.state_dict(), "hparams": {**teacher.hparams, "crop_frames": 50}},
               root / "teacher.pt")
    teacher = Teacher(2, 32, blocks=1, repeats=1)
    torch.save({"state_dict": teacher.state_dict(), "hparams": {**teacher.hparams, "crop_frames": 50}},
               root / "teacher_2layers.pt")
    np.savez(root / "dictionary.npz", W=np.random.default_rng(0).random((257, 8)).astype(np.float32))
    _proxy(root / "proxy_spectrogram.pt", 257)
    _proxy(root / "proxy_wavlm.pt", 32, inp="wavlm")
    _proxy(root / "proxy_k16.pt", 257, k=16)  # another proxy: 16 atoms
    _proxy(root / "proxy_1024.pt", 513, bins=513)  # another proxy: n_fft 1024
    _proxy(root / "proxy_wide.pt", 64, inp="wavlm")  # a proxy of another teacher's features
    for inp in ("spectrogram", "wavlm"):
        export_model(root / f"proxy_{inp}.pt", root / "teacher.pt", root / "dictionary.npz", root / "feats.h5",
                     root / "spec.h5", "microsoft/wavlm-base", root / f"model_{inp}")
    return root


def _copy(parts, tmp_path, inp="spectrogram"):
    model = tmp_path / "model"
    shutil.copytree(parts / f"model_{inp}", model)
    return model


def _edit(model, change):
    s = json.loads((model / "settings.json").read_text())
    change(s)
    (model / "settings.json").write_text(json.dumps(s))


def test_exported_folders_load(parts):
    assert load_settings(parts / "model_spectrogram")["proxy"]["components"] == 8
    assert load_settings(parts / "model_wavlm")["wavlm"]["path"] == "microsoft/wavlm-base"


# (input, change of settings.json, expected message fragment)
SETTINGS_CASES = [
    ("spectrogram", lambda s: s["proxy"].pop("components"), "key `proxy.components` is missing"),
    ("spectrogram", lambda s: s.pop("spectrogram"), "key `spectrogram` is missing"),
    ("spectrogram", lambda s: s["proxy"].update(window_frames="40"), "key `proxy.window_frames` is '40', not an integer"),
    ("spectrogram", lambda s: s["proxy"].update(step_frames=0), "key `proxy.step_frames` is 0, not a positive size"),
    ("spectrogram", lambda s: s.update(input="mel"), "key `input` is 'mel', not wavlm or spectrogram"),
    ("spectrogram", lambda s: s.update(threshold="high"), "key `threshold` is 'high', not a number"),
    ("spectrogram", lambda s: s["proxy"].update(file="../../proxy.pt"), "key `proxy.file` is '../../proxy.pt', not the name"),
    ("spectrogram", lambda s: s.update(dictionary="/etc/passwd"), "key `dictionary` is '/etc/passwd', not the name"),
    ("wavlm", lambda s: s["wavlm"].pop("layers"), "key `wavlm.layers` is missing"),
    ("wavlm", lambda s: s.pop("teacher"), "key `teacher` is missing"),
    ("wavlm", lambda s: s["wavlm"].update(copied="yes"), "key `wavlm.copied` is 'yes', not true or false"),
]


@pytest.mark.parametrize("inp, change, fragment", SETTINGS_CASES)
def test_a_damaged_settings_json_names_the_folder_and_the_key(parts, tmp_path, inp, change, fragment):
    model = _copy(parts, tmp_path, inp)
    _edit(model, change)
    with pytest.raises(InputError) as error:
        load_settings(model)
    message = str(error.value)
    assert message.startswith(f"{model / 'settings.json'}: ") and fragment in message, message
    assert "export it again" in message


# (input, file of the model folder, replaced by, expected message fragment)
CHECKPOINT_CASES = [
    ("spectrogram", "proxy.pt", "proxy_k16.pt", "has components 16 but settings.json needs 8 (proxy.components)"),
    ("spectrogram", "proxy.pt", "proxy_1024.pt", "has n_freq 513 but settings.json needs 257"),
    ("wavlm", "proxy.pt", "proxy_wide.pt", "has in_channels 64 but settings.json needs 32"),
    ("wavlm", "teacher.pt", "teacher_2layers.pt", "fuses 2 WavLM layers but settings.json lists 3"),
]


@pytest.mark.parametrize("inp, name, other, fragment", CHECKPOINT_CASES)
def test_another_models_checkpoint_is_named_with_what_to_do(parts, tmp_path, inp, name, other, fragment):
    model = _copy(parts, tmp_path, inp)
    shutil.copyfile(parts / other, model / name)
    with pytest.raises(InputError) as error:
        load_settings(model)
    message = str(error.value)
    assert message.startswith(f"{model / name}: ") and fragment in message, message
    assert "export the model folder again" in message


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_a_truncated_checkpoint_says_it_is_damaged(parts, tmp_path, keep):
    model = _copy(parts, tmp_path)
    data = (model / "proxy.pt").read_bytes()
    (model / "proxy.pt").write_bytes(data[:int(keep * len(data)) if isinstance(keep, float) else keep])
    for load in (load_settings, lambda m: load_proxy(m / "proxy.pt")):
        with pytest.raises(InputError) as error:
            load(model)
        message = str(error.value)
        assert message.startswith(f"{model / 'proxy.pt'}: cannot read this proxy checkpoint: it is damaged")
        assert "export it again" in message and len(message) < 400, message


def test_a_checkpoint_without_some_weights_is_refused(tmp_path):
    path = _proxy(tmp_path / "proxy.pt", 257)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"].pop("theta.bias")
    torch.save(ckpt, path)
    with pytest.raises(InputError, match=r"(?s)proxy\.pt: not a proxyseg proxy checkpoint.*Missing key.*theta\.bias"):
        load_proxy(path)
    ckpt["hparams"]["components"] = "eight"
    torch.save(ckpt, path)
    with pytest.raises(InputError, match="export the model folder again"):
        load_proxy(path)


def test_a_teacher_checkpoint_without_some_weights_is_refused(parts, tmp_path):
    from proxyseg.teacher.model import load_teacher

    ckpt = torch.load(parts / "teacher.pt", weights_only=True)
    ckpt["state_dict"].pop(next(iter(ckpt["state_dict"])))
    torch.save(ckpt, tmp_path / "teacher.pt")
    with pytest.raises(InputError, match=r"(?s)teacher\.pt: not a proxyseg teacher checkpoint.*Missing key"):
        load_teacher(tmp_path / "teacher.pt", "cpu")
