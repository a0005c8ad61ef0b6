"""Model folders are passed around: loading one never runs code that a checkpoint carries (issue
"Untrusted input", item 1), and a damaged or foreign checkpoint is a clear error naming the file."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from proxyseg.cli import main
from proxyseg.core.errors import InputError
from proxyseg.core.safeload import check_blackbox_checkpoint, load_checkpoint
from proxyseg.proxy.model import Proxy, load_proxy
from proxyseg.segmenter.export import export_model


class Payload:
    """Unpickling this creates ``marker``: the stand-in for any code a hostile checkpoint would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _proxy_ckpt(path, extra=None):
    W = np.random.default_rng(0).random((257, 6)).astype(np.float32)
    torch.manual_seed(0)
    proxy = Proxy(257, torch.from_numpy(W), "fixed", blocks=1, repeats=1)
    ckpt = {"state_dict": proxy.state_dict(),
            "hparams": {**proxy.hparams, "crop_frames": 40, "input": "spectrogram", "dictionary": "fixed"}}
    if extra is not None:
        ckpt["note"] = extra
    torch.save(ckpt, path)
    np.savez(path.parent / "dictionary.npz", W=W)
    return path


def test_a_proxy_checkpoint_with_a_payload_is_refused_and_the_payload_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    ckpt = _proxy_ckpt(tmp_path / "proxy.pt", extra=Payload(marker))
    with pytest.raises(InputError, match="refused to load") as err:
        load_proxy(ckpt)
    assert str(ckpt) in str(err.value)
    assert not marker.exists()
    # the same file was a full pickle: the old weights_only=False load would have run it
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_segment_refuses_a_model_folder_whose_proxy_carries_a_payload(tmp_path, capsys):
    import h5py

    root = tmp_path / "src"
    root.mkdir()
    _proxy_ckpt(root / "proxy.pt")
    with h5py.File(root / "spec.h5", "w") as h5:
        h5.attrs.update(n_fft=512, win_length=400)
    export_model(root / "proxy.pt", None, root / "dictionary.npz", None, root / "spec.h5", "none",
                 tmp_path / "model")
    # a shared folder someone tampered with: proxy.pt replaced by one that runs code when unpickled
    marker = tmp_path / "payload-ran"
    _proxy_ckpt(tmp_path / "model" / "proxy.pt", extra=Payload(marker))
    audio = tmp_path / "in" / "a.wav"
    audio.parent.mkdir()
    sf.write(str(audio), np.zeros(16000, np.float32), 16000)
    code = main(["segment", str(audio.parent), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out"),
                 "--no-report"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and "proxy.pt" in err and "Traceback" not in err
    assert not marker.exists()


def test_every_proxyseg_checkpoint_loads_weights_only(tmp_path):
    model, ckpt = load_proxy(_proxy_ckpt(tmp_path / "proxy.pt"))
    assert isinstance(model, Proxy) and ckpt["hparams"]["components"] == 6


@pytest.mark.parametrize("content, match", [
    (b"", "cannot read"),
    (b"not a zip and not a pickle", "cannot read|refused"),
])
def test_damaged_checkpoints_name_the_file(tmp_path, content, match):
    bad = tmp_path / "proxy.pt"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=match) as err:
        load_proxy(bad)
    assert str(bad) in str(err.value)


def test_a_truncated_or_foreign_checkpoint_names_the_file(tmp_path):
    good = _proxy_ckpt(tmp_path / "proxy.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot read") as err:
        load_proxy(cut)
    assert str(cut) in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}, "hparams": {}}, foreign)
    with pytest.raises(InputError, match="not a proxyseg proxy checkpoint") as err:
        load_proxy(foreign)
    assert str(foreign) in str(err.value)
    missing = tmp_path / "missing.pt"
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(missing)


def test_a_blackbox_checkpoint_naming_a_callable_is_refused_before_its_library_unpickles_it(tmp_path):
    marker = tmp_path / "payload-ran"
    bad = tmp_path / "pytorch_model.bin"
    torch.save({"state_dict": {}, "hook": Payload(marker)}, bad)
    with pytest.raises(InputError, match="os.makedirs") as err:
        check_blackbox_checkpoint(bad)
    assert str(bad) in str(err.value) and not marker.exists()


def test_a_blackbox_checkpoint_with_pyannotes_own_classes_passes_the_check(tmp_path):
    pytest.importorskip("pyannote.audio")
    from collections import defaultdict

    from pyannote.audio.core.task import Problem, Resolution

    ok = tmp_path / "pytorch_model.bin"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "spec": [Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME],
                "versions": defaultdict(int, {"torch": torch.__version__})}, ok)
    check_blackbox_checkpoint(ok)  # no error
