"""The locked environment: pyproject.toml, requirements.lock and the rules' conda environment agree, and
the installed torch, torchaudio and transformers work together."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = REPO / "requirements.lock"
REFRESH = "run `bash envs/refresh-lock.sh` (docs/development.md) and commit requirements.lock"


def parse_lock(text):
    """{name: [(version, marker or None, number of hashes)]}: one entry per requirement of the lock."""
    entries = {}
    # a requirement with its continuation lines (hashes), comments dropped
    for block in re.split(r"\n(?=\S)", re.sub(r"\s*#[^\n]*", "", text)):
        block = block.strip()
        if not block:
            continue
        spec = block.split(" \\")[0].strip()
        req = Requirement(spec)
        (pin,) = req.specifier
        assert pin.operator == "==", f"requirements.lock: {spec!r} is not an exact pin"
        entries.setdefault(canonicalize_name(req.name), []).append(
            (pin.version, req.marker, block.count("--hash=sha256:"))
        )
    return entries


def applies(marker):
    return marker is None or marker.evaluate()


def declared_requirements():
    """Every requirement pyproject.toml declares: dependencies, every extra, the build backend."""
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"]) + PYPROJECT["build-system"]["requires"]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_lock_pins_every_package_with_hashes_and_names_no_host():
    text = LOCK.read_text()
    entries = parse_lock(text)
    assert len(entries) > 50
    for name, pins in entries.items():
        for version, _, hashes in pins:
            assert hashes >= 1, f"requirements.lock: {name}=={version} has no hash; {REFRESH}"
    # installs come from whatever registry the user's pip is configured for: the lock names none
    for needle in ("://", "--index-url", "--extra-index-url", "--find-links", "--trusted-host"):
        assert needle not in text, f"requirements.lock names a host or index ({needle})"


def test_pyproject_and_lock_agree():
    entries = parse_lock(LOCK.read_text())
    for req in declared_requirements():
        name = canonicalize_name(req.name)
        assert name in entries, f"{req} (pyproject.toml) is not in requirements.lock; {REFRESH}"
        for version, _, _ in entries[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements.lock pins {name}=={version}, outside pyproject.toml's {req}; {REFRESH}"
            )


def test_torch_and_torchaudio_are_one_exact_pair():
    deps = {canonicalize_name(Requirement(d).name): Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    entries = parse_lock(LOCK.read_text())
    versions = {}
    for name in ("torch", "torchaudio"):
        (spec,) = deps[name].specifier
        assert spec.operator == "==" and "*" not in spec.version, f"pyproject.toml: {deps[name]} is not exact"
        assert [v for v, _, _ in entries[name]] == [spec.version], (name, entries[name])
        versions[name] = spec.version
    # torchaudio X.Y.Z is built against torch X.Y.Z
    assert versions["torch"].split("+")[0] == versions["torchaudio"].split("+")[0], versions


def test_conda_env_names_the_locks_versions():
    entries = parse_lock(LOCK.read_text())
    env = yaml.safe_load((REPO / "envs/proxyseg.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pinned = {}
    for line in pip:
        req = Requirement(line)
        (pin,) = req.specifier
        assert pin.operator == "==", f"envs/proxyseg.yaml: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        locked = {(v, str(m)) for v, m, _ in entries.get(name, [])}
        assert (pin.version, str(req.marker)) in locked, f"envs/proxyseg.yaml: {line!r} is not the lock's; {REFRESH}"
        pinned[name] = pin.version
    # every runtime dependency is there; snakemake itself runs outside the rules' environment
    for dep in PYPROJECT["project"]["dependencies"]:
        name = canonicalize_name(Requirement(dep).name)
        assert name == "snakemake" or name in pinned, f"envs/proxyseg.yaml lacks {dep}; {REFRESH}"
    # the rules call the package's own CLI: the post-deploy script installs this checkout (a relative path
    # in the YAML would resolve under .snakemake/conda/, where Snakemake copies the file)
    deploy = (REPO / "envs/proxyseg.post-deploy.sh").read_text()
    assert 'dirname "${BASH_SOURCE[0]}")/..' in deploy and "pip install --no-deps -e" in deploy


def test_installed_environment_is_the_lock():
    """The direct dependencies installed here are the lock's versions (the README's commands install the
    lock; a mismatch means the environment was installed some other way)."""
    entries = parse_lock(LOCK.read_text())
    wrong = []
    for req in declared_requirements():
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate():
            continue
        (want,) = [v for v, m, _ in entries[name] if applies(m)]
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != want:
            wrong.append(f"{name}: installed {have}, locked {want}")
    assert not wrong, "; ".join(wrong) + ". Install the lock: pip install -r requirements.lock"


def test_torchaudio_and_wavlm_load_and_resample_a_second_of_audio():
    import torch
    import torchaudio.functional as F
    from transformers import WavLMConfig, WavLMModel

    sr_in, sr_out = 44100, 16000
    t = torch.arange(sr_in, dtype=torch.float64) / sr_in
    tone = torch.sin(2 * torch.pi * 440.0 * t).float()
    out = F.resample(tone, sr_in, sr_out)
    assert out.shape == (sr_out,)
    spectrum = np.abs(np.fft.rfft(out.numpy()))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # 1 s of audio: bin k is k Hz
    # a tiny WavLM runs on the resampled second: 50 frames a second
    config = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = WavLMModel(config).eval()
    with torch.no_grad():
        hidden = model(out[None]).last_hidden_state
    assert hidden.shape == (1, 49, 32)


def test_every_rule_has_a_conda_env_that_exists():
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        rules = re.findall(r"^rule (\w+):", text, flags=re.M)
        envs = re.findall(r"^    conda:\n        \"([^\"]+)\"", text, flags=re.M)
        assert len(envs) == len(rules), (smk.name, rules, envs)
        for env in envs:
            assert (smk.parent / env).resolve().is_file(), (smk.name, env)


def test_ci_runs_the_readmes_test_command():
    """CI installs exactly as a user does and runs every test: .ci/run ends with the README's test command,
    as written, whose pytest runs with --all (plain pytest leaves out the end-to-end, Slurm and Chromium
    tests: tests/conftest.py); the lint (snakefmt, snakemake --lint) runs before it."""
    ci = (REPO / ".ci/run").read_text().strip().splitlines()
    test = ci[-1]
    install, _, run_tests = test.rpartition(" && ")
    assert run_tests == ".venv/bin/python -m pytest --all", test
    assert install.startswith("python3 -m venv .venv && ") and "-r requirements.lock" in install, install
    # bytecode written at install: where PYTHONDONTWRITEBYTECODE is set (CI images, this machine) every job
    # would otherwise compile torch and transformers from source again (about 10 s of CPU per process)
    assert "--compile-bytecode -r requirements.lock" in install, install
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert test in blocks, f"README.md has no ```bash block holding .ci/run's last line:\n{test}"
    assert any(b.startswith(install + " && ") for b in blocks if b != test), "the README's run command installs alike"
    before = ci[:-1]
    assert install in before, "the lint's tools come from the same install"
    lint = before[before.index(install) + 1:]
    assert any(line.startswith(".venv/bin/snakefmt --check ") for line in lint), lint
    assert any(line.endswith("snakemake --lint") for line in lint), lint
