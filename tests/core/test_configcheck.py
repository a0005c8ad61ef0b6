"""An invalid config is reported in a few lines: each key path, what is wrong, the nearest valid keys; no schema."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxyseg.core.configcheck import ConfigError, check_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DEMO = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA_TEXT = ['"properties"', "'properties'", '"type": "object"', "'type': 'object'", "Failed validating",
               "description", "additionalProperties"]


def flat(text: str) -> str:
    return " ".join(text.split())  # long lines of the message are wrapped


def problem(edit, **kwargs) -> str:
    """The message of the error that the demo config changed by ``edit`` raises (lines wrapped)."""
    config = copy.deepcopy(DEMO)
    edit(config)
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA, **kwargs)
    message = str(error.value)
    assert not any(text in message for text in SCHEMA_TEXT), message
    return message


def test_misspelt_nested_key_is_named_with_the_nearest_valid_key():
    message = problem(lambda c: c["proxies"]["spec_fixedW"].update(gama=0.1))
    assert "proxies.spec_fixedW.gama: unknown key 'gama'; did you mean 'gamma'?" in message
    assert "valid keys here: input, dictionary, alpha, beta, gamma," in flat(message)
    assert len(message.splitlines()) < 15


def test_misspelt_top_level_key():
    message = problem(lambda c: c.update(teachr={"batch_size": 8}))
    assert "teachr: unknown key 'teachr'; did you mean 'teacher'?" in message
    assert "valid keys here: results, seed, demo, corpora, mixes, debian_packages, training_corpora," in flat(message)
    assert len(message.splitlines()) < 15


def test_key_in_the_wrong_section_says_where_it_belongs():
    message = problem(lambda c: c["scoring"].update(tau=0.3))
    assert "scoring.tau: unknown key 'tau'; it is a setting of explain, not of scoring" in flat(message)
    message = problem(lambda c: c["teacher"].update(gamma=1.0))
    assert "teacher.gamma: unknown key 'gamma'; it is a setting of proxy_defaults, proxies.<name>," in flat(message)


def test_wrong_type_names_the_path_and_the_reason():
    message = problem(lambda c: c["teacher"].update(batch_size="big"))
    assert "teacher.batch_size: 'big' is not of type 'integer'" in message
    assert len(message.splitlines()) <= 4


def test_alternatives_are_described_not_dumped():
    message = problem(lambda c: c["features"].update(half="yes", layers=[0, -1]))
    assert "features.half: 'yes' is not valid here; expected a boolean (true/false) or 'auto'" in message
    assert "features.layers[1]: -1 is less than the minimum of 0" in message  # the list branch, item by item


def test_every_problem_is_listed():
    def edit(c):
        c["teacher"]["batch_size"] = "big"
        c["scoring"]["threshold"] = 3
        c["nmf"]["segments"] = {"speach": 3}
        c["corpora"]["mine"] = {"adapter": "aragonn", "splits": {"train": {"rtm": "a.rttm"}}}
        c["mixes"] = {"demo_extra": {"sources": "s"}}
        c["demo"]["radio"] = {"file": {"train": 2}}

    message = problem(edit)
    assert message.startswith("invalid config (7 problems)")
    for line in ["teacher.batch_size: 'big' is not of type 'integer'",
                 "scoring.threshold: 3 is greater than the maximum of 1",
                 "nmf.segments.speach: unknown key 'speach'; did you mean 'speech'?",
                 "corpora.mine.adapter: 'aragonn' is not one of",
                 "corpora.mine.splits.train.rtm: unknown key 'rtm'; did you mean 'rttm'?",
                 "mixes.demo_extra: the name 'demo_extra' is not allowed here",
                 "demo.radio.file: unknown key 'file'; did you mean 'files'?"]:
        assert line in flat(message), (line, message)


def test_required_keys_and_the_cap_on_problems():
    message = problem(lambda c: c.update(corpora={f"c{i}": {"adapter": "generic"} for i in range(12)}), limit=10)
    assert "corpora.c0.splits: required key missing" in message
    assert message.count("required key missing") == 10 and "... and 2 more" in message
    message = problem(lambda c: c.pop("corpora"))
    assert "corpora: required key missing" in message


def test_the_file_that_set_a_wrong_value_is_named(tmp_path):
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base.write_text(yaml.safe_dump(DEMO))
    overlay.write_text(yaml.safe_dump({"teacher": {"batch_size": "big"}}))

    def edit(c):
        c["teacher"]["batch_size"] = "big"
        c["seed"] = "zero"

    message = problem(edit, configfiles=[base, overlay], overrides={"seed": "zero"})
    assert f"in {base}, {overlay}, --config:" in message.splitlines()[0]
    assert f"teacher.batch_size: 'big' is not of type 'integer' (set in {overlay})" in flat(message)
    assert "seed: 'zero' is not of type 'integer' (set in --config)" in flat(message)


def test_valid_config_is_left_unchanged():
    config = copy.deepcopy(DEMO)
    check_config(config, SCHEMA)
    assert config == DEMO  # no defaults filled in: snakemake's validate does that afterwards


@pytest.mark.parametrize("name", ["config.yaml", *sorted(p.name for p in (REPO / "config").glob("*.yaml"))])
def test_shipped_configs_are_valid(name):
    """config.yaml and config/*.yaml (each passed alone with --configfile: it replaces the demo's config)."""
    path = REPO / name if name == "config.yaml" else REPO / "config" / name
    check_config(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_example_overlays_merged_on_the_demo_are_valid(name):
    from snakemake.utils import update_config

    config = copy.deepcopy(DEMO)
    update_config(config, yaml.safe_load((REPO / "examples" / name).read_text()))
    check_config(config, SCHEMA)


@pytest.mark.slow
def test_dry_run_with_a_misspelt_key_prints_a_short_message(tmp_path):
    config = copy.deepcopy(DEMO)
    config["proxies"]["spec_fixedW"]["gama"] = 0.1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", "-n"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    said = run.stdout + run.stderr
    assert run.returncode != 0
    assert "proxies.spec_fixedW.gama: unknown key 'gama'; did you mean 'gamma'?" in said
    assert not any(text in said for text in SCHEMA_TEXT), said
    assert len(said.splitlines()) < 15, said
