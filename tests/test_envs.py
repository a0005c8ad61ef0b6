"""The conda environment of the rules installs exactly the dependencies pyproject.toml pins."""

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
    assert sorted(p for p in pip if not p.startswith("-e")) == expected
    assert "-e .." in pip  # the rules call the package's own CLI
