import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def write_wav(tmp_path):
    """Write a noise WAV of ``seconds`` at ``sr`` Hz with ``channels`` channels; returns its path."""

    def _write(name, seconds=2.0, sr=16000, channels=1, seed=0):
        rng = np.random.default_rng(seed)
        data = (0.1 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr)
        return path

    return _write


@pytest.fixture
def narrowband_dictionary():
    """W (257, K) of unit-norm Gaussian bumps (60 Hz wide) at ``centres`` Hz, for hand-built proxies."""
    from proxyseg.dsp import stft_frequencies

    def _make(centres):
        freqs = stft_frequencies(512)
        W = np.stack([np.exp(-0.5 * ((freqs - f) / 60.0) ** 2) + 1e-4 for f in centres], axis=1).astype(np.float32)
        return W / np.linalg.norm(W, axis=0, keepdims=True)

    return _make


@pytest.fixture
def linear_proxy():
    """Save a spectrogram-input proxy with dictionary W (fixed) and a hand-set read-out: ``weights`` maps a
    class index to (atoms, value) pairs, the other weights are 0 and the biases -1; returns the path."""
    import torch

    from proxyseg.proxy.model import Proxy

    def _save(path, W, weights):
        torch.manual_seed(0)
        model = Proxy(W.shape[0], torch.from_numpy(W), "fixed", blocks=1, repeats=1)
        with torch.no_grad():
            model.theta.weight.zero_()
            for c, pairs in weights.items():
                for atoms, value in pairs:
                    model.theta.weight[c, atoms, 0] = value
            model.theta.bias.fill_(-1.0)
        hp = {**model.hparams, "crop_frames": 50, "input": "spectrogram", "dictionary": "fixed"}
        torch.save({"state_dict": model.state_dict(), "hparams": hp}, path)
        return path

    return _save


@pytest.fixture
def one_file_split(tmp_path):
    """Write a one-file split ``a`` for a hand-built proxy with dictionary W: ``a.wav`` (``audio``), its
    inference file (H all ones), spectrograms (log1p(W H)), targets (``active`` class indices on every
    frame, overlap unknown) and manifest, in ``tmp_path``; returns ``tmp_path``."""
    import h5py
    import pandas as pd

    def _write(W, audio, active, subtype=None):
        sf.write(tmp_path / "a.wav", audio, 16000, subtype=subtype)
        T = (len(audio) - 400) // 320 + 1
        H = np.ones((T, W.shape[1]), np.float32)
        targets = np.zeros((T, 4), np.int8)
        targets[:, list(active)] = 1
        targets[:, 3] = -1
        with h5py.File(tmp_path / "inf.h5", "w") as f:
            f.create_group("a").create_dataset("H", data=H.astype(np.float16))
        with h5py.File(tmp_path / "spec.h5", "w") as f:
            f.attrs["n_fft"], f.attrs["win_length"] = 512, 400
            f.create_dataset("a", data=np.log1p(H @ W.T).astype(np.float16))
        with h5py.File(tmp_path / "targets.h5", "w") as f:
            f.create_dataset("a", data=targets)
        pd.DataFrame({"uri": ["a"], "audio": [str(tmp_path / "a.wav")]}).to_csv(
            tmp_path / "manifest.tsv", sep="\t", index=False)
        return tmp_path

    return _write


@pytest.fixture
def one_torch_thread():
    """Tiny matrices: one torch thread avoids thread start/sync overhead (large on a busy machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


REPO = Path(__file__).resolve().parents[1]

#: the quick tour: the demo configuration (config.yaml) shrunk to a run of a few minutes
TEST_CONFIG = REPO / "config" / "test.yaml"


def small_config() -> dict:
    """config/test.yaml, writing into ``results/`` (where the tests look) instead of the tour's folder."""
    import yaml

    return {**yaml.safe_load(TEST_CONFIG.read_text()), "results": "results"}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """The workflow on config/test.yaml, run once per session (tests/workflow/: test_workflow, test_crash)."""
    import yaml

    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config()))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2"],
                         capture_output=True, text=True, env=env, timeout=3600)
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


# ----------------------------------------------------------------------------- opt-in tests
#: markers of the tests that plain `pytest` leaves out (pyproject.toml declares them); `pytest --all`
#: (the README's test command, and CI's) runs them too, and so does naming them with -m or a node id
OPT_IN = {"slurm": "on a local Slurm, installed with apt-get",
          "browser": "in headless Chromium, installed with apt-get",
          "slow": "end-to-end workflow runs"}
ALL = "--all"
#: the real black-box configs end to end (tests/workflow/test_real_explain.py): about half an hour on two
#: cores, more than CI's budget, so only `pytest --real` (or -m real) runs them, never `--all`
REAL = "--real"
_LEFT_OUT = pytest.StashKey[list]()


def pytest_addoption(parser):
    parser.addoption(ALL, action="store_true",
                     help="also run the end-to-end (slow), Slurm and Chromium (browser) tests, which plain pytest "
                          "leaves out: the README's test command and CI")
    parser.addoption(REAL, action="store_true",
                     help="also run config/explain_silero.yaml and config/explain_pyannote.yaml end to end on the "
                          "real recordings (about 30 min on two cores; needs ../shared, the extras, apt-get)")


def _named_tests(config) -> list[str]:
    """Node ids given on the command line (``tests/test_x.py::test_y``), relative to the root folder."""
    named = []
    for arg in config.args:
        path, sep, rest = arg.partition("::")
        if sep:
            try:
                path = Path(os.path.abspath(path)).relative_to(config.rootpath).as_posix()
            except ValueError:
                pass
            named.append(f"{path}::{rest}")
    return named


def pytest_collection_modifyitems(config, items):
    if config.getoption("markexpr"):  # -m: the expression alone decides
        return
    if not config.getoption(REAL):
        real = [item for item in items if item.get_closest_marker("real")]
        if real:
            config.hook.pytest_deselected(items=real)
            items[:] = [item for item in items if not item.get_closest_marker("real")]
    if config.getoption(ALL):
        return
    named = _named_tests(config)
    keep, left_out = [], []
    for item in items:
        opted = any(item.get_closest_marker(m) for m in OPT_IN)
        asked = any(item.nodeid == n or item.nodeid.startswith((n + "[", n + "::")) for n in named)
        (left_out if opted and not asked else keep).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = keep
        config.stash[_LEFT_OUT] = left_out


def pytest_terminal_summary(terminalreporter, config):
    left_out = config.stash.get(_LEFT_OUT, [])
    if left_out:
        kinds = {}
        for item in left_out:  # each test once, under its first marker of OPT_IN
            kind = next(m for m in OPT_IN if item.get_closest_marker(m))
            kinds[kind] = kinds.get(kind, 0) + 1
        said = "; ".join(f"{n} {m} ({OPT_IN[m]})" for m, n in kinds.items())
        terminalreporter.write_sep("=", f"{len(left_out)} tests not run: {said}", yellow=True)
        terminalreporter.write_line(f"`python -m pytest {ALL}` runs every test (the README's test command, CI)",
                                    yellow=True)


@pytest.fixture
def kill_in_epoch(monkeypatch):
    """``kill_in_epoch(module, epoch)``: the training of ``module`` (teacher or proxy ``train``) raises
    KeyboardInterrupt, as a killed job stops, in the dev evaluation of ``epoch``; returns the list of calls.
    ``monkeypatch.undo()`` lets the next run finish."""

    def _kill(module, epoch: int) -> list:
        evaluate, calls = module.evaluate, []

        def dies(*args, **kwargs):
            calls.append(1)
            if len(calls) == epoch:
                raise KeyboardInterrupt
            return evaluate(*args, **kwargs)

        monkeypatch.setattr(module, "evaluate", dies)
        return calls

    return _kill


@pytest.fixture
def checkpoint_strings():
    """``checkpoint_strings(value)``: every string in a loaded checkpoint (keys and values, recursively), to
    look for machine paths, times and hosts."""

    def _strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from _strings(k)
                yield from _strings(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from _strings(v)

    return _strings
