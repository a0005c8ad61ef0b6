"""The conda environment of the rules installs exactly the dependencies pyproject.toml pins."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_conda_env_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs/proxyseg.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    # every runtime dependency, same version range; snakemake itself runs outside the rules' environment
    expected = sorted(d for d in project if not d.startswith("snakemake"))
    assert sorted(pip) == expected
    # the rules call the package's own CLI: the post-deploy script installs this checkout (a relative path
    # in the YAML would resolve under .snakemake/conda/, where Snakemake copies the file)
    deploy = (REPO / "envs/proxyseg.post-deploy.sh").read_text()
    assert 'dirname "${BASH_SOURCE[0]}")/..' in deploy and "pip install --no-deps -e" in deploy


def test_every_rule_has_a_conda_env_that_exists():
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        rules = re.findall(r"^rule (\w+):", text, flags=re.M)
        envs = re.findall(r"^    conda:\n        \"([^\"]+)\"", text, flags=re.M)
        assert len(envs) == len(rules), (smk.name, rules, envs)
        for env in envs:
            assert (smk.parent / env).resolve().is_file(), (smk.name, env)
